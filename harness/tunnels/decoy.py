"""`decoy`: fake UDP packets ahead of each new flow, the desync that beat
the 2025 call blocking (zapret's `--dpi-desync=fake` on STUN flows with a
cutoff, docs/sources.md S12, S13, S52).

It runs in the caller's host only and changes no address: the call is placed
with its ordinary ICE strategy (TURN over UDP for the webrtc client, the
app-like clients' own ladders), and for the first packet of every new
outgoing UDP flow that crosses the censor, the stage program
(harness/tunnels/decoy_stage.py) first sends FAKE_COUNT fakes of the same
flow: FAKE_PAYLOAD (not STUN) with a TTL that brings them through the censor
and lets them expire at the next router, before any server. A censor that
classifies a flow on its first packets and counts the fakes among them (a
stateful DPI, S52) misses the real first packet.

How the packets reach the stage, as zapret's firewall rules feed nfqws (S52):
an nft chain in the caller (postrouting, before iptables' mangle table) marks
the first packet of each new UDP flow (`ct original packets 1`) that leaves
towards a network behind the censor and does not carry the fakes' mark; an
iptables rule (mangle POSTROUTING; this kernel has NFQUEUE for iptables, not
for nft) queues marked packets to the stage, bypassing it if the stage is
gone.

The TTL comes from the topology's routes: the fakes must reach the censor's
forward hook (the censor is a router here, and decrements the TTL before it),
so TTL = the censor's hop count from the caller + 1; up() checks that every
server behind the censor lies farther than that.
"""

from __future__ import annotations

import itertools
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from harness.netns.host import LabHost
from harness.spec.topology import Topology
from harness.testbed import Lab
from harness.tunnels import decoy_stage
from harness.tunnels.base import TunnelError, TunnelledEndpoints
from harness.tunnels.plumbing import Plumbing

# nfqws's defaults and the readme's UDP example (S52): 64 zero bytes, each
# fake sent 6 times (S54: users raised it to 5-6 in late 2025), the fwmark
# 0x40000000 on fakes, queue 200.
FAKE_PAYLOAD = bytes(64)
FAKE_COUNT = 6
FAKE_MARK = 0x40000000
CANDIDATE_MARK = 0x20000000  # what the nft chain puts on a flow's first packet
QUEUE_NUM = 200
MARK_PRIORITY = -160  # before iptables' mangle table (-150), which queues
SERVER_ROLES = ("relay", "stun", "app-relay", "vpn", "signalling")
STAGE_READY_S = 10.0
_SERIAL = itertools.count()


def route_path(topology: Topology, source: str, destination: IPv4Address) -> list[str]:
    """The hosts a packet from `source` to `destination` passes, following the
    topology's routes hop by hop, ending with the host that owns it."""
    hops: list[str] = []
    host = source
    for _ in range(len(topology.hosts) + 1):
        if any(i.ip.ip == destination for i in topology.interfaces(host)):
            return hops
        host = _next_hop(topology, host, destination)
        hops.append(host)
    raise TunnelError(f"the routes from {source} to {destination} loop: {' -> '.join(hops)}")


def _next_hop(topology: Topology, host: str, destination: IPv4Address) -> str:
    interfaces = topology.interfaces(host)
    for intf in interfaces:
        if destination in intf.ip.network:
            return intf.peer_host
    routes = [r for r in topology.hosts[host].routes if destination in r.destination]
    if not routes:
        raise TunnelError(f"{host} has no route to {destination}")
    via = max(routes, key=lambda r: r.destination.prefixlen).via
    for intf in interfaces:
        if via in intf.ip.network:
            return intf.peer_host
    raise TunnelError(f"{host} routes {destination} via {via}, on none of its links")


def decoy_ttl(topology: Topology) -> int:
    """The fakes' TTL: one more than the censor's hop count from the caller,
    so that the censor forwards them and the next router drops them. Raises
    TunnelError where no such TTL stops them before every server behind the
    censor."""
    caller, censor = topology.host_with_role("caller"), topology.host_with_role("censor")
    ttl: int | None = None
    for role in SERVER_ROLES:
        for server in topology.hosts_with_role(role):
            path = route_path(topology, caller, topology.address_of(server))
            if censor not in path:
                continue
            hop_ttl = path.index(censor) + 2
            if ttl is not None and hop_ttl != ttl:
                raise TunnelError(f"the censor is {ttl - 1} hops away on one path and "
                                  f"{hop_ttl - 1} on another: one TTL cannot fit both")
            ttl = hop_ttl
            if len(path) <= hop_ttl:
                raise TunnelError(f"{server} is {len(path)} hops from {caller}: fakes that "
                                  f"reach the censor ({hop_ttl - 1} hops) would reach it too")
    if ttl is None:
        raise TunnelError(f"no server lies behind the censor {censor}: nothing to decoy")
    return ttl


