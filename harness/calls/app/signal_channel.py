"""The two sides of an app-like call meeting through their app's chat server
(an instance of harness.services.signalling: newline-delimited JSON rooms),
the way the real apps exchange call parameters and text through their own
servers.

A :class:`SignalChannel` is a view of one connection: every message that
arrives is kept, in order, for every view of that connection (a view opened
later sees what came before it too), and each view takes the messages it
asks for by key (``receive``), leaving the others to the other views.

Inside :func:`shared_channels` (harness.calls.app.client runs a call in it),
views of the same server and room share one TCP connection, as the real apps
carry signalling and messages over one long-lived connection: the runner's
call set-up and text, a transport's own exchange (telegram-like's P2P
endpoints, whatsapp-like's relay legs) all go over it. Outside it, each
``join`` opens its own connection."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterator
from typing import Any

from harness.services.signalling import MAX_LINE, decode, encode

Key = tuple[str, int, str]
_SHARED: contextvars.ContextVar[dict[Key, asyncio.Future[_Connection]] | None] = \
    contextvars.ContextVar("shared_signal_channels", default=None)


class SignalError(RuntimeError):
    pass


class _Connection:
    """One joined TCP connection to a signalling server, and what it received."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 peer_present: bool) -> None:
        self._reader, self._writer = reader, writer
        self.peer_present = peer_present
        self.history: list[dict[str, Any]] = []
        self.closed: str | None = None  # why nothing more will arrive
        self.changed = asyncio.Condition()
        self._pump = asyncio.ensure_future(self._read_all())

    @classmethod
    async def open(cls, host: str, port: int, room: str, timeout_s: float) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=MAX_LINE), timeout_s)
        except (OSError, TimeoutError) as exc:
            raise SignalError(f"signalling server {host}:{port} unreachable: "
                              f"{exc!r}") from exc
        try:
            writer.write(encode({"join": room}))
            joined = decode(await asyncio.wait_for(reader.readline(), timeout_s) or b"{}")
        except (OSError, TimeoutError, ValueError) as exc:
            writer.close()
            raise SignalError(f"signalling server {host}:{port} did not let us join: "
                              f"{exc!r}") from exc
        if "joined" not in joined:
            writer.close()
            raise SignalError(f"signalling refused the room: {joined}")
        return cls(reader, writer, int(joined.get("peers", 1)) >= 2)

    async def _read_all(self) -> None:
        reason = "signalling connection closed"
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    message = decode(line)
                except (ValueError, json.JSONDecodeError) as exc:
                    reason = f"bad signalling message: {exc}"
                    break
                async with self.changed:
                    if message.get("peer_joined") or message.get("ready"):
                        self.peer_present = True
                    self.history.append(message)
                    self.changed.notify_all()
        except (OSError, ValueError) as exc:
            reason = f"signalling connection failed: {exc!r}"
        finally:
            self.closed = reason
            async with self.changed:
                self.changed.notify_all()

    def send(self, message: dict[str, Any]) -> None:
        if self._writer.is_closing():
            raise SignalError(self.closed or "signalling connection closed")
        self._writer.write(encode(message))

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()


class SignalChannel:
    def __init__(self, connection: _Connection, owned: bool) -> None:
        self._connection = connection
        self._owned = owned  # closing this view closes the connection
        self._taken: set[int] = set()  # messages of the history this view has consumed

    @classmethod
    async def join(cls, host: str, port: int, room: str, timeout_s: float) -> SignalChannel:
        """Join `room` on the server at host:port (or share the connection a
        view of the same call already opened, inside shared_channels)."""
        shared = _SHARED.get()
        if shared is None:
            return cls(await _Connection.open(host, port, room, timeout_s), owned=True)
        key = (host, port, room)
        pending = shared.get(key)
        if pending is None:
            pending = shared[key] = asyncio.ensure_future(
                _Connection.open(host, port, room, timeout_s))
        try:
            connection = await asyncio.shield(pending)
        except SignalError:
            if shared.get(key) is pending:
                del shared[key]
            raise
        return cls(connection, owned=False)

    @property
    def peer_present(self) -> bool:
        return self._connection.peer_present

    async def wait_peer(self, timeout_s: float) -> None:
        """Until the other side is in the room; then tell it we are ready."""
        connection = self._connection
        async with connection.changed:
            try:
                await asyncio.wait_for(connection.changed.wait_for(
                    lambda: connection.peer_present or connection.closed is not None),
                    max(timeout_s, 0.0))
            except TimeoutError as exc:
                raise SignalError("signalling timed out") from exc
        if not connection.peer_present:
            raise SignalError(connection.closed or "signalling connection closed")
        self.send({"ready": True})

    def send(self, message: dict[str, Any]) -> None:
        self._connection.send(message)

    async def receive(self, key: str, timeout_s: float) -> Any:
        """The value of the first message carrying `key` this view has not
        taken yet (others stay for later calls and for other views).
        SignalError when the other side left first, the connection closed, or
        `timeout_s` passed."""
        connection = self._connection
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with connection.changed:
            while True:
                found = self._take(key)
                if found is not None:
                    return found[0]
                if connection.closed is not None:
                    raise SignalError(connection.closed)
                try:
                    await asyncio.wait_for(connection.changed.wait(),
                                           max(deadline - loop.time(), 0.0))
                except TimeoutError as exc:
                    raise SignalError("signalling timed out") from exc

    def _take(self, key: str) -> tuple[Any] | None:
        """(value,) of the first untaken message with `key`; SignalError if
        the peer's leaving comes first."""
        history = self._connection.history
        for index in range(len(history)):
            if index in self._taken:
                continue
            message = history[index]
            if key in message:
                self._taken.add(index)
                return (message[key],)
            if message.get("peer_left"):
                raise SignalError("the other side left the call")
        return None

    async def close(self) -> None:
        if self._owned:
            await self._connection.close()


@contextlib.asynccontextmanager
async def shared_channels() -> AsyncIterator[None]:
    """Within it, views of one server and room share one connection; on
    leaving, every shared connection is closed."""
    shared: dict[Key, asyncio.Future[_Connection]] = {}
    token = _SHARED.set(shared)
    try:
        yield
    finally:
        _SHARED.reset(token)
        for pending in shared.values():
            if pending.done() and not pending.cancelled() and pending.exception() is None:
                await pending.result().close()
            else:
                pending.cancel()
