"""The SIP softphone (profile ``sip``: baresip via kamailio) in a real lab: it
connects under baseline with ICE/STUN (``direct``) and relay-only TURN
(``turn-udp``), with MOS >= 4 and a PESQ score of what the callee heard; under
dpi-stun-drop its STUN Binding Request is dropped, baresip sends no INVITE,
and the call fails with the deciding rule counted; no baresip, wrapper or
proxy outlives a call."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.calls.sip import PROXY_WHAT, missing_sip_tools
from harness.measure.record import CallRecord
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.spec.presets import impairments
from harness.testbed import Lab

pytestmark = pytest.mark.skipif(bool(missing_sip_tools()),
                                reason=f"profile sip needs {', '.join(missing_sip_tools())}")

SETTINGS = CallSettings(media_s=6.0, setup_timeout_s=15.0)


def _place(lab: Lab, policy: str, strategy: str, call_dir: Path) -> CallRecord:
    return judged_call(lab, load_policy(paths.policy_path(policy)), strategy, call_dir,
                       SETTINGS, profile="sip")


def _baresips_in(lab: Lab) -> list[int]:
    """PIDs of baresip processes in the caller's or the callee's namespace."""
    spaces = {os.stat(lab.host_with_role(role).netns_path).st_ino for role in ("caller", "callee")}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "baresip" \
                    and os.stat(entry / "ns" / "net").st_ino in spaces:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _assert_nothing_left(lab: Lab) -> None:
    for what in ("caller peer", "callee peer", PROXY_WHAT):
        assert lab.registry.running(what) == [], f"{what} still running after the call"
    assert _baresips_in(lab) == [], "a baresip outlived its call"


def _peer(call_dir: Path, role: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((call_dir / f"{role}.json").read_text())
    return loaded


@pytest.mark.parametrize(("strategy", "local_types"), [
    ("direct", {"host", "srflx", "prflx"}),
    ("turn-udp", {"relay"}),
])
def test_sip_connects_under_baseline(lab: Lab, run_files: Path, strategy: str,
                                     local_types: set[str]) -> None:
    call_dir = run_files / "calls" / f"sip-{strategy}"
    record = _place(lab, "baseline", strategy, call_dir)
    _assert_nothing_left(lab)
    assert record.outcome == "connects", record.judgement
    assert record.verdict == "pass", record.judgement
    assert record.mos is not None and record.mos >= 4.0, record.directions
    assert record.pesq is not None and record.pesq["status"] == "ok", record.pesq
    assert record.pesq["mos_lqo"] is not None
    pair = record.selected_pair
    assert pair is not None and pair["local_type"] in local_types, pair
    if strategy == "turn-udp":
        assert pair["remote_type"] == "relay", pair
        relay_ip = lab.services.relay_ip if lab.services else None
        assert str(pair["local_address"]).startswith(f"{relay_ip}:"), pair
    # No RTT is asserted here: baresip counts DLSR in whole milliseconds and
    # clamps A - LSR - DLSR at 0, so on this sub-millisecond path it reports 0
    # (None in the record). test_sip_rtt_follows_the_links_delay measures it
    # where the path has a known delay.
    for role in ("caller", "callee"):
        peer = _peer(call_dir, role)
        assert peer["rtcp_reports"], peer
        assert isinstance(peer["frames_received"], int) and peer["frames_received"] >= 270
        assert (call_dir / f"{role}-received.wav").stat().st_size > 100_000
    assert not list(call_dir.glob("sip/*-recordings/*.wav")), "recorder dumps left behind"
    assert "INVITE" in (call_dir / "sip-proxy.log").read_text()


def test_sip_fails_before_its_invite_under_dpi_stun_drop(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "calls" / "sip-stun-drop"
    record = _place(lab, "dpi-stun-drop", "direct", call_dir)
    _assert_nothing_left(lab)
    assert record.outcome == "fails", record.judgement
    assert record.verdict == "pass", record.judgement
    counted = {c["rule"]: c["packets"] for c in record.judgement["deciding_rules"]}
    assert counted.get("stun-at-flow-start", 0) > 0, record.judgement
    caller = _peer(call_dir, "caller")
    assert caller["error"] == "gathering-failed" and caller["failure_stage"] == "gathering", caller
    assert "STUN" in str(caller["detail"]), caller
    # baresip held the call before any SIP left: the proxy saw the callee's
    # REGISTER and no INVITE.
    proxy_log = (call_dir / "sip-proxy.log").read_text()
    assert "REGISTER" in proxy_log and "INVITE" not in proxy_log



def test_sip_rtt_follows_the_links_delay(run_files: Path) -> None:
    """On ru-to-abroad-lte the media path crosses the LTE leg and the ocean
    leg one way each: baresip's RTCP round trip must be their sum, twice.
    The call lasts long enough for a sender report to come back answered
    (libre reports every 5 s, so the first round trip is known near 10 s)."""
    one_way_ms = (impairments()["ru-mobile-lte"].delay_ms
                  + impairments()["intercontinental"].delay_ms)
    call_dir = run_files / "calls" / "sip-lte"
    with Lab.create(paths.topology_path("ru-to-abroad-lte")) as lte:
        lte.up()
        record = judged_call(lte, load_policy(paths.policy_path("baseline")), "direct",
                             call_dir, CallSettings(media_s=14.0, setup_timeout_s=20.0),
                             profile="sip")
        _assert_nothing_left(lte)
    assert record.connected, record.judgement
    rtts = {role: _peer(call_dir, role)["rtt_ms"] for role in ("caller", "callee")}
    assert all(isinstance(v, (int, float)) for v in rtts.values()), rtts
    # Jitter (6 ms and 2 ms one way, normal) and in-order delivery spread one
    # sample by tens of milliseconds, never by a whole leg.
    for role, rtt_ms in rtts.items():
        assert 2 * one_way_ms - 30 <= float(str(rtt_ms)) <= 2 * one_way_ms + 60, (role, rtts)
