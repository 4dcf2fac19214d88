"""Link emulation: one typed impairment (delay, jitter, loss, rate, duplicate,
reorder, seed) applied per link direction by one of two backends, the kernel's
netem qdisc or the userspace NFQUEUE daemon `callwall-impaird`."""
