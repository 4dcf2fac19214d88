"""Topology specs: hosts in roles, point-to-point links, routes, NATs and the
symbolic address sets that policies target.

Every link is a veth pair between two hosts; a host's interfaces are named
eth0, eth1, ... in the order its links appear in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Literal

from harness.spec.descriptor import check_argv, check_image
from harness.spec.impairment import ImpairmentSpec
from harness.spec.schema import (
    Located,
    check_name,
    load_yaml_node,
    locate,
    parse_dataclass,
    register_scalar,
    shorten,
)

# app-server: an app's own chat/signalling (and, for a domestic app, media)
# server; resolver: the subscribers' DNS resolver (harness.services.resolver).
Role = Literal["caller", "callee", "censor", "relay", "app-relay", "vpn", "stun", "signalling",
               "router", "nat", "app-server", "resolver"]
FORWARDING_ROLES: frozenset[str] = frozenset({"censor", "router", "nat", "vpn"})
SINGLE_ROLES = ("caller", "callee", "censor", "stun", "signalling")
MAX_HOSTS = 64
MAX_LINKS = 256

# Topologies stay inside shared, benchmarking and documentation ranges, so a lab
# never claims an address that could belong to someone real.
ALLOWED_RANGES: tuple[IPv4Network, ...] = tuple(
    IPv4Network(n)
    for n in ("100.64.0.0/10", "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24",
              "203.0.113.0/24")
)


def _parse_address(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise ValueError(f"{shorten(repr(text))} is not an IPv4 address") from None


def _parse_interface(text: str) -> IPv4Interface:
    if "/" not in text:
        raise ValueError(f"{shorten(repr(text))} needs a prefix length, e.g. "
                         f"{shorten(text)}/24")
    try:
        return IPv4Interface(text)
    except ValueError:
        raise ValueError(f"{shorten(repr(text))} is not an IPv4 address with prefix "
                         "(a.b.c.d/n)") from None


def _parse_network(text: str) -> IPv4Network:
    try:
        return IPv4Network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{shorten(repr(text))} is not a valid IPv4 network: "
                         f"{shorten(str(exc), 100)}") from None


register_scalar(IPv4Address, _parse_address)
register_scalar(IPv4Interface, _parse_interface)
register_scalar(IPv4Network, _parse_network)


def in_allowed_ranges(net: IPv4Network) -> bool:
    return any(net.subnet_of(allowed) for allowed in ALLOWED_RANGES)


@dataclass(frozen=True)
class Route:
    to: str = field(metadata={"check": lambda v: v == "default" or _parse_network(v)})
    via: IPv4Address

    @property
    def destination(self) -> IPv4Network:
        return IPv4Network("0.0.0.0/0") if self.to == "default" else IPv4Network(self.to)


@dataclass(frozen=True)
class NatSpec:
    """Masquerading NAT. `symmetric` picks a new random port for every
    destination, which defeats direct (P2P) paths; `endpoint-independent`
    keeps one mapping per internal socket, as a typical home router does."""

    outside: IPv4Address
    mapping: Literal["endpoint-independent", "symmetric"] = "endpoint-independent"


@dataclass(frozen=True)
class CensorSpec:
    """Which of the censor's own addresses face the subscribers; packets arriving
    there travel upstream, the rest downstream."""

    subscriber_side: list[IPv4Address]


@dataclass(frozen=True)
class HostSpec:
    role: Role
    description: str = ""
    routes: list[Route] = field(default_factory=list)
    nat: NatSpec | None = None
    censor: CensorSpec | None = None
    # A container holds this host instead of a namespace of its own
    # (harness.netns.container_hosts): the image's program runs as the host's,
    # with `command` (default: the image's own) as its argv; its links are
    # moved into the container's network namespace.
    image: str | None = field(default=None, metadata={"check": check_image})
    command: list[str] | None = field(default=None, metadata={"check": check_argv})


@dataclass(frozen=True)
class LinkEnd:
    host: str
    ip: IPv4Interface


@dataclass(frozen=True)
class LinkImpairment:
    """A link's impairments per direction: `a_to_b` and `b_to_a` (packets leaving
    a towards b, and back), `both` for a direction not given on its own. Each is a
    preset (`{preset: ru-mobile-lte}`), inline parameters, or both."""

    a_to_b: ImpairmentSpec | None = None
    b_to_a: ImpairmentSpec | None = None
    both: ImpairmentSpec | None = None

    def __post_init__(self) -> None:
        if self.a_to_b is None and self.b_to_a is None and self.both is None:
            raise ValueError("give a_to_b, b_to_a or both")

    def direction(self, index: int) -> ImpairmentSpec | None:
        """The spec for direction 0 (a->b) or 1 (b->a)."""
        own = self.a_to_b if index == 0 else self.b_to_a
        return own if own is not None else self.both

    def key_for(self, index: int) -> str:
        own = "a_to_b" if index == 0 else "b_to_a"
        return own if getattr(self, own) is not None else "both"


@dataclass(frozen=True)
class LinkSpec:
    a: LinkEnd
    b: LinkEnd
    impair: LinkImpairment | None = None

    @property
    def ends(self) -> tuple[LinkEnd, LinkEnd]:
        return (self.a, self.b)


@dataclass(frozen=True)
class Interface:
    name: str
    ip: IPv4Interface
    peer_host: str


@dataclass(frozen=True)
class Topology:
    name: str = field(metadata={"check": check_name})
    description: str
    hosts: dict[str, HostSpec]
    links: list[LinkSpec]
    sets: dict[str, list[IPv4Network]] = field(default_factory=dict)
    link_backend: Literal["auto", "netem", "userspace"] = "auto"

    def interfaces(self, host: str) -> list[Interface]:
        """The host's interfaces, eth0.., in link order."""
        result: list[Interface] = []
        for link in self.links:
            for end, other in ((link.a, link.b), (link.b, link.a)):
                if end.host == host:
                    result.append(Interface(f"eth{len(result)}", end.ip, other.host))
        return result

    def hosts_with_role(self, role: str) -> list[str]:
        return [name for name, spec in self.hosts.items() if spec.role == role]

    def impairs_links(self) -> bool:
        """Whether any link direction carries an impairment."""
        return any(link.impair is not None for link in self.links)

    def host_with_role(self, role: str) -> str:
        (name,) = self.hosts_with_role(role)
        return name

    def address_of(self, host: str) -> IPv4Address:
        """The host's service address: its first interface's."""
        return self.interfaces(host)[0].ip.ip

    def interface_owning(self, host: str, address: IPv4Address) -> Interface:
        for intf in self.interfaces(host):
            if intf.ip.ip == address:
                return intf
        raise KeyError(f"{host} has no interface with address {address}")


