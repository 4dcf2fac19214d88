"""TCP bulk transfer from a server to a client that reports how many bytes
arrived before the stream stalled (the reported `tcp_freeze` symptom: a TLS
connection from Russia to a foreign host freezes after 15-20 KB)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

CHUNK = 65536  # large writes: the kernel cuts MSS-sized segments, as in a bulk download


@dataclass(frozen=True)
class FetchResult:
    bytes_received: int
    stalled: bool  # no byte for `stall_s` before the end, and the sender had not closed
    closed_by_server: bool
    last_byte_at: float | None
    seconds: float


def serve_bulk(listen: tuple[str, int], total_bytes: int, seconds: float,
               await_hello: bool = False) -> int:
    """Accept one client and send it `total_bytes` (or for `seconds`); returns
    how many bytes the kernel accepted from us. With `await_hello`, speak only
    after the client's first bytes, as a TLS server waits for the ClientHello
    (otherwise the bulk could pass a censor before it has judged the hello)."""
    with socket.create_server(listen, reuse_port=False) as server:
        server.settimeout(seconds)
        conn, _ = server.accept()
    with conn:
        if await_hello and not _first_bytes(conn, seconds):
            return 0
        conn.settimeout(0.5)
        deadline = time.monotonic() + seconds
        sent = 0
        block = b"\xaa" * CHUNK
        while sent < total_bytes and time.monotonic() < deadline:
            try:
                sent += conn.send(block[:min(CHUNK, total_bytes - sent)])
            except TimeoutError:
                continue
            except OSError:
                break
        _close_gently(conn)
        return sent


def _first_bytes(conn: socket.socket, seconds: float) -> bool:
    conn.settimeout(seconds)
    try:
        return bool(conn.recv(65536))
    except OSError:
        return False


def _close_gently(conn: socket.socket) -> None:
    """Half-close, then read what the client sent: closing with unread data
    would send a RST, and the client would lose what it had not read yet."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while conn.recv(65536):
            pass
    except OSError:
        pass


def fetch(target: tuple[str, int], seconds: float, stall_s: float,
          hello: bytes = b"") -> FetchResult:
    """Connect, send `hello` (e.g. a TLS ClientHello), then read until the
    server closes, `seconds` pass, or nothing arrives for `stall_s`."""
    start = time.monotonic()
    received = 0
    last = None
    closed = False
    with socket.create_connection(target, timeout=seconds) as conn:
        if hello:
            conn.sendall(hello)
        conn.settimeout(0.1)
        while (now := time.monotonic()) - start < seconds:
            if now - (last if last is not None else start) > stall_s:
                break
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not data:
                closed = True
                break
            received += len(data)
            last = time.monotonic()
    idle_since = last if last is not None else start
    stalled = not closed and time.monotonic() - idle_since >= stall_s
    return FetchResult(received, stalled, closed,
                       None if last is None else round(last - start, 4),
                       round(time.monotonic() - start, 4))
