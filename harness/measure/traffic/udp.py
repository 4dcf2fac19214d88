"""Multi-flow UDP: paced senders and counting sinks, with per-flow timelines,
and one-way delays from stamped packets.

Every packet ends in the trailer (flow id, sequence number from 1). A stamped
packet also carries its send time (ns, CLOCK_REALTIME, taken just before
`sendto`) in the 8 bytes before the trailer, so any sink still counts it; a
stamped sink reads the kernel's receive time (SO_TIMESTAMPNS) beside it, so
the receiver's own scheduling delays are not counted as link delay.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

TRAILER = struct.Struct("!II")  # flow id, sequence number (from 1)
STAMPED_TRAILER = struct.Struct("!QII")  # send time (ns, CLOCK_REALTIME), then TRAILER
IP_UDP_OVERHEAD = 28  # IPv4 + UDP headers: the IP length a link's rate counts
HELLO = b"callwall-traffic-hello"
MIN_SIZE = TRAILER.size
STAMPED_MIN_SIZE = STAMPED_TRAILER.size

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # root: past net.core.rmem_max
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # the socket's drop count, per packet
TIMESPEC = struct.Struct("@qq")
ANCILLARY_BYTES = 256

PayloadBuilder = Callable[[int, int, int], bytes]
"""(flow, seq, size) → the UDP payload; the trailer is written over its last
8 bytes (16 when stamped)."""


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


def with_trailer(payload: bytes, flow: int, seq: int, sent_ns: int | None = None) -> bytes:
    """`payload` with the trailer over its end; with `sent_ns`, the stamped
    trailer (send time, then flow and sequence number)."""
    if sent_ns is None:
        if len(payload) < TRAILER.size:
            raise ValueError(f"a {len(payload)}-byte payload has no room for the 8-byte trailer")
        return payload[:-TRAILER.size] + TRAILER.pack(flow, seq)
    if len(payload) < STAMPED_TRAILER.size:
        raise ValueError(f"a {len(payload)}-byte payload has no room for the 16-byte stamped "
                         "trailer")
    return payload[:-STAMPED_TRAILER.size] + STAMPED_TRAILER.pack(sent_ns, flow, seq)


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
class Arrival:
    """One stamped packet at the sink: its sequence number, the sender's clock
    just before `sendto`, the kernel's receive time (both ns, CLOCK_REALTIME;
    sender and sink share the machine's clock) and its UDP payload bytes."""

    seq: int
    sent_ns: int
    received_ns: int
    size: int

    @property
    def delay_ms(self) -> float:
        return (self.received_ns - self.sent_ns) / 1e6


@dataclass
class Reception:
    """What a sink saw: per-flow tallies; with stamps, every stamped packet in
    arrival order and the packets the receiving socket itself dropped (a full
    buffer: not the network's doing)."""

    flows: dict[int, FlowTally] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    socket_dropped: int = 0


@dataclass(frozen=True)
class Pacing:
    """`pps_per_flow` packets of `size` UDP payload bytes per flow for
    `seconds`. `stamped` puts the send time in each packet; a packet due
    within `slack_s` is sent at once rather than after a sleep."""

    flows: int
    pps_per_flow: float
    size: int
    seconds: float
    stamped: bool = False
    slack_s: float = 0.0005

    def __post_init__(self) -> None:
        if self.flows < 1 or self.pps_per_flow <= 0 or self.seconds <= 0:
            raise ValueError("flows, pps and seconds must be positive")
        least = STAMPED_MIN_SIZE if self.stamped else MIN_SIZE
        if self.size < least:
            raise ValueError(f"size must be at least {least} bytes (the trailer)")
        if self.slack_s < 0:
            raise ValueError("slack_s must not be negative")

    @classmethod
    def packets(cls, count: int, pps: float, size: int, *, stamped: bool = False,
                slack_s: float = 0.0005) -> Pacing:
        """One flow of exactly `count` packets at `pps`: the schedule ends at
        count / pps, and packet `count` is the first whose offset, computed
        the same way, reaches it."""
        if count < 1 or pps <= 0:
            raise ValueError("count and pps must be positive")
        return cls(1, pps, size, count / pps, stamped, slack_s)


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
    """Send every flow at its rate, interleaved evenly in time on an absolute
    schedule; when late, catch up without sleeping. Flow ids (in the trailer
    and given to `build`) start at `first_flow`, so several sender processes
    can share one sink. Returns packets sent per flow."""
    total_rate = pacing.flows * pacing.pps_per_flow
    sent = [0] * pacing.flows
    start = time.monotonic()
    index = 0
    while True:
        offset = index / total_rate
        if offset >= pacing.seconds:
            break
        delay = start + offset - time.monotonic()
        if delay > pacing.slack_s:
            time.sleep(delay)
        flow = index % pacing.flows
        seq = sent[flow] + 1
        flow_id = first_flow + flow
        payload = build(flow_id, seq, pacing.size)
        data = with_trailer(payload, flow_id, seq, time.time_ns() if pacing.stamped else None)
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