def load_topology(path: Path) -> Topology:
    loc = load_yaml_node(path)
    topology = parse_dataclass(loc, Topology)
    validate_topology(topology, loc)
    return topology


def validate_topology(topo: Topology, loc: Located) -> None:
    """Cross-field checks the type hints cannot express; each points at its line."""
    _check_sizes(topo, loc)
    _check_roles(topo, loc)
    _check_links(topo, loc)
    _check_addresses(topo, loc)
    for name, host in topo.hosts.items():
        _check_host(topo, name, host, locate(loc, "hosts", name))
    _check_sets(topo, loc)
    _check_impairments(topo, loc)


def _check_sizes(topo: Topology, loc: Located) -> None:
    if len(topo.hosts) > MAX_HOSTS:
        raise locate(loc, "hosts").error(f"{len(topo.hosts)} hosts; at most {MAX_HOSTS}")
    if len(topo.links) > MAX_LINKS:
        raise locate(loc, "links").error(f"{len(topo.links)} links; at most {MAX_LINKS}")


def _check_roles(topo: Topology, loc: Located) -> None:
    for role in SINGLE_ROLES:
        count = len(topo.hosts_with_role(role))
        if count != 1:
            raise locate(loc, "hosts").error(
                f"a topology needs exactly one host with role '{role}', found {count}"
            )
    if not topo.hosts_with_role("relay"):
        raise locate(loc, "hosts").error("a topology needs at least one host with role 'relay'")


