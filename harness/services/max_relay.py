"""The max-like profile's media relay: a plain UDP relay on the domestic app
server (host ``max``).

What Max's calls really use on the wire is not established here (nothing
public describes it); this relay is the simplest honest stand-in: relay only,
plain RTP, no STUN dialect. [S] every parameter below is a guess.

Protocol, on one UDP port:

* a datagram starting with ``{`` is a JSON control message. ``{"hello":
  CALL_ID, "role": "caller"|"callee", "t": ANY}`` registers the sender as that
  side of that call (again and again: it is also the keepalive); the relay
  answers ``{"ok": CALL_ID, "t": <the same t>, "peers": N}`` (N = sides it
  knows of the call), so the client can time the round trip;
* any other datagram (RTP) from a registered side is forwarded to the other
  side of its call, unchanged; from anyone else it is dropped.

Run as ``python -m harness.services.max_relay --listen IP [--port P]``; it
prints ``ready`` once bound and exits 0 on SIGTERM/SIGINT. Listening on
0.0.0.0 suits a host with a leg on each side (replies leave by the leg the
route to the client takes, which is the one the client sent to)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

PORT = 3478  # [S] Max's call ports are not reported
MAX_CALLS = 1000
CALL_IDLE_S = 120.0
MAX_CONTROL_BYTES = 512
ROLES = ("caller", "callee")

Address = tuple[str, int]


def hello(call_id: str, role: str, t: float) -> bytes:
    return json.dumps({"hello": call_id, "role": role, "t": t},
                      separators=(",", ":")).encode()


def is_control(data: bytes) -> bool:
    return data[:1] == b"{"


def parse_control(data: bytes) -> dict[str, Any] | None:
    """A control message, or None when it is not one."""
    if not is_control(data) or len(data) > MAX_CONTROL_BYTES:
        return None
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


@dataclass
class _Call:
    sides: dict[str, Address] = field(default_factory=dict)
    seen: float = field(default_factory=time.monotonic)


class MaxRelay(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.calls: dict[str, _Call] = {}
        self.members: dict[Address, tuple[str, str]] = {}  # address -> (call id, role)
        self.forwarded = 0
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self._transport is None or not data:
            return
        if is_control(data):
            self._control(data, addr)
            return
        member = self.members.get(addr)
        if member is None:
            return
        call = self.calls.get(member[0])
        other = next((a for role, a in call.sides.items() if role != member[1]), None) \
            if call else None
        if other is not None:
            self._transport.sendto(data, other)
            self.forwarded += 1

    def _control(self, data: bytes, addr: Address) -> None:
        assert self._transport is not None
        message = parse_control(data)
        if message is None:
            return
        call_id, role = message.get("hello"), message.get("role")
        if not isinstance(call_id, str) or not call_id or len(call_id) > 200 \
                or role not in ROLES:
            return
        call = self.calls.get(call_id)
        if call is None:
            self._expire()
            if len(self.calls) >= MAX_CALLS:
                return
            call = self.calls[call_id] = _Call()
        old = call.sides.get(role)
        if old is not None and old != addr:
            self.members.pop(old, None)
        call.sides[role] = addr
        call.seen = time.monotonic()
        self.members[addr] = (call_id, role)
        reply = {"ok": call_id, "t": message.get("t"), "peers": len(call.sides)}
        self._transport.sendto(json.dumps(reply, separators=(",", ":")).encode(), addr)

    def _expire(self) -> None:
        now = time.monotonic()
        for call_id, call in list(self.calls.items()):
            if now - call.seen > CALL_IDLE_S:
                for addr in call.sides.values():
                    self.members.pop(addr, None)
                del self.calls[call_id]


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(MaxRelay, local_addr=(host, port))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="callwall max-like media relay")
    parser.add_argument("--listen", required=True, help="IP address to bind (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.listen, args.port))
    except OSError as exc:
        print(f"max relay: cannot bind {args.listen}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
