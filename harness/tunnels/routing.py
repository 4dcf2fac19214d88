"""Routes and NAT around a tunnel interface.

The caller keeps a host route to the VPN server through its own uplink (so
the tunnel's carrier packets do not enter the tunnel) and sends either
everything (0.0.0.0/1 + 128.0.0.0/1, which beat the default route without
replacing it) or only chosen prefixes into the tunnel. Packets leaving the
caller through the tunnel get the tunnel address (sockets bound to the
uplink address, as the ICE agent's are, would otherwise be dropped by the
server's cryptokey routing). The VPN server masquerades tunnel traffic out
of its uplink, as a commercial VPN exit does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface

from harness.netns.host import LabHost
from harness.testbed import Lab
from harness.tunnels.base import TunnelError
from harness.tunnels.plumbing import Plumbing

FULL_TUNNEL: tuple[str, ...] = ("0.0.0.0/1", "128.0.0.0/1")
# Which topology sets split-routing sends through the tunnel (docs/sources.md
# S14: routing only the Telegram and Meta prefixes through a proxy worked).
# The messengers' prefixes hold their chat servers as well as their relays.
SPLIT_ROUTE_SETS: tuple[str, ...] = ("relays", "whatsapp-relays", "telegram-relays",
                                     "whatsapp-servers", "telegram-servers", "stun-servers")


@dataclass(frozen=True)
class TunnelAddressing:
    """The point-to-point subnet inside the tunnel."""

    server: IPv4Interface
    client: IPv4Interface

    def __post_init__(self) -> None:
        if self.server.network != self.client.network:
            raise ValueError(f"tunnel addresses {self.server} and {self.client} "
                             f"are not in one subnet")


def gateway_towards(host: LabHost, destination: str) -> str:
    """The next hop `host` uses for `destination` now (before any tunnel route)."""
    with host.netlink() as ns:
        routes = ns.route("get", dst=destination)
    for route in routes:
        gateway = route.get_attr("RTA_GATEWAY")
        if gateway:
            return str(gateway)
    raise TunnelError(f"{host.name} has no gateway towards {destination}")


def route_through_tunnel(plumbing: Plumbing, caller: LabHost, ifname: str, server_ip: str,
                         prefixes: Sequence[str]) -> None:
    """Pin the server's address to the uplink, then send `prefixes` into `ifname`."""
    uplink = gateway_towards(caller, server_ip)
    plumbing.add_route(caller, f"{server_ip}/32", gateway=uplink)
    for prefix in prefixes:
        plumbing.add_route(caller, prefix, oif=ifname)


def masquerade_rules(ifname: str, addressing: TunnelAddressing, side: str) -> str:
    """The nft chain body: the server masquerades tunnel traffic leaving by any
    other interface; the client gives what enters the tunnel its tunnel address."""
    if side == "server":
        match = (f"ip saddr {addressing.server.network} oifname != \"{ifname}\" "
                 f"masquerade")
    elif side == "client":
        match = f"oifname \"{ifname}\" ip saddr != {addressing.client.ip} masquerade"
    else:
        raise ValueError(f"side must be 'server' or 'client', got {side!r}")
    return ("  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    {match}\n"
            "  }")


def exit_firewall(uplink: str, server_udp_port: int | None) -> str:
    """The VPN exit drops unsolicited UDP on its uplink, except to the tunnel's
    own port. Why: hole punching through the exit's NAT. Linux would confirm a
    conntrack entry for the far peer's early ICE check, and the tunnelled
    peer's own check of the same 5-tuple would then be masqueraded to another
    port, so neither check ever gets through (harness/lab/nat.py does the same
    for the lab's NATs). That a VPN exit filters so is a guess [S]."""
    allowed = f" udp dport != {server_udp_port}" if server_udp_port is not None else ""
    return ("  chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            f"    iifname \"{uplink}\" meta l4proto udp ct state new{allowed} drop\n"
            "  }")


def uplink_of(lab: Lab, host: LabHost) -> str:
    """The interface that holds `host`'s address in the topology."""
    return lab.topology.interface_owning(host.name, lab.topology.address_of(host.name)).name


def set_prefixes(sets: Mapping[str, Sequence[object]], names: Sequence[str]) -> list[str]:
    """The prefixes of the named topology sets that exist, without repeats."""
    prefixes: list[str] = []
    for name in names:
        for network in sets.get(name, ()):
            if str(network) not in prefixes:
                prefixes.append(str(network))
    if not prefixes:
        raise TunnelError(f"the topology has none of the sets {', '.join(names)}")
    return prefixes


def configure_address(host: LabHost, ifname: str, address: IPv4Interface) -> None:
    """Address the tunnel interface and bring it up (pyroute2, in `host`)."""
    with host.netlink() as ns:
        index = ns.link_lookup(ifname=ifname)[0]
        ns.addr("add", index=index, address=str(address.ip),
                prefixlen=address.network.prefixlen)
        ns.link("set", index=index, state="up")