def _check_links(topo: Topology, loc: Located) -> None:
    for index, link in enumerate(topo.links):
        for side, end in (("a", link.a), ("b", link.b)):
            if end.host not in topo.hosts:
                raise locate(loc, "links", index, side, "host").error(
                    f"unknown host {shorten(repr(end.host))}; hosts are: "
                    f"{', '.join(topo.hosts)}"
                )
        if link.a.host == link.b.host:
            raise locate(loc, "links", index).error("a link must join two different hosts")
        if link.a.ip.network != link.b.ip.network:
            raise locate(loc, "links", index, "b", "ip").error(
                f"{link.b.ip} is not in the same subnet as {link.a.ip}"
            )
    for name in topo.hosts:
        if not topo.interfaces(name):
            raise locate(loc, "hosts", name).error("host has no link")


def _check_addresses(topo: Topology, loc: Located) -> None:
    seen: dict[IPv4Address, str] = {}
    for index, link in enumerate(topo.links):
        for side, end in (("a", link.a), ("b", link.b)):
            where = locate(loc, "links", index, side, "ip")
            if not in_allowed_ranges(end.ip.network):
                raise where.error(_range_message(end.ip.network))
            if end.ip.ip in seen:
                raise where.error(f"address {end.ip.ip} is already used by {seen[end.ip.ip]}")
            if end.ip.ip in (end.ip.network.network_address, end.ip.network.broadcast_address) \
                    and end.ip.network.prefixlen < 31:
                raise where.error(f"{end.ip} is the subnet's network or broadcast address")
            seen[end.ip.ip] = end.host


def _range_message(net: IPv4Network) -> str:
    ranges = ", ".join(str(r) for r in ALLOWED_RANGES)
    return f"{net} is outside the ranges a lab may use ({ranges})"


def _check_host(topo: Topology, name: str, host: HostSpec, loc: Located) -> None:
    own = {intf.ip.ip for intf in topo.interfaces(name)}
    nets = [intf.ip.network for intf in topo.interfaces(name)]
    for index, route in enumerate(host.routes):
        if not any(route.via in net for net in nets):
            raise locate(loc, "routes", index, "via").error(
                f"gateway {route.via} is on none of {name}'s links ({', '.join(map(str, nets))})"
            )
    _check_role_block(host, "nat", host.nat is not None, loc)
    _check_role_block(host, "censor", host.censor is not None, loc)
    if host.nat is not None and host.nat.outside not in own:
        raise locate(loc, "nat", "outside").error(f"{host.nat.outside} is not one of {name}'s "
                                                  "addresses")
    if host.censor is not None:
        for index, address in enumerate(host.censor.subscriber_side):
            if address not in own:
                raise locate(loc, "censor", "subscriber_side", index).error(
                    f"{address} is not one of {name}'s addresses"
                )


def _check_role_block(host: HostSpec, role: str, present: bool, loc: Located) -> None:
    if host.role == role and not present:
        raise loc.error(f"a host with role '{role}' needs a '{role}' block")
    if host.role != role and present:
        raise locate(loc, role).error(f"only a host with role '{role}' takes a '{role}' block")


def _check_sets(topo: Topology, loc: Located) -> None:
    for set_name, networks in topo.sets.items():
        if not networks:
            raise locate(loc, "sets", set_name).error("a set needs at least one network")
        for index, net in enumerate(networks):
            if not in_allowed_ranges(net):
                raise locate(loc, "sets", set_name, index).error(_range_message(net))


def _check_impairments(topo: Topology, loc: Located) -> None:
    """Resolve every direction's preset and overrides now, so a bad preset name
    or an impossible combination is reported at its line before anything starts."""
    from harness.spec.presets import impairments  # the presets file is read on demand

    for index, link in enumerate(topo.links):
        if link.impair is None:
            continue
        for direction in (0, 1):
            spec = link.impair.direction(direction)
            if spec is None:
                continue
            try:
                spec.resolve(impairments())
            except ValueError as exc:
                where = locate(loc, "links", index, "impair", link.impair.key_for(direction))
                field_name, _, message = str(exc).partition(": ")
                at_field = locate(where, field_name)
                if at_field is where or not message:  # the field came from the preset
                    raise where.error(str(exc)) from None
                raise at_field.error(message) from None
