"""Reading Chromium's getStats() and descriptions into the aiortc peer's
figures (harness.calls.browser.stats), and the driver's handling of the
page's events and its RTCPeerConnection configuration per strategy
(harness.calls.browser.driver). The report below is a real one: the
caller's last getStats() of a browser-aiortc call over turn-tls-443 in a
lab (Chromium 156), trimmed of fields nothing reads."""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from harness.calls.browser.driver import (
    BrowserCall,
    build_result,
    on_page_event,
    page_config,
    parse_options,
    stats_file,
    write_result,
)
from harness.calls.browser.recording import Recording
from harness.calls.browser.stats import (
    loss_pct,
    playout,
    rtp_figures,
    sdp_candidate_counts,
    selected_pair,
    timeline_row,
)
from harness.calls.events import EventLog
from harness.calls.peer.state import AudioSink, CallState
from harness.measure.peer import PeerReport

TLS_RELAY_REPORT: list[dict[str, Any]] = [
    {"id": "AP", "type": "media-playout", "kind": "audio", "synthesizedSamplesDuration": 0,
     "synthesizedSamplesEvents": 0, "totalSamplesDuration": 4.85},
    {"id": "CIT01_111_minptime=10;useinbandfec=1", "type": "codec", "channels": 2,
     "clockRate": 48000, "mimeType": "audio/opus", "payloadType": 111},
    {"id": "COT01_111", "type": "codec", "channels": 2, "clockRate": 48000,
     "mimeType": "audio/opus", "payloadType": 111},
    {"id": "CP9+7KfQlS_1uCpozDf", "type": "candidate-pair", "bytesReceived": 68968,
     "currentRoundTripTime": 0.008, "localCandidateId": "I9+7KfQlS", "nominated": True,
     "remoteCandidateId": "I1uCpozDf", "state": "succeeded", "transportId": "T01"},
    {"id": "I1uCpozDf", "type": "remote-candidate", "address": "198.18.1.2",
     "candidateType": "relay", "ip": "198.18.1.2", "port": 65310, "protocol": "udp"},
    {"id": "I9+7KfQlS", "type": "local-candidate", "address": "198.18.1.2",
     "candidateType": "relay", "ip": "198.18.1.2", "port": 64342, "protocol": "udp",
     "relayProtocol": "tls", "url": "turns:198.18.1.2:443?transport=tcp"},
    {"id": "IT01A324111091", "type": "inbound-rtp",
     "codecId": "CIT01_111_minptime=10;useinbandfec=1", "kind": "audio", "jitter": 0.001,
     "packetsLost": 0, "packetsReceived": 221, "concealedSamples": 0,
     "concealmentEvents": 0, "insertedSamplesForDeceleration": 0,
     "jitterBufferDelay": 20169.6, "jitterBufferEmittedCount": 208320,
     "removedSamplesForAcceleration": 1627, "silentConcealedSamples": 0,
     "totalSamplesReceived": 206400},
    {"id": "OT01A3564478147", "type": "outbound-rtp", "codecId": "COT01_111", "kind": "audio",
     "packetsSent": 224, "targetBitrate": 32000},
    {"id": "RIA3564478147", "type": "remote-inbound-rtp", "kind": "audio", "jitter": 0.003375,
     "packetsLost": 0, "roundTripTime": 0.009918, "roundTripTimeMeasurements": 2},
    {"id": "T01", "type": "transport", "bytesReceived": 68968, "dtlsState": "connected",
     "iceState": "connected", "selectedCandidatePairId": "CP9+7KfQlS_1uCpozDf"},
]

# Candidate lines as Chromium writes them (a direct call: host, then srflx).
OFFER_SDP = """v=0\r
m=audio 9 UDP/TLS/RTP/SAVPF 111\r
a=candidate:2542924194 1 udp 2122194687 100.64.1.2 48483 typ host generation 0\r
a=candidate:1147294042 1 udp 1686052607 198.18.0.2 48483 typ srflx raddr 100.64.1.2 \
rport 48483 generation 0\r
a=candidate:3806711934 1 tcp 1518214911 100.64.1.2 9 typ host tcptype active generation 0\r
a=end-of-candidates\r
"""


