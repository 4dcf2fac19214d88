"""One-way delay probes: what a link really does to each packet.

Sender and receiver run in two lab hosts of the same machine, so they share
one clock (CLOCK_REALTIME; labs use no time namespaces). Each UDP packet
carries its sequence number and the sender's timestamp taken just before
`sendto`; the receiver takes the kernel's receive timestamp (SO_TIMESTAMPNS),
so its own scheduling delays do not count as link delay.

  python -m harness.measure.owd recv --listen IP:PORT --count N --seconds S
      print one JSON object: {"received": [[seq, send_ns, recv_ns, bytes], ...],
      "socket_dropped": packets the receiving socket itself dropped}
  python -m harness.measure.owd send --to IP:PORT --count N --pps R --size B
      print {"sent": N, "seconds": ...}

`OwdTrace` turns what the receiver saw into delays, losses, bursts and rate.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.netns.host import LabHost

HEADER = struct.Struct("!QQ")  # sequence number, send time (ns, CLOCK_REALTIME)
UDP_IP_OVERHEAD = 28  # IPv4 + UDP headers: the IP length a link's rate counts
RCVBUF_BYTES = 16 * 1024 * 1024
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # root: past net.core.rmem_max
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # the socket's drop count, per packet
TIMESPEC = struct.Struct("@qq")


@dataclass(frozen=True)
class Arrival:
    seq: int
    sent_ns: int
    received_ns: int
    size: int

    @property
    def delay_ms(self) -> float:
        return (self.received_ns - self.sent_ns) / 1e6


@dataclass(frozen=True)
class OwdTrace:
    """What the receiver saw of `sent` packets numbered 0..sent-1."""

    sent: int
    arrivals: list[Arrival]
    receiver_dropped: int = 0  # dropped by the receiving socket: not the link's doing

    @classmethod
    def from_json(cls, sent: int, raw: dict[str, Any]) -> OwdTrace:
        return cls(sent, [Arrival(*row) for row in raw["received"]],
                   int(raw.get("socket_dropped", 0)))

    def first_copies(self) -> list[Arrival]:
        seen: set[int] = set()
        result = []
        for arrival in self.arrivals:
            if arrival.seq not in seen:
                seen.add(arrival.seq)
                result.append(arrival)
        return result

    def delays_ms(self) -> list[float]:
        return [a.delay_ms for a in self.first_copies()]

    def lost(self) -> list[int]:
        """Sequence numbers that never arrived, in order."""
        got = {a.seq for a in self.arrivals}
        return [seq for seq in range(self.sent) if seq not in got]

    def duplicates(self) -> int:
        return len(self.arrivals) - len(self.first_copies())

    def runs(self) -> tuple[list[int], list[int]]:
        """Lengths of the runs of consecutive losses (bursts) and deliveries (gaps),
        leaving out the first and last run, which the trace's ends cut short."""
        lost = set(self.lost())
        runs: list[tuple[bool, int]] = []
        for seq in range(self.sent):
            state = seq in lost
            if runs and runs[-1][0] == state:
                runs[-1] = (state, runs[-1][1] + 1)
            else:
                runs.append((state, 1))
        inner = runs[1:-1]
        return [n for s, n in inner if s], [n for s, n in inner if not s]

    def receive_rate_bps(self) -> float:
        """IP-level bit rate at the receiver, between the first and last arrival
        (the first packet's bits are outside that interval)."""
        copies = sorted(self.arrivals, key=lambda a: a.received_ns)
        if len(copies) < 2:
            return 0.0
        bits = sum((a.size + UDP_IP_OVERHEAD) * 8 for a in copies[1:])
        return bits / ((copies[-1].received_ns - copies[0].received_ns) / 1e9)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def stdev(values: Sequence[float]) -> float:
    return statistics.pstdev(values)


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def send(target: tuple[str, int], count: int, pps: float, size: int) -> float:
    """Send `count` numbered packets at `pps`, paced on an absolute schedule."""
    padding = b"\x00" * max(0, size - HEADER.size)
    interval = 1.0 / pps
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for seq in range(count):
            delay = start + seq * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendto(HEADER.pack(seq, time.time_ns()) + padding, target)
    return time.monotonic() - start


