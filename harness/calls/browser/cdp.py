"""A minimal Chrome DevTools Protocol client over the pipe Chromium opens with
``--remote-debugging-pipe``: the browser reads commands from its file
descriptor 3 and writes replies and events to its descriptor 4, one JSON
message per frame, each frame ended by a NUL byte (the pipe transport of
Chromium's DevToolsPipeHandler; Puppeteer's PipeTransport speaks the same).

Why the pipe and not ``--remote-debugging-port``: no listening socket in the
lab host, no port to choose or find (DevToolsActivePort), and no WebSocket
client to carry: the framing is one NUL byte. The browser is this process's
child, so whoever ends the driver ends the browser's only controller too.

Commands to a page go to its session (``Target.attachToTarget`` with
``flatten``): the message then carries ``sessionId``, and so do the page's
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SEPARATOR = b"\0"
# The largest reply this client accepts (a getStats report or a chunk of audio
# is far below it); a longer frame means the pipe is out of step.
MAX_FRAME_BYTES = 64 << 20
READ_CHUNK = 1 << 16
DEFAULT_TIMEOUT_S = 10.0

EventHandler = Callable[[dict[str, Any], str | None], None]


class CdpError(RuntimeError):
    """A command failed: the browser answered with an error, did not answer in
    time, or the pipe closed."""


class CdpClosed(CdpError):
    """The browser closed its end of the pipe (it exited or crashed)."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame: compact JSON and the NUL separator."""
    return json.dumps(message, separators=(",", ":")).encode() + SEPARATOR


def split_frames(buffer: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """The complete messages in `buffer` and what is left of an incomplete
    frame. A frame that is not a JSON object raises ValueError (the pipe is
    corrupt: nothing after it can be trusted)."""
    *frames, rest = buffer.split(SEPARATOR)
    messages = []
    for frame in frames:
        if not frame:
            continue
        message = json.loads(frame)
        if not isinstance(message, dict):
            raise ValueError(f"a DevTools message must be a JSON object, not {frame[:80]!r}")
        messages.append(message)
    if len(rest) > MAX_FRAME_BYTES:
        raise ValueError(f"a DevTools frame longer than {MAX_FRAME_BYTES} bytes")
    return messages, rest


@dataclass(frozen=True)
class Reply:
    """What the browser answered to one command."""

    result: dict[str, Any]


def reply_of(message: dict[str, Any], method: str) -> Reply:
    """The result of a reply, or CdpError with the browser's own message."""
    error = message.get("error")
    if error is not None:
        text = error.get("message", error) if isinstance(error, dict) else error
        data = error.get("data") if isinstance(error, dict) else None
        raise CdpError(f"{method}: {text}" + (f" ({data})" if data else ""))
    result = message.get("result", {})
    return Reply(result if isinstance(result, dict) else {})


class CdpPipe:
    """Commands out, replies and events in, over the two pipe ends of one browser.

    ``call`` sends a command and waits for the reply with the same id; every
    other message is an event, handed to the handlers registered with ``on``
    for its method (with the session it came from)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._next_id = 0
        self._pending: dict[int, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._handlers: dict[str, list[EventHandler]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed: str | None = None
        self._write_lock = asyncio.Lock()

    def start(self) -> None:
        """Start reading; must run inside the event loop."""
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._reader = asyncio.create_task(self._read_loop())

    def on(self, method: str, handler: EventHandler) -> None:
        self._handlers.setdefault(method, []).append(handler)

    @property
    def closed(self) -> str | None:
        """Why the pipe is closed, or None while it is open."""
        return self._closed

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   session: str | None = None,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        if self._closed is not None:
            raise CdpClosed(f"{method}: {self._closed}")
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = (method, future)
        try:
            await self._write(encode(message))
            answer = await asyncio.wait_for(future, timeout_s)
        except TimeoutError as exc:
            raise CdpError(f"{method}: no reply within {timeout_s:g} s") from exc
        finally:
            self._pending.pop(ident, None)
        return reply_of(answer, method).result

    async def _write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        async with self._write_lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._write_fd, view)
                except BlockingIOError:
                    await _writable(loop, self._write_fd)
                    continue
                except OSError as exc:  # EPIPE: the browser is gone
                    self._close(f"write failed: {exc}")
                    raise CdpClosed(self._closed or "closed") from exc
                view = view[written:]

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = b""
        try:
            while True:
                try:
                    chunk = os.read(self._read_fd, READ_CHUNK)
                except BlockingIOError:
                    await _readable(loop, self._read_fd)
                    continue
                if not chunk:
                    self._close("the browser closed the DevTools pipe")
                    return
                messages, buffer = split_frames(buffer + chunk)
                for message in messages:
                    self._dispatch(message)
        except (OSError, ValueError) as exc:
            self._close(f"DevTools pipe failed: {exc}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        ident = message.get("id")
        if isinstance(ident, int):
            pending = self._pending.get(ident)
            if pending is not None and not pending[1].done():
                pending[1].set_result(message)
            return
        method = message.get("method")
        if not isinstance(method, str):
            return
        params = message.get("params")
        session = message.get("sessionId")
        for handler in self._handlers.get(method, []):
            handler(params if isinstance(params, dict) else {},
                    session if isinstance(session, str) else None)

    def _close(self, why: str) -> None:
        if self._closed is None:
            self._closed = why
        for method, future in self._pending.values():
            if not future.done():
                future.set_exception(CdpClosed(f"{method}: {why}"))

    async def close(self) -> None:
        self._close("closed by the client")
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _settle, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _settle, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