def test_a_real_report_gives_the_aiortc_peers_figures() -> None:
    figures = rtp_figures(TLS_RELAY_REPORT)
    assert figures.packets_sent == 224 and figures.packets_received == 221
    assert figures.packets_lost == 0
    assert figures.jitter_ms == 1.0  # seconds in the report, ms here
    assert figures.rtt_ms == pytest.approx(9.918)  # RTCP (remote-inbound-rtp), not ICE
    assert figures.ice_rtt_ms == 8.0
    assert figures.bytes_received == 68968
    assert figures.codec == "audio/opus" and figures.clock_rate == 48000


def test_the_selected_pair_names_the_relays_transport() -> None:
    pair = selected_pair(TLS_RELAY_REPORT)
    assert pair is not None
    assert (pair.local_type, pair.local_protocol, pair.local_relay_protocol) == \
        ("relay", "udp", "tls")
    assert pair.local_address == "198.18.1.2:64342"
    assert (pair.remote_type, pair.remote_address) == ("relay", "198.18.1.2:65310")


def test_without_a_selected_pair_id_the_nominated_succeeded_pair_is_taken() -> None:
    report = [dict(s) for s in TLS_RELAY_REPORT]
    for entry in report:
        if entry["type"] == "transport":
            del entry["selectedCandidatePairId"]
    pair = selected_pair(report)
    assert pair is not None and pair.local_relay_protocol == "tls"
    assert selected_pair([s for s in report if s["type"] != "candidate-pair"]) is None


def test_an_empty_or_odd_report_gives_nothing_not_a_guess() -> None:
    empty = rtp_figures([])
    assert empty.packets_received is None and empty.jitter_ms is None and empty.codec is None
    odd = rtp_figures([{"type": "inbound-rtp", "packetsReceived": True, "jitter": "x"}])
    assert odd.packets_received is None and odd.jitter_ms is None
    assert selected_pair([]) is None


def test_playout_counters_and_mean_jitter_buffer_delay() -> None:
    counters = playout(TLS_RELAY_REPORT)
    assert counters["removedSamplesForAcceleration"] == 1627
    assert counters["synthesizedSamplesEvents"] == 0
    assert counters["jitter_buffer_delay_ms"] == pytest.approx(96.8, abs=0.1)


def test_candidates_are_counted_by_type_and_loss_as_the_aiortc_peer_counts_it() -> None:
    assert sdp_candidate_counts(OFFER_SDP) == {"host": 2, "srflx": 1}
    assert sdp_candidate_counts(None) == {} and sdp_candidate_counts("v=0\r\n") == {}
    assert loss_pct(90, 10) == 10.0
    assert loss_pct(100, -2) == 0.0  # duplicates make packetsLost negative
    assert loss_pct(0, 0) is None and loss_pct(None, 3) is None
    row = timeline_row(12.3456, rtp_figures(TLS_RELAY_REPORT))
    assert row == {"monotonic": 12.346, "sent": 224, "received": 221, "lost": 0,
                   "jitter_ms": 1.0, "bytes_received": 68968}


# ------------------------------------------------------------------ the driver


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(b"\0\0" * 4800)
    return path


def _call(tmp_path: Path, strategy: str, *extra: str) -> BrowserCall:
    argv = ["--profile-dir", str(tmp_path / "profile"), "--chromium-log", str(tmp_path / "log"),
            "--chromium", "/bin/true", *extra,
            "--role", "caller", "--signal", "198.18.3.2:443", "--room", "r1",
            "--strategy", strategy, "--stun", "198.18.2.2:3478", "--turn", "198.18.1.2",
            "--turn-port", "3478", "--turns-port", "443", "--turn-user", "u",
            "--turn-pass", "p", "--audio", str(_wav(tmp_path / "ref.wav")),
            "--out", str(tmp_path / "caller.json"), "--record", str(tmp_path / "rx.wav")]
    opts, cfg = parse_options(argv)
    state = CallState(cfg=cfg, t_process=time.monotonic(), started_at=time.time(),
                      sink=AudioSink(None, 48000), events=EventLog(None))
    return BrowserCall(call=state, opts=opts, recording=Recording(tmp_path / "rx.wav"))


