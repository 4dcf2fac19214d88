"""The call profiles in a real lab: each connects under baseline with MOS ≥ 4,
telegram-like falls back to its TCP relay when its UDP paths are blocked (by a
test policy, and by the shipped rkn-2025-calls), signal-like ends on TURN over
TLS when UDP STUN is dropped, having gathered every candidate at once,
whatsapp-like fails (with its reason) when its relay's UDP is blocked, both
adapt their bitrate under loss, and no client process outlives its call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.measure.record import CallRecord
from harness.session import judged_call
from harness.spec.names import PROFILES
from harness.spec.policy import load_policy
from harness.testbed import Lab

SHORT = CallSettings(media_s=4.0, setup_timeout_s=15.0)
TEST_POLICIES = Path(__file__).parent / "policies"
BASELINE_PATH = {"webrtc": None, "signal-like": "udp", "whatsapp-like": "udp-relay",
                 "telegram-like": "p2p", "max-like": "udp-relay"}


def _assert_no_client_left(lab: Lab, profile: str) -> None:
    for role in ("caller", "callee"):
        aiortc = profile in ("webrtc", "signal-like")
        what = f"{role} peer" if aiortc else f"{role} {profile} client"
        assert lab.registry.running(what) == [], f"{what} still running after the call"


def _stored(call_dir: Path) -> dict[str, object]:
    stored: dict[str, object] = json.loads((call_dir / "record.json").read_text())
    return stored


# The browser and SIP endpoints have their own suites (test_browser.py,
# test_sip.py), which run Chromium and baresip under baseline.
OWN_SUITE = ("browser", "browser-aiortc", "sip")


@pytest.mark.parametrize("profile", [p for p in PROFILES if p not in OWN_SUITE])
def test_every_profile_connects_under_baseline(lab: Lab, run_files: Path, profile: str) -> None:
    call_dir = run_files / "calls" / profile
    record = judged_call(lab, load_policy(paths.policy_path("baseline")), "direct", call_dir,
                         SHORT, profile=profile)
    _assert_no_client_left(lab, profile)
    assert record.connected, (record.error, record.failure_kind)
    assert record.mos is not None and record.mos >= 4.0, record.directions
    assert record.profile == profile and record.path == BASELINE_PATH[profile]
    assert _stored(call_dir)["profile"] == profile
    assert (call_dir / "callee-received.wav").stat().st_size > 50_000


def test_telegram_ends_on_its_tcp_relay_when_udp_is_blocked(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "calls" / "telegram-blocked"
    policy = load_policy(TEST_POLICIES / "telegram-udp-block.yaml")
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="telegram-like")
    _assert_no_client_left(lab, "telegram-like")
    assert record.connected, (record.error, record.failure_kind)
    assert record.path == "tcp-relay"
    caller_changes = [c for c in record.path_changes if c["role"] == "caller"]
    assert caller_changes[-1]["path"] == "tcp-relay"
    assert "UDP_NOT_AVAILABLE" in caller_changes[-1]["reason"]
    assert caller_changes[-1]["at_s"] is not None and caller_changes[-1]["at_s"] > 1.5
    assert _stored(call_dir)["path"] == "tcp-relay"
    assert record.mos is not None and record.mos >= 4.0
    assert _counted(record, "drop-udp-to-telegram-relays") > 0


def test_telegram_ends_on_its_tcp_relay_under_rkn_2025_calls(lab: Lab, run_files: Path) -> None:
    """Issue 5's acceptance: the shipped 2025 policy drops STUN to Telegram's
    servers (so the profile learns no public address, and gets no P2P) and
    the reflector hellos, leaving the TCP relay."""
    call_dir = run_files / "calls" / "telegram-rkn-2025"
    policy = load_policy(paths.policy_path("rkn-2025-calls"))
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="telegram-like")
    _assert_no_client_left(lab, "telegram-like")
    assert record.connected, (record.error, record.failure_kind)
    assert record.path == "tcp-relay" and _stored(call_dir)["path"] == "tcp-relay"
    caller = json.loads((call_dir / "caller.json").read_text())
    assert caller["p2p_attempt"]["public"] is None, caller["p2p_attempt"]
    assert _counted(record, "stun-to-telegram-relays: enforce") > 0
    assert _counted(record, "telegram-hello: enforce") > 0


def test_signal_ends_on_turn_over_tls_when_udp_stun_is_dropped(lab: Lab,
                                                                run_files: Path) -> None:
    call_dir = run_files / "calls" / "signal-stun-drop"
    policy = load_policy(paths.policy_path("dpi-stun-drop"))
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="signal-like")
    _assert_no_client_left(lab, "signal-like")
    assert record.connected, (record.error, record.failure_kind)
    assert record.path == "turn-tls-443"
    assert record.selected_pair is not None
    assert record.selected_pair["local_relay_protocol"] == "tls"
    # One attempt that gathered host and relay candidates at once (RingRTC),
    # not a UDP attempt followed by a second one over TLS.
    assert not (call_dir / "udp-attempt").exists()
    caller = json.loads((call_dir / "caller.json").read_text())
    assert caller["strategy"] == "gather-all"
    assert caller["local_candidates"].get("host", 0) >= 1
    assert caller["local_candidates"].get("relay", 0) >= 1
    assert record.mos is not None and record.mos >= 4.0


def test_whatsapp_fails_without_a_tcp_fallback(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "calls" / "whatsapp-blocked"
    policy = load_policy(TEST_POLICIES / "whatsapp-udp-block.yaml")
    record = judged_call(lab, policy, "direct", call_dir, SHORT, profile="whatsapp-like")
    _assert_no_client_left(lab, "whatsapp-like")
    assert not record.connected
    assert record.failure_kind == "relay-unreachable"
    assert record.path is None
    caller = json.loads((call_dir / "caller.json").read_text())
    assert caller["failure_stage"] == "allocate"
    assert "no TCP fallback" in caller["detail"]
    assert record.failure_detail == caller["detail"]
    assert _counted(record, "drop-udp-to-whatsapp-relays") > 0


def _counted(record: CallRecord, rule: str) -> int:
    return sum(int(c["packets"]) for c in record.censor_counters if c["rule"] == rule)


def test_telegram_turns_extra_ec_on_above_2_pct_average_loss(lab: Lab,
                                                              run_files: Path) -> None:
    call_dir = run_files / "calls" / "telegram-lossy"
    policy = load_policy(TEST_POLICIES / "udp-loss-25.yaml")
    settings = CallSettings(media_s=6.0, setup_timeout_s=15.0, stall_timeout_s=5.0)
    record = judged_call(lab, policy, "direct", call_dir, settings, profile="telegram-like")
    _assert_no_client_left(lab, "telegram-like")
    assert record.connected, (record.error, record.failure_kind)
    for role in ("caller", "callee"):
        peer = json.loads((call_dir / f"{role}.json").read_text())
        assert peer["loss_pct"] is not None and 12.5 < peer["loss_pct"] < 40
        changes = peer["bitrate_changes"]
        assert changes and changes[0]["bitrate"] == 8000 and changes[0]["fec"] is True, changes
        assert changes[0]["reason"] == "extra EC on" and changes[0]["avg_loss_pct"] > 2.0


def test_whatsapp_steps_its_bitrate_down_under_loss(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "calls" / "whatsapp-lossy"
    policy = load_policy(TEST_POLICIES / "udp-loss-25.yaml")
    settings = CallSettings(media_s=6.0, setup_timeout_s=15.0, stall_timeout_s=5.0)
    record = judged_call(lab, policy, "direct", call_dir, settings, profile="whatsapp-like")
    _assert_no_client_left(lab, "whatsapp-like")
    assert record.connected, (record.error, record.failure_kind)
    for role in ("caller", "callee"):
        peer = json.loads((call_dir / f"{role}.json").read_text())
        changes = peer["bitrate_changes"]
        assert changes, peer
        down = [c for c in changes if c["reason"] == "loss over 10 %"]
        assert down and all(c["loss_pct"] > 10.0 for c in down)
        assert all(6000 <= c["bitrate"] < 24000 for c in down)
        rates = [row["bitrate"] for row in peer["timeline"] if "bitrate" in row]
        assert rates and min(rates) < 24000
