"""The aiortc peer's result: the frame duration it sends and how its RTT was
measured (the judge takes both into the E-model)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from aiortc.codecs import g711, opus
from aiortc.mediastreams import AUDIO_PTIME

from harness.calls.peer.result import AUDIO_FRAME_MS, PeerResult
from harness.calls.peer.state import StatsSample
from harness.calls.peer.stats import apply_stats


def test_the_peer_reports_aiortc_s_twenty_ms_frames() -> None:
    # aiortc packetises audio at AUDIO_PTIME; its Opus (960 samples at 48 kHz) and
    # G.711 (160 at 8 kHz) encoders both frame at it: 20 ms.
    assert AUDIO_FRAME_MS == 20.0 == 1000.0 * AUDIO_PTIME
    assert 1000 * opus.SAMPLES_PER_FRAME // opus.SAMPLE_RATE == 20
    assert 1000 * g711.SAMPLES_PER_FRAME // g711.SAMPLE_RATE == 20
    written = json.loads(PeerResult(role="caller", strategy="direct", room="r").to_json())
    assert written["frame_ms"] == 20.0
    assert written["relay_rtt_ms"] is None and written["rtt_method"] is None


def test_the_peer_s_rtt_is_rtcp_end_to_end() -> None:
    state = SimpleNamespace(stats=StatsSample(rtt_s=0.0425, packets_received=10,
                                              packets_lost=0, jitter_units=48),
                            sink=SimpleNamespace(t_first=None), t_window_end=None)
    result = PeerResult(role="callee", strategy="turn-udp", room="r")
    apply_stats(result, state, 48000)  # type: ignore[arg-type]
    assert result.rtt_ms == 42.5 and result.rtt_method == "rtcp-sr-rr"
    assert result.relay_rtt_ms is None
    unknown = PeerResult(role="callee", strategy="turn-udp", room="r")
    apply_stats(unknown, SimpleNamespace(stats=StatsSample(), sink=state.sink,  # type: ignore[arg-type]
                                         t_window_end=None), 48000)
    assert unknown.rtt_ms is None and unknown.rtt_method is None
