"""UDP probe flows: measure what a policy does to a packet stream.

Run inside lab hosts:
  python -m harness.measure.probe sink --listen IP:PORT --seconds S
      count what arrives (upstream probe), print JSON
  python -m harness.measure.probe send --to IP:PORT --rate-kbit R --seconds S
      send a paced stream (--stun-cookie makes every packet look like STUN;
      --plain-first N sends N plain packets before the STUN-looking ones)
  python -m harness.measure.probe stream --listen IP:PORT --rate-kbit R --seconds S
      wait for a hello, then stream back to its sender (downstream probe)
  python -m harness.measure.probe fetch --to IP:PORT --seconds S
      send the hello and count what comes back, print JSON
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

STUN_MAGIC_COOKIE = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
HELLO = b"callwall-probe-hello"


@dataclass
class Tally:
    packets: int = 0
    bytes: int = 0
    first_at: float | None = None
    last_at: float | None = None

    def add(self, size: int) -> None:
        now = time.monotonic()
        self.packets += 1
        self.bytes += size
        self.first_at = self.first_at or now
        self.last_at = now

    def report(self, seconds: float) -> dict[str, float | int | None]:
        result: dict[str, float | int | None] = asdict(self)
        result["kbit_per_s"] = round(self.bytes * 8 / 1000 / seconds, 3)
        return result


def payload(size: int, stun: bool) -> bytes:
    """A STUN Binding Request header (with the magic cookie) or plain bytes."""
    if not stun:
        return b"\x55" * size
    body = size - 20
    header = struct.pack("!HHI", STUN_BINDING_REQUEST, body, STUN_MAGIC_COOKIE)
    return header + os.urandom(12) + b"\x00" * body


def paced_send(sock: socket.socket, target: tuple[str, int] | None, rate_kbit: float,
               size: int, seconds: float, stun: bool = False, plain_first: int = 0) -> int:
    interval = size * 8 / (rate_kbit * 1000)
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        data = payload(size, stun and sent >= plain_first)
        if target is None:
            sock.send(data)
        else:
            sock.sendto(data, target)
        sent += 1
        time.sleep(max(0.0, start + sent * interval - now))
    return sent


def count_until(sock: socket.socket, seconds: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            continue
        tally.add(len(data))
    return tally


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def cmd_sink(args: argparse.Namespace) -> Mapping[str, object]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(_endpoint(args.listen))
        print("ready", file=sys.stderr, flush=True)
        return count_until(sock, args.seconds).report(args.seconds)


def cmd_send(args: argparse.Namespace) -> Mapping[str, object]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sent = paced_send(sock, _endpoint(args.to), args.rate_kbit, args.size, args.seconds,
                          args.stun_cookie, args.plain_first)
    return {"sent": sent, "bytes": sent * args.size}


def cmd_stream(args: argparse.Namespace) -> Mapping[str, object]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(_endpoint(args.listen))
        sock.settimeout(args.wait)
        print("ready", file=sys.stderr, flush=True)
        _, peer = sock.recvfrom(65535)
        sock.connect(peer)
        sent = paced_send(sock, None, args.rate_kbit, args.size, args.seconds)
    return {"sent": sent, "bytes": sent * args.size, "peer": f"{peer[0]}:{peer[1]}"}


def cmd_fetch(args: argparse.Namespace) -> Mapping[str, object]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(_endpoint(args.to))
        sock.send(HELLO)
        return count_until(sock, args.seconds).report(args.seconds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    sink = sub.add_parser("sink")
    sink.add_argument("--listen", required=True)
    sink.add_argument("--seconds", type=float, required=True)
    sink.set_defaults(run=cmd_sink)
    send = sub.add_parser("send")
    send.add_argument("--to", required=True)
    send.add_argument("--stun-cookie", action="store_true")
    send.add_argument("--plain-first", type=int, default=0)
    stream = sub.add_parser("stream")
    stream.add_argument("--listen", required=True)
    stream.add_argument("--wait", type=float, default=10.0)
    stream.set_defaults(run=cmd_stream)
    for p in (send, stream):
        p.add_argument("--rate-kbit", type=float, required=True)
        p.add_argument("--size", type=int, default=200)
        p.add_argument("--seconds", type=float, required=True)
    send.set_defaults(run=cmd_send)
    fetch = sub.add_parser("fetch")
    fetch.add_argument("--to", required=True)
    fetch.add_argument("--seconds", type=float, required=True)
    fetch.set_defaults(run=cmd_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    print(json.dumps(args.run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