def open_sink(listen: tuple[str, int], rcvbuf_bytes: int, *, stamped: bool = False
              ) -> socket.socket:
    """A bound UDP socket to receive on. A stamped sink asks the kernel for
    receive times and drop counts, and (as root) a buffer past rmem_max, so a
    slow reader is never mistaken for loss on the link."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if stamped:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_bytes)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        sock.bind(listen)
    except BaseException:
        sock.close()
        raise
    return sock


def receive(sockets: Sequence[socket.socket], seconds: float, *, timeline: bool = False,
            by_socket: bool = False, until_idle_s: float | None = None, stamped: bool = False,
            max_packets: int | None = None) -> Reception:
    """Count arrivals for `seconds` (or until `until_idle_s` without any
    packet, once one arrived, or once `max_packets` arrived). Flows are keyed
    by their trailer's flow id, or by socket index with `by_socket`. With
    `stamped` (sockets from `open_sink(..., stamped=True)`, packets from a
    stamped `Pacing`), every packet is also kept as an `Arrival`."""
    reception = Reception()
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(sockets):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
    start = time.monotonic()
    last = None
    packets = 0
    buffer = bytearray(65535)
    ancillary: list[tuple[int, int, bytes]] = []
    while (now := time.monotonic()) - start < seconds:
        if until_idle_s is not None and last is not None and now - last > until_idle_s:
            break
        if max_packets is not None and packets >= max_packets:
            break
        for key, _ in selector.select(timeout=0.05):
            sock = sockets[int(key.data)]
            while True:
                try:
                    if stamped:
                        size, ancillary, _, _ = sock.recvmsg_into([buffer], ANCILLARY_BYTES)
                    else:
                        size = sock.recv_into(buffer)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                last = time.monotonic()
                packets += 1
                if size < TRAILER.size:
                    continue
                flow, seq = TRAILER.unpack_from(buffer, size - TRAILER.size)
                key_id = int(key.data) if by_socket else flow
                tally = reception.flows.setdefault(key_id, FlowTally())
                tally.add(last - start, size + IP_UDP_OVERHEAD, seq, timeline)
                if stamped and size >= STAMPED_TRAILER.size:
                    _keep_stamped(reception, buffer, size, ancillary)
                if max_packets is not None and packets >= max_packets:
                    break
    selector.close()
    return reception


def _keep_stamped(reception: Reception, buffer: bytearray, size: int,
                  ancillary: list[tuple[int, int, bytes]]) -> None:
    sent_ns, _, seq = STAMPED_TRAILER.unpack_from(buffer, size - STAMPED_TRAILER.size)
    received_ns = None
    for level, kind, raw in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == SO_TIMESTAMPNS and len(raw) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(raw)
            received_ns = sec * 1_000_000_000 + nsec
        elif kind == SO_RXQ_OVFL and len(raw) >= 4:
            dropped = int(struct.unpack_from("@I", raw)[0])
            reception.socket_dropped = max(reception.socket_dropped, dropped)
    if received_ns is None:  # no kernel stamp: the reader's clock, late by its own delays
        received_ns = time.time_ns()
    reception.arrivals.append(Arrival(seq, sent_ns, received_ns, size))


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
