"""The live page's server: the standard library's threading HTTP server,
bound to 127.0.0.1 only.

  /          the page, with the current state embedded (so a page loaded at
             any moment, or a headless browser's screenshot, shows it at once)
  /events    Server-Sent Events: the whole state as JSON at every change
  /state     the current state as JSON
  /audio/F   a finished phase's received audio (a WAV of demo/audio/)
"""

from __future__ import annotations

import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from harness.demo.page import render_page
from harness.demo.view import LiveView

HOST = "127.0.0.1"
KEEPALIVE_S = 10.0
AUDIO_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,80}\.wav")


class LiveServer:
    """Serves one demo's live page until closed."""

    def __init__(self, live: LiveView, audio_dir: Path, port: int = 0) -> None:
        self.live = live
        self.audio_dir = audio_dir
        handler = type("DemoHandler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer((HOST, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="demo-page")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._httpd.server_address[1]}/"

    def audio_urls(self) -> dict[str, str]:
        return {path.name: f"audio/{path.name}" for path in sorted(self.audio_dir.glob("*.wav"))}

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.live.close()
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_state: LiveServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        return  # the terminal belongs to the demo's phase lines

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._page()
        elif path == "/events":
            self._events()
        elif path == "/state":
            self._send(HTTPStatus.OK, "application/json",
                       self.server_state.live.snapshot()[1].encode())
        elif path.startswith("/audio/"):
            self._audio(path.removeprefix("/audio/"))
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def _page(self) -> None:
        state = self.server_state
        _, text = state.live.snapshot()
        body = render_page(text, live=True, audio=state.audio_urls(),
                           title=state.live.view.title).encode()
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", body)

    def _audio(self, name: str) -> None:
        path = self.server_state.audio_dir / name
        if not AUDIO_NAME.fullmatch(name) or not path.is_file():
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"no such audio\n")
            return
        self._send(HTTPStatus.OK, "audio/wav", path.read_bytes())

    def _events(self) -> None:
        live = self.server_state.live
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        version, text = live.snapshot()
        try:
            self._event(text)
            while not live.closed:
                newer = live.wait_newer(version, KEEPALIVE_S)
                if newer is None:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                version, text = newer
                self._event(text)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _event(self, text: str) -> None:
        self.wfile.write(b"data: " + text.encode() + b"\n\n")
        self.wfile.flush()

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        """A whole response; a viewer that hung up first is no error of the demo's."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