def uncensored_networks(topology: Topology) -> list[IPv4Network]:
    """The lab's networks the caller reaches without crossing the censor
    (its own link, the ISP's own servers): no fakes go there."""
    caller, censor = topology.host_with_role("caller"), topology.host_with_role("censor")
    networks = []
    for link in topology.links:
        try:
            path = route_path(topology, caller, link.a.ip.ip)
        except TunnelError:
            continue  # not routed from the caller (e.g. behind the contact's NAT)
        if censor not in path:
            networks.append(link.a.ip.network)
    return sorted(set(networks))


def mark_chain(uncensored: list[IPv4Network]) -> str:
    """The nft chain (in the tunnel's own table) that marks each new UDP
    flow's first packet for the stage."""
    exempt = f"ip daddr != {{ {', '.join(map(str, uncensored))} }} " if uncensored else ""
    return (f"chain decoy_first {{\n"
            f"\ttype filter hook postrouting priority {MARK_PRIORITY}; policy accept;\n"
            f'\toifname != "lo" meta l4proto udp {exempt}'
            f"meta mark & {FAKE_MARK:#010x} == 0 ct original packets 1 "
            f"counter meta mark set meta mark | {CANDIDATE_MARK:#010x}\n}}")


def queue_rule(label: str) -> list[str]:
    """The iptables rule (mangle POSTROUTING) that hands marked packets to
    the stage; its comment names the tunnel, and `down` deletes it by this
    exact spec."""
    mark = f"{CANDIDATE_MARK:#x}/{CANDIDATE_MARK:#x}"
    return ["POSTROUTING", "-p", "udp", "-m", "mark", "--mark", mark,
            "-m", "comment", "--comment", f"tunnel {label} decoy",
            "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM), "--queue-bypass"]


def stage_argv(ttl: int) -> list[str]:
    # Run by path: the stage needs only the standard library and the NFQUEUE
    # binding, and `-m` would first import the whole harness.tunnels package.
    return [sys.executable, str(Path(decoy_stage.__file__)), "--queue", str(QUEUE_NUM),
            "--ttl", str(ttl), "--count", str(FAKE_COUNT), "--mark", f"{FAKE_MARK:#x}",
            "--payload-hex", FAKE_PAYLOAD.hex()]


class DecoyTunnel:
    """Fakes ahead of each new UDP flow from the caller; no tunnel at all."""

    def __init__(self, lab: Lab, strategy: str, workdir: Path) -> None:
        self.name = strategy
        self.lab = lab
        self.workdir = workdir
        self.endpoints = TunnelledEndpoints()  # the lab's own addresses
        self.established = False
        self.ttl = decoy_ttl(lab.topology)
        self.plumbing = Plumbing(lab, "", workdir)
        self._queued: tuple[LabHost, list[str]] | None = None

    def up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        caller = self.lab.host_with_role("caller")
        self.plumbing.label = f"{self.lab.run_id}d{next(_SERIAL)}"
        stage = self.plumbing.start(caller, stage_argv(self.ttl), what="decoy stage")
        self.plumbing.wait_for_log(stage, decoy_stage.READY_LINE, STAGE_READY_S)
        self.plumbing.add_nft_table(caller, mark_chain(uncensored_networks(self.lab.topology)))
        rule = queue_rule(self.plumbing.label)
        self._iptables(caller, "-A", rule)
        self._queued = (caller, rule)
        self.established = True  # nothing to ping: the stage holds the queue, the rules are in

    def down(self) -> None:
        # A stage that died took the fakes with it (the queue lets packets
        # bypass it): the call went undecoyed, which must show as a failed
        # tunnel, not as a call the censor blocked.
        died = []
        for started in self.plumbing.started:
            try:
                self.plumbing.check_alive(started)
            except TunnelError as error:
                died.append(str(error))
        problems: list[str] = []
        if self._queued is not None:
            host, rule = self._queued
            result = host.run(["iptables", "-w", "-t", "mangle", "-D", *rule], check=False)
            if result.returncode != 0 and "does not exist" not in result.stderr:
                problems.append(f"{host.name}: iptables {' '.join(rule)}: "
                                f"{result.stderr.strip()}")
            self._queued = None
        problems += self.plumbing.undo()
        if problems:
            died.append(f"{self.name} left behind: " + "; ".join(problems))
        if died:
            raise TunnelError("\n".join(died))

    @staticmethod
    def _iptables(host: LabHost, verb: str, rule: list[str]) -> None:
        result = host.run(["iptables", "-w", "-t", "mangle", verb, *rule], check=False)
        if result.returncode != 0:
            raise TunnelError(f"iptables {verb} {' '.join(rule)} in {host.name}: "
                              f"{result.stderr.strip()}")
