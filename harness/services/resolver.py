"""The subscribers' resolver: dnsmasq in the topology's host with role
`resolver` (``isp-dns``, inside the ISP's network, on the subscriber side of
the censor), answering for the lab's server names from a zone the harness
generates, and for nothing else (no upstream, no /etc/hosts).

The zone: every host with a server role gets ``<host>.lab`` (wa-chat.lab,
wa-relay.lab, tg-server.lab, tg-relay.lab, max.lab, ...). A name resolves to
the address a client of this resolver reaches: a server with a leg in the
subscribers' network (the domestic ``max``, linked to the carrier NAT)
resolves to that leg, every other server to its service address (its first
interface's). The callee and a tunnelled caller do not ask this resolver:
harness.calls.app_like gives them the same zone, seen from where they are, on
their command lines (a contact abroad, or a VPN's resolver, is not subject to
the national DNS).

A policy takes names out (harness/censor/dns.py): it rewrites the served
zone without them and sends dnsmasq SIGHUP, which reloads the zone; the names
then answer NXDOMAIN (``--local=/lab/``: the domain is answered from the zone
only). dnsmasq logs every query (``--log-queries``), which is how the removal
counts what it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from pathlib import Path

from harness.netns.directory import RESOLVER, ResolverFiles, write_hosts_file
from harness.netns.network import LabNetwork
from harness.spec.topology import Topology

LAB_DOMAIN = "lab"
DNS_PORT = 53
RESOLVER_SOCKETS = (("udp", DNS_PORT), ("tcp", DNS_PORT))
# The roles whose hosts get a name: every kind of server a client may look up.
NAMED_ROLES = frozenset({"relay", "stun", "signalling", "app-relay", "app-server", "vpn"})

__all__ = ["DNS_PORT", "LAB_DOMAIN", "RESOLVER", "RESOLVER_SOCKETS", "address_seen_from",
           "dnsmasq_argv", "gateway_of", "lab_name", "lab_zone", "resolver_host",
           "write_zone"]


def lab_name(host: str) -> str:
    """The name a server host goes by: ``wa-chat`` -> ``wa-chat.lab``."""
    return f"{host}.{LAB_DOMAIN}"


def gateway_of(topology: Topology, host: str) -> str:
    """The host at the other end of `host`'s first link (its next hop)."""
    return topology.interfaces(host)[0].peer_host


def address_seen_from(topology: Topology, host: str, neighbour: str | None) -> IPv4Address:
    """The address of `host` that a client behind `neighbour` reaches: its
    address on its link to `neighbour` when it has one, else its service address."""
    for intf in topology.interfaces(host):
        if neighbour is not None and intf.peer_host == neighbour:
            return intf.ip.ip
    return topology.address_of(host)


def lab_zone(topology: Topology, seen_from: str | None = None) -> dict[str, IPv4Address]:
    """Every server name of the lab and its address as seen from host
    `seen_from` (behind its gateway); None: every server's service address."""
    neighbour = gateway_of(topology, seen_from) if seen_from is not None else None
    return {lab_name(name): address_seen_from(topology, name, neighbour)
            for name, spec in topology.hosts.items() if spec.role in NAMED_ROLES}


def write_zone(path: Path, zone: Mapping[str, IPv4Address]) -> None:
    """The zone as the hosts file dnsmasq serves (it may read it at any moment)."""
    write_hosts_file(path, {name: str(address) for name, address in zone.items()})


def resolver_host(topology: Topology) -> str | None:
    """The topology's resolver host, if it has one."""
    hosts = topology.hosts_with_role("resolver")
    if len(hosts) > 1:
        raise ValueError(f"topology {topology.name!r} has {len(hosts)} hosts with role "
                         "resolver; at most one")
    return hosts[0] if hosts else None


def dnsmasq_argv(listen_ip: str, files: ResolverFiles) -> list[str]:
    """dnsmasq in the foreground, answering `.lab` from the served zone only,
    logging every query to the query log; nothing read from /etc."""
    return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", f"--addn-hosts={files.served_zone}", f"--local=/{LAB_DOMAIN}/",
            "--domain-needed", f"--listen-address={listen_ip}", "--bind-interfaces",
            f"--port={DNS_PORT}", "--cache-size=0", "--log-queries",
            f"--log-facility={files.query_log}", "--pid-file=", "--user=root", "--group=root"]


def prepare_resolver(lab: LabNetwork, root: Path) -> tuple[str, str, ResolverFiles] | None:
    """The resolver's host, address and files, with the full zone written and
    served (no removal yet); None when the topology has no resolver."""
    name = resolver_host(lab.topology)
    if name is None:
        return None
    files = ResolverFiles(root / "resolver")
    files.directory.mkdir(mode=0o700, exist_ok=True)
    zone = lab_zone(lab.topology, name)
    write_zone(files.full_zone, zone)
    write_zone(files.served_zone, zone)
    files.removal.unlink(missing_ok=True)
    return name, str(lab.topology.address_of(name)), files
