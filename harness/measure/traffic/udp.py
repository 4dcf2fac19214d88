"""Multi-flow UDP: paced senders and counting sinks, with per-flow timelines."""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

TRAILER = struct.Struct("!II")  # flow id, sequence number (from 1)
IP_UDP_OVERHEAD = 28
HELLO = b"callwall-traffic-hello"
MIN_SIZE = TRAILER.size

PayloadBuilder = Callable[[int, int, int], bytes]
"""(flow, seq, size) → the UDP payload; the trailer is written over its last 8 bytes."""


@dataclass(frozen=True)
class Signature:
    """Bytes placed at the start of packet `at` (1-based) of the flows listed
    (all flows if `flows` is empty), e.g. a STUN header at packet N+1;
    `at_by_flow` gives some flows their own packet number."""

    prefix: bytes
    at: int = 1
    flows: tuple[int, ...] = ()
    every_packet_from: bool = False
    at_by_flow: tuple[tuple[int, int], ...] = ()

    def applies(self, flow: int, seq: int) -> bool:
        own = dict(self.at_by_flow)
        if flow in own:
            at = own[flow]
        elif self.flows and flow not in self.flows or self.at_by_flow and not self.flows:
            return False
        else:
            at = self.at
        return seq >= at if self.every_packet_from else seq == at


def filler_builder(signature: Signature | None = None) -> PayloadBuilder:
    """Plain 0x55 filler, with `signature` where it applies."""
    def build(flow: int, seq: int, size: int) -> bytes:
        head = signature.prefix if signature and signature.applies(flow, seq) else b""
        return (head + b"\x55" * size)[:size]
    return build


def with_trailer(payload: bytes, flow: int, seq: int) -> bytes:
    if len(payload) < TRAILER.size:
        raise ValueError(f"a {len(payload)}-byte payload has no room for the 8-byte trailer")
    return payload[:-TRAILER.size] + TRAILER.pack(flow, seq)


@dataclass
class FlowTally:
    """What one flow's sink saw. `arrivals` holds (seconds since the sink's
    start, IP bytes) and `seqs` the sequence number of each packet, when
    timelines are kept."""

    packets: int = 0
    ip_bytes: int = 0
    first_at: float | None = None
    last_at: float | None = None
    max_seq: int = 0
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    def add(self, at: float, ip_bytes: int, seq: int, keep: bool) -> None:
        self.packets += 1
        self.ip_bytes += ip_bytes
        self.first_at = at if self.first_at is None else self.first_at
        self.last_at = at
        self.max_seq = max(self.max_seq, seq)
        if keep:
            self.arrivals.append((round(at, 6), ip_bytes))
            self.seqs.append(seq)


@dataclass(frozen=True)
class Pacing:
    flows: int
    pps_per_flow: float
    size: int
    seconds: float

    def __post_init__(self) -> None:
        if self.flows < 1 or self.pps_per_flow <= 0 or self.seconds <= 0:
            raise ValueError("flows, pps and seconds must be positive")
        if self.size < MIN_SIZE:
            raise ValueError(f"size must be at least {MIN_SIZE} bytes (the trailer)")


def open_flow_sockets(count: int, first_port: int = 0) -> list[socket.socket]:
    """One socket (one source port) per flow; `first_port` pins the ports so
    a later run continues the same 5-tuples (and conntrack entries)."""
    sockets = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.bind(("0.0.0.0", first_port + index if first_port else 0))
        sockets.append(sock)
    return sockets


def paced_send(sockets: Sequence[socket.socket], targets: Sequence[tuple[str, int] | None],
               pacing: Pacing, build: PayloadBuilder, first_flow: int = 0) -> list[int]:
    """Send every flow at its rate, interleaved evenly in time; when late,
    catch up without sleeping. Flow ids (in the trailer and given to `build`)
    start at `first_flow`, so several sender processes can share one sink.
    Returns packets sent per flow."""
    total_rate = pacing.flows * pacing.pps_per_flow
    sent = [0] * pacing.flows
    start = time.monotonic()
    index = 0
    while True:
        due = start + index / total_rate
        if due - start >= pacing.seconds:
            break
        delay = due - time.monotonic()
        if delay > 0.0005:
            time.sleep(delay)
        flow = index % pacing.flows
        seq = sent[flow] + 1
        flow_id = first_flow + flow
        data = with_trailer(build(flow_id, seq, pacing.size), flow_id, seq)
        target = targets[flow]
        try:
            if target is None:
                sockets[flow].send(data)
            else:
                sockets[flow].sendto(data, target)
        except (ConnectionRefusedError, BlockingIOError):
            pass  # an ICMP error from an earlier packet, or a full buffer: the packet is lost
        sent[flow] = seq
        index += 1
    return sent


def count_flows(sockets: Sequence[socket.socket], seconds: float, timeline: bool,
                by_socket: bool = False, until_idle_s: float | None = None
                ) -> dict[int, FlowTally]:
    """Count arrivals for `seconds` (or until `until_idle_s` without any
    packet, once one arrived). Flows are keyed by their trailer's flow id, or
    by socket index with `by_socket`."""
    tallies: dict[int, FlowTally] = {}
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(sockets):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
    start = time.monotonic()
    last = None
    buffer = bytearray(65535)
    while (now := time.monotonic()) - start < seconds:
        if until_idle_s is not None and last is not None and now - last > until_idle_s:
            break
        for key, _ in selector.select(timeout=0.05):
            sock = sockets[int(key.data)]
            while True:
                try:
                    size = sock.recv_into(buffer)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                last = time.monotonic()
                if size < TRAILER.size:
                    continue
                flow, seq = TRAILER.unpack_from(buffer, size - TRAILER.size)
                key_id = int(key.data) if by_socket else flow
                tally = tallies.setdefault(key_id, FlowTally())
                tally.add(last - start, size + IP_UDP_OVERHEAD, seq, timeline)
    selector.close()
    return tallies


def wait_for_hellos(sock: socket.socket, flows: int, wait_s: float) -> list[tuple[str, int]]:
    """The addresses of the first `flows` distinct peers that say hello."""
    peers: list[tuple[str, int]] = []
    deadline = time.monotonic() + wait_s
    while len(peers) < flows:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"only {len(peers)} of {flows} flows said hello")
        sock.settimeout(remaining)
        data, peer = sock.recvfrom(65535)
        if data == HELLO and peer not in peers:
            peers.append(peer)
    return peers
