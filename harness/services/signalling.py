"""Minimal room-based signalling over TCP (newline-delimited JSON).

Protocol (one JSON object per line, UTF-8):

* a client first sends ``{"join": "<room>"}``; the server answers
  ``{"joined": "<room>", "peers": N}`` (N = clients in the room, itself included)
  or ``{"error": "room-full"}`` / ``{"error": "bad-join"}`` and closes;
* when a second client joins, the first one receives ``{"peer_joined": true}``;
* every later line from a client is forwarded verbatim to the other client of
  the same room (at most 2 per room); with nobody else in the room it is dropped;
* when a client leaves, the remaining one receives ``{"peer_left": true}``.

Run as ``python -m harness.services.signalling --listen IP --port P [--port P2]``;
given several ports, one server listens on all of them (a client on one port
meets a client on another in the same room), as an app's chat server answers
on its main port and its fallback. It prints ``ready`` on stdout once
listening and exits with status 0 on SIGTERM/SIGINT.

Besides the lab's own signalling server (host ``signal``), the app-like
profiles' chat servers are instances of this one (harness.services.lab_services).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 1 << 20
ROOM_CAPACITY = 2
JOIN_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 5.0


class SignallingError(Exception):
    """Signalling failed (unreachable server, closed connection, protocol error)."""


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("a signalling message must be a JSON object")
    return obj


@dataclass(eq=False)
class _Member:
    writer: asyncio.StreamWriter

    async def send_line(self, line: bytes) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(line)
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)


@dataclass
class SignallingServer:
    """Rooms of at most two clients; forwards lines between them."""

    rooms: dict[str, list[_Member]] = field(default_factory=dict)

    def _other(self, room: str, member: _Member) -> _Member | None:
        for other in self.rooms.get(room, []):
            if other is not member:
                return other
        return None

    def _add(self, room: str, member: _Member) -> bool:
        members = self.rooms.setdefault(room, [])
        if len(members) >= ROOM_CAPACITY:
            return False
        members.append(member)
        return True

    def _remove(self, room: str, member: _Member) -> None:
        members = self.rooms.get(room, [])
        if member in members:
            members.remove(member)
        if not members:
            self.rooms.pop(room, None)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        member = _Member(writer)
        try:
            room = await self._join(reader, member)
            if room is not None:
                await self._relay(reader, room, member)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _join(self, reader: asyncio.StreamReader, member: _Member) -> str | None:
        line = await asyncio.wait_for(reader.readline(), JOIN_TIMEOUT_S)
        try:
            room = decode(line).get("join") if line else None
        except ValueError:
            room = None
        if not isinstance(room, str) or not room:
            await member.send_line(encode({"error": "bad-join"}))
            return None
        if not self._add(room, member):
            await member.send_line(encode({"error": "room-full"}))
            return None
        await member.send_line(encode({"joined": room, "peers": len(self.rooms[room])}))
        other = self._other(room, member)
        if other is not None:
            await other.send_line(encode({"peer_joined": True}))
        return room

    async def _relay(self, reader: asyncio.StreamReader, room: str, member: _Member) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                other = self._other(room, member)
                if other is not None and line.strip():
                    await other.send_line(line if line.endswith(b"\n") else line + b"\n")
        finally:
            self._remove(room, member)
            other = self._other(room, member)
            if other is not None:
                await other.send_line(encode({"peer_left": True}))

    def close_all(self) -> None:
        """Close every client connection (on shutdown); handlers then finish."""
        for members in self.rooms.values():
            for member in members:
                member.writer.close()


async def start_server(host: str, port: int, state: SignallingServer | None = None
                       ) -> tuple[asyncio.Server, SignallingServer]:
    """Listen on `port`; with `state`, share the rooms of another listener."""
    state = state if state is not None else SignallingServer()
    server = await asyncio.start_server(state.handle, host, port, limit=MAX_LINE)
    return server, state


class SignallingClient:
    """Client side of the protocol, used by the call peers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> SignallingClient:
        """Open the TCP connection; SignallingError if not possible within *timeout*."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=MAX_LINE), timeout
            )
        except (TimeoutError, OSError) as exc:
            raise SignallingError(f"cannot reach {host}:{port}: {exc!r}") from exc
        return cls(reader, writer)

    async def send(self, obj: dict[str, Any]) -> None:
        try:
            self._writer.write(encode(obj))
            await asyncio.wait_for(self._writer.drain(), WRITE_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            raise SignallingError(f"send failed: {exc!r}") from exc

    async def recv(self, timeout: float) -> dict[str, Any]:
        """Next message. TimeoutError after *timeout*; SignallingError when closed."""
        try:
            line = await asyncio.wait_for(self._reader.readline(), timeout)
        except TimeoutError:
            raise  # (a subclass of OSError: must come first)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            raise SignallingError(f"receive failed: {exc!r}") from exc
        if not line:
            raise SignallingError("connection closed by the server")
        try:
            return decode(line)
        except ValueError as exc:
            raise SignallingError(f"malformed message: {exc}") from exc

    async def join(self, room: str, timeout: float) -> dict[str, Any]:
        """Join *room*; returns the server's ``joined`` reply."""
        await self.send({"join": room})
        reply = await self.recv(timeout)
        if "error" in reply:
            raise SignallingError(str(reply["error"]))
        if reply.get("joined") != room:
            raise SignallingError(f"unexpected join reply: {reply}")
        return reply

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)


async def serve(host: str, ports: list[int]) -> None:
    state = SignallingServer()
    servers = [(await start_server(host, port, state))[0] for port in ports]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    state.close_all()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="callwall signalling server")
    parser.add_argument("--listen", required=True, help="IP address to listen on")
    parser.add_argument("--port", required=True, type=int, action="append",
                        help="TCP port (repeat to listen on several, sharing the rooms)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args.listen, args.port))
    except OSError as exc:
        ports = ",".join(str(p) for p in args.port)
        print(f"signalling: cannot listen on {args.listen}:{ports}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
