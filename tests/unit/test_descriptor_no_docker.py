"""A descriptor profile whose image this machine cannot run is a skip naming
what is missing, never an error: no engine, a dockerd that does not start,
or an image that is not there and cannot be built (no base image, no
cached tarball, no debootstrap). The engine here is faked in-process: a
Unix socket that answers the Docker API's ping and image lookups, or no
socket at all, and a PATH whose dockerd exits at once."""

from __future__ import annotations

import http.server
import os
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.calls import missing_profile_tools
from harness.calls.descriptor import prepare_descriptor
from harness.containers.images import BASE_IMAGE, base_tarball, missing_base
from harness.spec.descriptor import descriptor

_CLIENT = descriptor("baresip").client
assert _CLIENT is not None and _CLIENT.image is not None
BARESIP_IMAGE: str = _CLIENT.image
NO_ENGINE = "a Docker engine (Debian package docker.io)"


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    images: set[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Engine

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        if self.path == "/_ping":
            status, body = 200, b"OK"
        elif self.path.startswith("/images/") and self.path.endswith("/json"):
            name = self.path[len("/images/"):-len("/json")]
            status, body = (200, b"{}") if name in self.server.images else (404, b"{}")
        else:
            status, body = 404, b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bare_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No engine at $DOCKER_HOST, no dockerd or debootstrap on PATH, an empty cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    monkeypatch.setenv("CALLWALL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CALLWALL_DOCKERD_DIR", str(tmp_path / "dockerd"))
    prepare_descriptor.cache_clear()
    return bin_dir


@pytest.fixture
def fake_engine(bare_machine: Path, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[_Engine]:
    """An engine that answers at $DOCKER_HOST and holds the images in `.images`."""
    sock = tmp_path / "engine.sock"
    server = _Engine(str(sock), _Handler)
    server.images = set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_no_engine_and_no_dockerd_skips_the_image_profile(bare_machine: Path) -> None:
    assert NO_ENGINE in missing_profile_tools("baresip")
    # profiles without an image need no engine
    assert NO_ENGINE not in missing_profile_tools("webrtc")


def test_an_engine_without_the_base_and_no_debootstrap_names_debootstrap(
        fake_engine: _Engine) -> None:
    missing = missing_profile_tools("baresip")
    assert NO_ENGINE not in missing
    assert any(m.startswith("debootstrap (Debian package debootstrap)") for m in missing), missing


def test_a_cached_tarball_or_the_base_image_or_the_image_is_enough(
        fake_engine: _Engine, bare_machine: Path) -> None:
    fake_engine.images = {BASE_IMAGE}
    assert missing_profile_tools("baresip") == []
    fake_engine.images = {BARESIP_IMAGE}
    assert missing_profile_tools("baresip") == []
    fake_engine.images = set()
    tarball = base_tarball()
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(b"not empty")
    assert missing_base(os.environ["DOCKER_HOST"]) == []
    (bare_machine / "debootstrap").write_text("#!/bin/sh\nexit 1\n")
    (bare_machine / "debootstrap").chmod(0o755)
    tarball.unlink()
    assert missing_profile_tools("baresip") == []


def test_a_dockerd_that_does_not_start_makes_prepare_name_the_engine(
        bare_machine: Path) -> None:
    dockerd = bare_machine / "dockerd"
    dockerd.write_text("#!/bin/sh\necho 'cannot start here' >&2\nexit 1\n")
    dockerd.chmod(0o755)
    reason = prepare_descriptor("baresip")
    assert reason is not None and reason.startswith("no usable Docker engine"), reason
    # a profile without an image has nothing to prepare
    assert prepare_descriptor("webrtc") is None
