"""Addresses, routes and per-namespace sysctls of a lab host, from its spec.

Netlink work goes through pyroute2 inside the host's namespace; sysctls are
written by `sysctl` run inside the namespace, so they are that namespace's
own and never the root namespace's.
"""

from __future__ import annotations

from harness.netns.host import LabHost
from harness.spec.topology import FORWARDING_ROLES, Topology

# Per-namespace sysctls. Conntrack accounting gives the censor's classifier
# the `ct packets` count of each flow.
FORWARDING_SYSCTLS: tuple[str, ...] = ("net.ipv4.ip_forward=1",)
CENSOR_SYSCTLS: tuple[str, ...] = ("net.netfilter.nf_conntrack_acct=1",)
HOST_SYSCTLS: tuple[str, ...] = ("net.ipv6.conf.all.disable_ipv6=1",)
# veth passes TCP's 64 kB TSO/GSO super-packets from host to host unsplit, so
# the censor would count (police, tcp_freeze) one skb where a real link
# carries ~45 packets: every lab interface sends MTU-sized packets instead.
OFFLOADS_OFF: tuple[str, ...] = ("tso", "off", "gso", "off")


def configure_host(host: LabHost, topology: Topology) -> None:
    _set_sysctls(host, _sysctls_for(host.role))
    with host.netlink() as ns:
        lo = ns.link_lookup(ifname="lo")[0]
        ns.link("set", index=lo, state="up")
        for intf in topology.interfaces(host.name):
            index = ns.link_lookup(ifname=intf.name)[0]
            ns.addr("add", index=index, address=str(intf.ip.ip),
                    prefixlen=intf.ip.network.prefixlen)
            ns.link("set", index=index, state="up")
        for route in topology.hosts[host.name].routes:
            ns.route("add", dst=str(route.destination), gateway=str(route.via))
    for intf in topology.interfaces(host.name):
        host.run(["ethtool", "-K", intf.name, *OFFLOADS_OFF])


def _sysctls_for(role: str) -> tuple[str, ...]:
    sysctls = HOST_SYSCTLS
    if role in FORWARDING_ROLES:
        sysctls += FORWARDING_SYSCTLS
    if role == "censor":
        sysctls += CENSOR_SYSCTLS
    return sysctls


def _set_sysctls(host: LabHost, assignments: tuple[str, ...]) -> None:
    host.run(["sysctl", "-q", "-w", *assignments])
