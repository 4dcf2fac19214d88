"""Chromium as a call endpoint in a real lab: Chromium calls the aiortc peer
(profile browser-aiortc) and Chromium (profile browser) under baseline; under
dpi-stun-drop its TURN over UDP fails on the STUN rule while its TURN over TLS
on 443 connects; and a browser side that is killed takes its Chromium with it.
Every call here runs one or two real Chromium processes, one call at a time."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.calls.browser import missing_chromium
from harness.faults import Fault
from harness.measure.record import CallRecord
from harness.measure.verdict import PESQ_FLOOR
from harness.netns.registry import Registry
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testbed import Lab

pytestmark = pytest.mark.skipif(bool(missing_chromium()),
                                reason=f"needs {', '.join(missing_chromium())}")

# Chromium's start and its page are part of each side's setup time.
SETTINGS = CallSettings(media_s=6.0, setup_timeout_s=20.0)


def _call(lab: Lab, policy: str, profile: str, strategy: str, call_dir: Path,
          fault: Fault | None = None) -> CallRecord:
    return judged_call(lab, load_policy(paths.policy_path(policy)), strategy, call_dir,
                       SETTINGS, fault=fault, profile=profile)


def _watched_call(lab: Lab, policy: str, profile: str, strategy: str,
                  call_dir: Path) -> tuple[CallRecord, set[str]]:
    """The call, and what the lab's registry (on disk, where the drivers
    record their Chromium) listed as running while it ran."""
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                state = Registry.load(lab.registry.dir).state
            except (OSError, ValueError):
                continue
            seen.update(p.what for p in state.processes if p.alive())
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        record = _call(lab, policy, profile, strategy, call_dir)
    finally:
        done.set()
        watcher.join(5)
    return record, seen


def _side(call_dir: Path, role: str) -> dict[str, Any]:
    side: dict[str, Any] = json.loads((call_dir / f"{role}.json").read_text())
    return side


def _chromium_left(call_dir: Path) -> list[int]:
    """Processes still running with this call's Chromium profile directory:
    each browser side has its own, under the call's directory."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"--user-data-dir={call_dir}".encode() in cmdline:
            left.append(int(entry.name))
    return left


def _assert_browser_side(call_dir: Path, role: str) -> dict[str, Any]:
    side = _side(call_dir, role)
    assert side["client"] == "chromium"
    browser = side["browser"]
    assert browser["version"].startswith("Chrome/")
    assert browser["rss_peak_mb"] > 50 and browser["pss_peak_mb"] > 50, browser
    assert browser["cpu_s"] > 0 and browser["processes_peak"] >= 3, browser
    assert (call_dir / f"{role}.getstats.json").exists()
    assert not (call_dir / f"{role}-chromium-profile").exists()  # removed after the call
    return side


def _assert_nothing_left(lab: Lab, call_dir: Path) -> None:
    assert _chromium_left(call_dir) == []
    recorded = Registry.load(lab.registry.dir).state.processes
    assert [p for p in recorded if p.what.endswith(" browser") and p.alive()] == []


def _counted(record: CallRecord, rule: str) -> int:
    return sum(c["packets"] for c in record.judgement["deciding_rules"] if c["rule"] == rule)


def test_chromium_calls_the_aiortc_peer_under_baseline(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "browser-aiortc-baseline"
    record, running = _watched_call(lab, "baseline", "browser-aiortc", "direct", call_dir)
    assert "caller browser" in running and "callee browser" not in running, running
    _assert_nothing_left(lab, call_dir)
    assert record.connected, (record.error, record.failure_kind, record.judgement)
    assert record.mos is not None and record.mos >= 4.0, record.directions
    assert record.pesq is not None and record.pesq["status"] == "ok", record.pesq
    assert record.verdict == "pass", record.judgement
    caller = _assert_browser_side(call_dir, "caller")
    assert _side(call_dir, "callee").get("client") is None  # the aiortc peer
    assert caller["selected_pair"]["local_type"] in ("host", "srflx", "prflx")
    assert caller["ice_gathering"]["complete"] is True
    assert caller["codec"] == "audio/opus" and caller["rtt_ms"] is not None
    assert len(caller["timeline"]) >= 5
    assert (call_dir / "caller-received.wav").stat().st_size > 100_000


def test_chromium_calls_chromium_under_baseline(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "browser-baseline"
    record, running = _watched_call(lab, "baseline", "browser", "direct", call_dir)
    assert {"caller browser", "callee browser"} <= running, running
    _assert_nothing_left(lab, call_dir)
    assert record.connected, (record.error, record.failure_kind, record.judgement)
    assert record.mos is not None and record.mos >= 4.0, record.directions
    assert record.pesq is not None and record.pesq["status"] == "ok", record.pesq
    assert isinstance(record.pesq["mos_lqo"], float)
    # The baseline expectation (connects, MOS >= 4): a PESQ under its floor
    # passes only with the callee's time-scaling named in the reasons.
    assert record.verdict == "pass", record.judgement
    if record.pesq["mos_lqo"] < PESQ_FLOOR:
        assert any("time-scaled" in r for r in record.judgement["reasons"]), record.judgement
    for role in ("caller", "callee"):
        side = _assert_browser_side(call_dir, role)
        assert side["recorded_s"] is not None and side["recorded_s"] > 5.0
    assert (call_dir / "callee-received.wav").stat().st_size > 100_000


def test_dpi_stun_drop_stops_the_browsers_turn_over_udp(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "browser-stun-drop-udp"
    record = _call(lab, "dpi-stun-drop", "browser", "turn-udp", call_dir)
    _assert_nothing_left(lab, call_dir)
    assert record.outcome == "fails" and record.verdict == "pass", record.judgement
    assert _counted(record, "stun-at-flow-start") > 0, record.judgement
    assert any("stun-at-flow-start" in r for r in record.judgement["reasons"])
    caller = _side(call_dir, "caller")
    assert caller["error"] == "no-local-candidates" and caller["failure_stage"] == "gathering"
    # Chromium was still retrying the Allocate when the page's cap sent the offer.
    assert caller["ice_gathering"]["complete"] is False
    assert caller["ice_gathering"]["waited_s"] >= caller["ice_gathering"]["cap_s"]


def test_dpi_stun_drop_leaves_the_browsers_turn_over_tls(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "browser-stun-drop-tls"
    record = _call(lab, "dpi-stun-drop", "browser", "turn-tls-443", call_dir)
    _assert_nothing_left(lab, call_dir)
    assert record.connected, (record.error, record.failure_kind, record.judgement)
    assert record.mos is not None and record.mos >= 4.0, record.directions
    assert record.pesq is not None and record.pesq["status"] == "ok", record.pesq
    pair = record.selected_pair
    assert pair is not None and pair["local_type"] == "relay"
    assert pair["local_relay_protocol"] == "tls"
    assert _side(call_dir, "callee")["selected_pair"]["local_relay_protocol"] == "tls"


def test_a_killed_browser_side_takes_its_chromium_with_it(lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "browser-killed-callee"
    record = _call(lab, "baseline", "browser", "turn-udp", call_dir,
                   Fault("kill-callee", at_s=2.0))
    assert record.failure_kind == "peer-killed", record.judgement
    assert not (call_dir / "callee.json").exists()
    # SIGKILL gave the driver no chance to stop its Chromium: the death signal
    # it set on it did (and the lab's registry holds no live browser either).
    assert _chromium_left(call_dir) == [], "Chromium outlived its killed driver"
    _assert_nothing_left(lab, call_dir)
    _assert_browser_side(call_dir, "caller")
