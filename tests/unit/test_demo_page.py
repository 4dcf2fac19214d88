"""The demo's page, its live server and its files: offline and self-contained,
live over Server-Sent Events on 127.0.0.1 only."""

from __future__ import annotations

import json
import re
import socket
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from harness.demo.outputs import write_outputs
from harness.demo.page import render_page
from harness.demo.server import HOST, LiveServer
from harness.demo.sources import Source
from harness.demo.view import (
    CallFigures,
    CallView,
    Check,
    CounterSnapshot,
    DemoEvent,
    DemoView,
    LiveView,
    PhaseView,
    SourceRef,
)
from harness.measure.speech import write_wav

NETWORK_URL = re.compile(r"(?:https?|wss?|ftp)://|src=[\"']//|href=[\"']//", re.IGNORECASE)
SOURCES = {"S2": Source("S2", "Reuters: calls", "https://example.org/s2", "Aug 2025"),
           "S7": Source("S7", "calls work through a VPN", "https://example.org/s7", "2025")}


def _rows(start: int, end: int, loss: float) -> list[dict[str, object]]:
    return [{"t": float(t), "received": 16, "lost": 1, "sent": 17, "jitter_ms": 1.2,
             "bitrate_kbps": 30.0, "mos": 4.3, "loss_pct": loss} for t in range(start, end)]


def _view(title: str = "A demo </script><script>alert(1)</script>") -> DemoView:
    phases = [
        PhaseView(index=0, id="baseline", title="Before", explain="Nothing yet (S2).",
                  sources=[SourceRef("S2", "Reuters: calls", "Aug 2025")], policy="baseline",
                  loads_policy=True, attempt=None, hang_up=False, planned_s=10, start_t=0.0,
                  end_t=10.0, status="done", change_s=0.05,
                  figures={"call": CallFigures(seconds=10, media=True, loss_pct=0.0, mos=4.38,
                                               pesq=3.9, audio="phase-1-baseline-call.wav")},
                  checks=[Check("call", "MOS >= 4", "MOS 4.38", True)]),
        PhaseView(index=1, id="vpn", title="Through a VPN", explain="It works (S7).",
                  sources=[SourceRef("S7", "calls work through a VPN", "2025")],
                  policy="dpi-stun-drop", loads_policy=True, attempt="wireguard", hang_up=True,
                  planned_s=10, start_t=10.0, end_t=20.0, status="done",
                  figures={"attempt": CallFigures(seconds=6, media=True, mos=4.36,
                                                  audio="phase-2-vpn-attempt.wav")},
                  checks=[Check("attempt", "MOS >= 4", "MOS 4.36", True)]),
    ]
    return DemoView(name="demo", title=title, description="A test demo.", profile="webrtc",
                    strategy="direct", topology="ru-to-abroad", speed=2.0, status="done",
                    message="every phase showed what the script declares", phases=phases,
                    calls={"call": CallView("call", "the call", "direct", _rows(1, 10, 5.9),
                                            _rows(1, 10, 5.9), media_t=0.0),
                           "attempt-2": CallView("attempt-2", "new call, phase 2", "wireguard",
                                                 _rows(13, 20, 0.0), _rows(13, 20, 0.0))},
                    counters=[CounterSnapshot(1.0, "baseline", {}, {}),
                              CounterSnapshot(12.0, "dpi-stun-drop", {"stun-at-flow-start": 4},
                                              {"stun-at-flow-start": 480})],
                    events=[DemoEvent(0.0, "the call connected", "ok")])