def receive(listen: tuple[str, int], count: int, seconds: float, idle_s: float
            ) -> dict[str, Any]:
    """Until `seconds` pass, or `idle_s` after the last packet once one came.
    Also returns how many packets the socket itself dropped (a full buffer),
    so a slow receiver is never mistaken for link loss."""
    rows: list[list[int]] = []
    dropped = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        sock.bind(listen)
        print("ready", file=sys.stderr, flush=True)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(min(remaining, idle_s) if rows else remaining)
            try:
                data, ancillary, _, _ = sock.recvmsg(65535, 256)
            except TimeoutError:
                if rows:
                    break
                continue
            rows.append(_row(data, ancillary))
            dropped = max(dropped, _socket_drops(ancillary))
            if len(rows) >= 2 * count:  # duplicates can double the packets, no more
                break
    return {"received": rows, "socket_dropped": dropped}


def _socket_drops(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(raw) >= 4:
            return int(struct.unpack_from("@I", raw)[0])
    return 0


def _row(data: bytes, ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    seq, sent_ns = HEADER.unpack_from(data)
    received_ns = time.time_ns()
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = TIMESPEC.unpack_from(raw)
            received_ns = sec * 1_000_000_000 + nsec
    return [seq, sent_ns, received_ns, len(data)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    recv = sub.add_parser("recv")
    recv.add_argument("--listen", required=True)
    recv.add_argument("--count", type=int, required=True)
    recv.add_argument("--seconds", type=float, required=True)
    recv.add_argument("--idle", type=float, default=1.0,
                      help="stop this long after the last packet (default 1 s)")
    snd = sub.add_parser("send")
    snd.add_argument("--to", required=True)
    snd.add_argument("--count", type=int, required=True)
    snd.add_argument("--pps", type=float, required=True)
    snd.add_argument("--size", type=int, default=200)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "recv":
        print(json.dumps(receive(_endpoint(args.listen), args.count, args.seconds, args.idle)),
              flush=True)
    else:
        seconds = send(_endpoint(args.to), args.count, args.pps, args.size)
        print(json.dumps({"sent": args.count, "seconds": round(seconds, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def measure(sender: LabHost, receiver: LabHost, address: str, *, count: int, pps: float,
            size: int = 200, port: int = 40_400, tail_s: float = 3.0) -> OwdTrace:
    """Send `count` probes from `sender` to `address` (one of `receiver`'s) and
    return what arrived. The receiver is a recorded process of the run."""
    log = _log_path(receiver)
    already = log.stat().st_size if log.exists() else 0  # earlier probes' "ready" lines
    command = [sys.executable, "-m", "harness.measure.owd", "recv", "--listen",
               f"{address}:{port}", "--count", str(count),
               "--seconds", str(count / pps + tail_s + 5.0), "--idle", str(tail_s)]
    proc = receiver.start(command, what="owd receiver", log=log, stdout=subprocess.PIPE)
    try:
        _await_ready(log, proc, already)
        sender.run([sys.executable, "-m", "harness.measure.owd", "send", "--to",
                    f"{address}:{port}", "--count", str(count), "--pps", str(pps),
                    "--size", str(size)], timeout=count / pps + 30.0)
        out, _ = proc.communicate(timeout=count / pps + tail_s + 30.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return OwdTrace.from_json(count, json.loads(out))


def _log_path(receiver: LabHost) -> Path:
    base = receiver.registry.files if receiver.registry is not None else Path("/tmp")
    return base / f"owd-{receiver.name}.log"


def _await_ready(log: Path, proc: subprocess.Popen[bytes], offset: int,
                 timeout_s: float = 10.0) -> None:
    """Until this receiver (its line after `offset` in the shared log) is bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and b"ready" in log.read_bytes()[offset:]:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError(f"the owd receiver did not start: {log.read_text(errors='replace')}"
                       if log.exists() else "the owd receiver did not start")
