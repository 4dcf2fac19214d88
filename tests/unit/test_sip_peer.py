"""The SIP wrapper's own logic (harness.calls.sip_peer), without baresip: how
events fold into the call's progress, how a stuck or closed call is named,
what its result says (read back by PeerReport), and what is kept of the
recordings."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from harness.calls.sip_baresip import RtcpStats
from harness.calls.sip_peer import Progress, SipPeer, on_event, parse_args
from harness.measure.peer import PeerReport


def _peer(tmp_path: Path, role: str = "caller", strategy: str = "direct",
          record: bool = True) -> SipPeer:
    argv = ["--role", role, "--config-dir", str(tmp_path / role), "--strategy", strategy,
            "--recordings", str(tmp_path / "rec"), "--out", str(tmp_path / f"{role}.json")]
    if role == "caller":
        argv += ["--dial", "sip:callee@198.18.3.2"]
    if record:
        argv += ["--record", str(tmp_path / f"{role}-received.wav")]
    return SipPeer(parse_args(argv))


def test_the_caller_needs_something_to_dial(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--role", "caller", "--config-dir", "/x", "--strategy", "direct",
                    "--recordings", "/r", "--out", "/o.json"])
    with pytest.raises(SystemExit):
        parse_args(["--role", "callee", "--config-dir", "/x", "--strategy", "turn-tcp",
                    "--recordings", "/r", "--out", "/o.json"])


def test_events_fold_into_the_progress() -> None:
    progress = Progress(started=0.0)
    on_event(progress, {"type": "REGISTER_OK"}, 1.0)
    on_event(progress, {"type": "CALL_ESTABLISHED"}, 2.0)
    on_event(progress, {"type": "CALL_RTPESTAB"}, 2.5)
    on_event(progress, {"type": "CALL_RTCP", "rtcp_stats": {
        "tx": {"sent": 5, "lost": 0, "jit": 0}, "rx": {"sent": 9, "lost": 1, "jit": 2000},
        "rtt": 0}}, 7.0)
    on_event(progress, {"type": "CALL_CLOSED", "param": "Connection reset by peer"}, 9.0)
    assert (progress.registered, progress.established, progress.rtp) == (1.0, 2.0, 2.5)
    assert progress.rtcp is not None and progress.rtcp.loss_pct == 10.0
    assert progress.rtcp_reports == 1 and progress.rtcp_at == 7.0
    assert (progress.closed, progress.closed_reason) == (9.0, "Connection reset by peer")


def test_a_stun_answer_that_never_comes_fails_gathering_before_any_invite(
        tmp_path: Path) -> None:
    peer = _peer(tmp_path)
    peer.progress.facts.feed("ice: comp 1: STUN Request failed: Connection timed out", 2.0)
    failure = peer._closed_before_media("Connection timed out")
    assert (failure.error, failure.stage) == ("gathering-failed", "gathering")
    assert "STUN Binding Requests" in str(failure.detail)
    assert "sends no INVITE" in str(failure.detail)
    turn = _peer(tmp_path, strategy="turn-udp")._setup_timeout()
    assert (turn.error, turn.stage) == ("no-local-candidates", "gathering")


def test_after_gathering_a_closed_call_is_a_signalling_failure(tmp_path: Path) -> None:
    peer = _peer(tmp_path)
    peer.progress.facts.feed("call: media-nat 'ice' established/gathered", 1.0)
    assert peer._closed_before_media("Connection refused").error == "signalling-unreachable"
    assert peer._closed_before_media("403 Forbidden").error == "sip-rejected"
    peer.progress.established = 2.0
    assert peer._setup_timeout().stage == "ice"
    peer.progress.facts.feed("ice: connectivity check failed: Connection timed out", 3.0)
    assert peer._setup_timeout().error == "ice-failed"


def test_a_callee_that_never_registered_could_not_reach_the_proxy(tmp_path: Path) -> None:
    peer = _peer(tmp_path, "callee")
    failure = peer._setup_timeout()
    assert (failure.error, failure.stage) == ("signalling-unreachable", "signalling")
    peer.progress.facts.feed("callee@198.18.3.2: {0/TCP/v4} 200 OK (kamailio) [1 binding]", 1.0)
    failure = peer._setup_timeout()
    assert (failure.error, failure.detail) == ("setup-timeout", "registered, but no INVITE arrived")


def test_a_connected_result_reads_back_as_a_peer_report(tmp_path: Path) -> None:
    peer = _peer(tmp_path)
    progress, window = peer.progress, peer.window
    progress.attempt, progress.established, progress.media = 10.0, 10.5, 14.0
    progress.rtcp = RtcpStats(rx_received=495, rx_lost=5, rx_jitter_us=1500, tx_sent=500,
                              tx_lost=0, tx_jitter_us=1000, rtt_us=2400)
    progress.rtcp_reports = 2
    progress.facts.feed("call: media-nat 'ice' established/gathered", 10.2)
    progress.facts.feed("  *  {comp=1}  Succeeded { VN} eth0:host:100.64.1.2:4000 <---> "
                        "srflx:198.18.4.2:5000", 13.9)
    progress.facts.feed("packets:            500          501", 25.0)
    window.started, window.ended = 14.0, 20.0
    window.received_at_start, window.received_at_end = 2, 300
    report = PeerReport.from_dict(peer.result(), "caller")
    assert report.connected and report.setup_s == 4.0 and report.window_s == 6.0
    assert report.loss_pct == 1.0 and report.jitter_ms == 1.5 and report.rtt_ms == 2.4
    assert report.frames_received == 298 and report.frame_ms == 20
    assert (report.packets_sent, report.packets_received, report.packets_lost) == (500, 501, 5)
    assert report.selected_pair is not None and report.selected_pair["local_type"] == "host"
    assert report.error is None and report.extra["sip_established_s"] == 0.5


def test_a_failed_result_has_no_quality_figures(tmp_path: Path) -> None:
    peer = _peer(tmp_path)
    peer.progress.attempt = 1.0
    peer.progress.rtcp = RtcpStats(1, 0, 0, 1, 0, 0, 0)
    peer._fail(peer._setup_timeout())
    report = PeerReport.from_dict(peer.result(), "caller")
    assert not report.connected and report.loss_pct is None and report.setup_s is None
    assert report.error == "gathering-failed" and report.failure_stage == "gathering"
    assert report.failed_at_s is not None and report.failed_at_s >= 0


def _wav(path: Path, frames: bytes) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(48000)
        handle.writeframes(frames)


def test_the_recording_is_kept_and_the_sent_dumps_removed(tmp_path: Path) -> None:
    peer = _peer(tmp_path)
    recordings = tmp_path / "rec"
    recordings.mkdir()
    _wav(recordings / "dump-2026-01-01-00-00-01-dec.wav", b"\x01\x00" * 10)
    _wav(recordings / "dump-2026-01-01-00-00-02-dec.wav", b"\x02\x00" * 5)
    _wav(recordings / "dump-2026-01-01-00-00-01-enc.wav", b"\x00\x00" * 10)
    assert peer.save_recording() == "2 recording(s)"
    assert list(recordings.iterdir()) == []
    with wave.open(str(tmp_path / "caller-received.wav"), "rb") as handle:
        assert handle.readframes(handle.getnframes()) == b"\x01\x00" * 10 + b"\x02\x00" * 5
    unrecorded = _peer(tmp_path, "callee", record=False)
    _wav(recordings / "dump-2026-01-01-00-00-03-dec.wav", b"\x01\x00")
    assert unrecorded.save_recording() is None and list(recordings.iterdir()) == []