def _audio(directory: Path, names: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_wav(directory / name, np.zeros(4800, dtype=np.float32), 48000)


def test_the_offline_page_is_self_contained(tmp_path: Path) -> None:
    view = _view()
    _audio(tmp_path / "audio", ["phase-1-baseline-call.wav", "phase-2-vpn-attempt.wav"])
    files = write_outputs(view, tmp_path, SOURCES)
    page = files["html"].read_text()
    assert not NETWORK_URL.search(page), NETWORK_URL.search(page)
    assert page.count("data:audio/wav;base64,") == 2
    assert page.count("data:image/png;base64,") == 1
    assert page.count("</script>") == 3  # the data, the audio map, the code: nothing escaped
    assert "const LIVE = false" in page
    data = re.search(r'<script id="demo-data" type="application/json">(.*?)</script>', page,
                     re.S)
    assert data is not None
    assert json.loads(data.group(1))["title"] == view.title
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(files["json"].read_text())["phases"][1]["figures"]["attempt"]["mos"] == 4.36


def test_the_handout_tells_each_phase_and_its_sources(tmp_path: Path) -> None:
    files = write_outputs(_view("A demo"), tmp_path, SOURCES)
    handout = files["handout"].read_text()
    assert handout.startswith("# A demo")
    assert "## 1. Before" in handout and "## 2. Through a VPN" in handout
    assert "policy `dpi-stun-drop`" in handout and "a new call was placed (wireguard)" in handout
    assert "MOS 4.38" in handout and "PESQ-WB 3.90" in handout
    assert "- S2 — Reuters: calls (Aug 2025). <https://example.org/s2>" in handout
    assert "**Result:** every phase showed what the script declares." in handout


def test_the_live_page_starts_with_the_current_state() -> None:
    page = render_page(json.dumps(_view("Live").to_dict()), live=True,
                       audio={"a.wav": "audio/a.wav"}, title="Live")
    assert "const LIVE = true" in page and 'new EventSource("events")' in page
    assert not NETWORK_URL.search(page)


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_the_server_serves_the_page_state_events_and_audio(tmp_path: Path) -> None:
    live = LiveView(_view("Served"))
    _audio(tmp_path, ["phase-1-baseline-call.wav"])
    (tmp_path.parent / "secret.wav").write_bytes(b"RIFF")
    with LiveServer(live, tmp_path) as server:
        assert server.url.startswith(f"http://{HOST}:")
        status, kind, body = _get(server.url)
        assert status == 200 and kind.startswith("text/html") and b"Served" in body
        assert b"audio/phase-1-baseline-call.wav" in body
        status, _, body = _get(server.url + "state")
        assert json.loads(body)["title"] == "Served"
        status, kind, body = _get(server.url + "audio/phase-1-baseline-call.wav")
        assert status == 200 and kind == "audio/wav" and body[:4] == b"RIFF"
        assert _get(server.url + "audio/..%2Fsecret.wav")[0] == 404
        assert _get(server.url + "audio/../secret.wav")[0] == 404
        assert _get(server.url + "nothing")[0] == 404
        with urllib.request.urlopen(server.url + "events", timeout=5) as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            first = stream.readline()
            assert json.loads(first.removeprefix(b"data: "))["title"] == "Served"
            stream.readline()
            live.view.message = "next"
            live.publish()
            second = stream.readline()
            assert json.loads(second.removeprefix(b"data: "))["message"] == "next"


def test_a_viewer_that_hangs_up_mid_response_is_no_error(tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str]
                                                         ) -> None:
    live = LiveView(_view("Served"))
    (tmp_path / "phase-1-baseline-call.wav").write_bytes(b"RIFF" + bytes(32 << 20))
    with LiveServer(live, tmp_path) as server:
        host, port = server.url.removeprefix("http://").rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as viewer:
            viewer.sendall(b"GET /audio/phase-1-baseline-call.wav HTTP/1.1\r\n"
                           b"Host: x\r\n\r\n")
            assert viewer.recv(64).startswith(b"HTTP/1.1 200")
            # Close with a reset while the server is still writing 32 MB.
            viewer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert _get(server.url + "state")[0] == 200  # and it still serves
    assert "Traceback" not in capfd.readouterr().err


def test_waiting_readers_wake_on_close() -> None:
    live = LiveView(_view("x"))
    version, _ = live.snapshot()
    live.close()
    assert live.wait_newer(version, 5.0) is None


@pytest.mark.parametrize("speed", [0.5, 11.0])
def test_speed_is_bounded(speed: float) -> None:
    from harness.demo import DemoOptions

    with pytest.raises(ValueError, match="--speed"):
        DemoOptions(speed=speed)
