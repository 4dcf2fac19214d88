/* Scheduling for the daemon's waker threads: real-time class, CPU pinning,
 * memory locking and the final spin to a departure. Each call says whether it
 * worked; none is fatal (the daemon runs, less punctually, and says so). */
#ifndef IMPAIRD_REALTIME_H
#define IMPAIRD_REALTIME_H

#include <stddef.h>
#include <stdint.h>

#define REALTIME_PRIORITY 10

int64_t monotonic_ns(void);
/* Busy-wait until CLOCK_MONOTONIC reaches `deadline_ns`; returns the time then. */
int64_t spin_until(int64_t deadline_ns);
/* Up to `max` CPUs of this process's affinity mask, spread apart and rotated
 * by `seed` (e.g. the queue number) so that daemons share the machine. */
size_t pick_cpus(unsigned seed, int *cpus, size_t max);
/* The process's affinity mask now: what pick_cpus picks from and what
 * pin_thread(-1) restores. Called once at start (else on first use). */
void remember_allowed_cpus(void);
/* Pin the calling thread to `cpu`, or with -1 give it back every CPU the
 * process was allowed at start. 0 or an errno. */
int pin_thread(int cpu);
/* SCHED_FIFO at REALTIME_PRIORITY (on) or SCHED_OTHER (off) for the calling
 * thread, reset on fork. 0 or an errno. */
int set_thread_realtime(int on);
/* mlockall of what is mapped and what will be, each page when first touched
 * (MCL_ONFAULT: the large, mostly idle receive buffers stay virtual). 0 or an errno. */
int lock_memory(void);
/* Time the hypervisor ran something else while this machine's CPUs wanted to
 * run (/proc/stat "steal", all CPUs), in ms; -1 if unknown. Nothing in the
 * guest can make up for it: every CPU it hits stops, timers included. */
int64_t steal_ms(void);

#endif
