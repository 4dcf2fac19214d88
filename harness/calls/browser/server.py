"""The call page, served to the browser from the driver itself: a tiny HTTP
server on the lab host's loopback address (``127.0.0.1``, a secure context
by the W3C Secure Contexts rules, so getUserMedia and AudioWorklet work
without ``--unsafely-treat-insecure-origin-as-secure``). It serves the files
of ``page/`` and nothing else; the page's requests never leave the host, so
the censor sees none of them."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

PAGE_DIR = Path(__file__).resolve().parent / "page"
ENTRY = "call.html"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
REQUEST_TIMEOUT_S = 5.0


def page_files(directory: Path = PAGE_DIR) -> dict[str, bytes]:
    """URL path -> body, for every file the page consists of."""
    return {f"/{path.name}": path.read_bytes() for path in sorted(directory.iterdir())
            if path.suffix in CONTENT_TYPES}


def response(files: dict[str, bytes], request_line: bytes) -> bytes:
    """The whole HTTP/1.0 response to one request line."""
    parts = request_line.decode("latin-1").split()
    if len(parts) != 3 or parts[0] != "GET":
        return _reply(405, "text/plain", b"GET only\n")
    path = parts[1].split("?", 1)[0]
    body = files.get(path)
    if body is None:
        return _reply(404, "text/plain", b"not found\n")
    return _reply(200, CONTENT_TYPES[Path(path).suffix], body)


def _reply(status: int, content_type: str, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
    head = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


@dataclass
class PageServer:
    server: asyncio.Server
    url: str

    async def close(self) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2.0)


async def serve_page(host: str, directory: Path = PAGE_DIR) -> PageServer:
    """Serve the page on `host` at a free port; the URL of its entry page."""
    files = page_files(directory)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            while (await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)).strip():
                pass  # headers: not needed
            writer.write(response(files, request_line))
            await writer.drain()
        except (OSError, TimeoutError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    return PageServer(server, f"http://{host}:{port}/{ENTRY}")