@pytest.mark.parametrize(("strategy", "urls", "policy"), [
    ("direct", ["stun:198.18.2.2:3478"], "all"),
    ("turn-udp", ["turn:198.18.1.2:3478?transport=udp"], "relay"),
    ("turn-tcp", ["turn:198.18.1.2:3478?transport=tcp"], "relay"),
    ("turn-tls-443", ["turns:198.18.1.2:443?transport=tcp"], "relay"),
])
def test_each_strategy_configures_the_page_as_the_aiortc_peer_is_configured(
        tmp_path: Path, strategy: str, urls: list[str], policy: str) -> None:
    config = page_config(_call(tmp_path, strategy, "--gather-cap", "2.5"))
    assert config["iceTransportPolicy"] == policy
    assert [server["urls"] for server in config["iceServers"]] == [urls]
    if policy == "relay":
        assert config["iceServers"][0]["username"] == "u"
        assert config["iceServers"][0]["credential"] == "p"
    assert config["gatherCapMs"] == 2500 and config["stallTimeoutMs"] == 3000
    assert config["record"] is True


def test_the_browsers_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _call(tmp_path, "direct", "--gather-cap", "0")
    with pytest.raises(SystemExit):  # the aiortc peer's own options are checked as there
        _call(tmp_path, "no-such-strategy")


def _emit(bc: BrowserCall, kind: str, **fields: Any) -> None:
    on_page_event(bc, json.dumps({"kind": kind, "at_ms": 1.0, **fields}))


def test_page_events_drive_the_calls_state(tmp_path: Path) -> None:
    bc = _call(tmp_path, "direct")
    bc.call.start_attempt()
    _emit(bc, "ice", state="checking")
    _emit(bc, "ice", state="connected")
    _emit(bc, "connection", state="connected")
    assert bc.call.t_ice is not None and bc.call.dtls_connected
    assert not bc.call.transport_failed.is_set()
    _emit(bc, "media")
    assert bc.media.is_set() and bc.t_first is not None
    _emit(bc, "candidate-error", url="turn:x", code=701, text="timeout", extra="dropped")
    assert bc.candidate_errors == [{"url": "turn:x", "code": 701, "text": "timeout",
                                    "address": None, "port": None}]
    on_page_event(bc, "not json")
    on_page_event(bc, "[1, 2]")
    assert len(bc.page_errors) == 2 and all("unreadable" in e for e in bc.page_errors)
    _emit(bc, "dtls", state="closed")
    assert bc.call.transport_failure == "peer-hung-up"


def test_ice_failure_before_and_after_the_transport_came_up(tmp_path: Path) -> None:
    early = _call(tmp_path, "turn-udp")
    _emit(early, "connection", state="failed")
    assert early.call.transport_failure == "ice-failed"
    late = _call(tmp_path, "turn-udp")
    _emit(late, "ice", state="connected")
    _emit(late, "connection", state="failed")
    assert late.call.transport_failure == "dtls-failed"
    broken = _call(tmp_path, "direct")
    _emit(broken, "error", where="getUserMedia", message="NotFoundError")
    assert (broken.call.transport_failure or "").startswith("internal-error: getUserMedia")


def test_a_failed_call_reports_what_the_harness_reads(tmp_path: Path) -> None:
    bc = _call(tmp_path, "turn-udp")
    bc.call.start_attempt()
    bc.gathering = {"complete": False, "waited_s": 5.0, "cap_s": 5.0}
    bc.call.fail("no-local-candidates", "gathering")
    result = build_result(bc)
    out = tmp_path / "caller.json"
    write_result(result, out)
    report = PeerReport.read(out, "caller")
    assert report is not None and not report.connected
    assert report.error == "no-local-candidates" and report.failure_stage == "gathering"
    assert report.failed_at_s is not None and report.frame_ms == 20.0
    assert report.extra["ice_gathering"] == {"complete": False, "waited_s": 5.0, "cap_s": 5.0}
    assert report.extra["client"] == "chromium"
    assert stats_file(out) == tmp_path / "caller.getstats.json"
