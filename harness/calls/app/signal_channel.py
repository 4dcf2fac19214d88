"""The two sides of an app-like call meeting through the lab's signalling
server (harness.services.signalling: newline-delimited JSON rooms), the way
the real apps exchange call parameters through their own servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from harness.services.signalling import decode, encode


class SignalError(RuntimeError):
    pass


class SignalChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._inbox: list[dict[str, Any]] = []
        self._peer_present = False

    @classmethod
    async def join(cls, host: str, port: int, room: str, timeout_s: float) -> SignalChannel:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                    timeout_s)
        except (OSError, TimeoutError) as exc:
            raise SignalError(f"signalling server {host}:{port} unreachable: {exc}") from exc
        channel = cls(reader, writer)
        writer.write(encode({"join": room}))
        joined = await channel._read(timeout_s)
        if "joined" not in joined:
            raise SignalError(f"signalling refused the room: {joined}")
        channel._peer_present = int(joined.get("peers", 1)) >= 2
        return channel

    async def wait_peer(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._peer_present:
            message = await self._read(deadline - loop.time())
            if message.get("peer_joined") or message.get("ready"):
                self._peer_present = True
            else:
                self._inbox.append(message)
        self._writer.write(encode({"ready": True}))

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(encode(message))

    async def receive(self, key: str, timeout_s: float) -> Any:
        """The value of the first message carrying `key` (others are kept)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for message in self._inbox:
                if key in message:
                    self._inbox.remove(message)
                    return message[key]
            message = await self._read(deadline - loop.time())
            if message.get("peer_left"):
                raise SignalError("the other side left the call")
            self._inbox.append(message)

    async def _read(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(self._reader.readline(), max(timeout_s, 0.0))
        except TimeoutError as exc:
            raise SignalError("signalling timed out") from exc
        if not line:
            raise SignalError("signalling connection closed")
        try:
            return decode(line)
        except (ValueError, json.JSONDecodeError) as exc:
            raise SignalError(f"bad signalling message: {exc}") from exc

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()
