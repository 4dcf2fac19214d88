"""What a call sounds like, measured: PESQ, per-second timelines, pcaps,
censor counters; and run-to-run comparison catching a regression."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.measure.record import CallRecord
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testbed import Lab

CALLWALL = [sys.executable, "-m", "harness.cli"]
SPEECH = CallSettings(media_s=8.0, setup_timeout_s=12.0)
RUN_DIR: list[Path] = []


@pytest.fixture(scope="module")
def measured(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CallRecord]:
    calls = tmp_path_factory.mktemp("quality")
    RUN_DIR.append(calls.parent)  # records name their files relative to <run>/ = calls/..
    return {name: judged_call(lab, load_policy(paths.policy_path(name)), "turn-udp",
                              calls / name, SPEECH)
            for name in ("baseline", "udp-throttle")}


def test_pesq_is_high_on_a_clean_call_and_falls_under_the_policer(
        measured: dict[str, CallRecord]) -> None:
    clean, policed = measured["baseline"].pesq, measured["udp-throttle"].pesq
    assert clean is not None and policed is not None
    assert clean["status"] == "ok" and clean["mos_lqo"] >= 3.5
    assert policed["mos_lqo"] < clean["mos_lqo"] - 1.5


def test_timeline_has_a_row_per_second_that_adds_up(measured: dict[str, CallRecord]) -> None:
    for record in measured.values():
        rows = record.timeline
        assert len(rows) >= SPEECH.media_s - 2
        steps = [b["t"] - a["t"] for a, b in zip(rows, rows[1:], strict=False)]
        assert all(step == pytest.approx(1.0, abs=0.3) for step in steps)
        assert record.packets_received is not None
        received = sum(r["received"] for r in rows + record.timeline_reverse)
        assert received <= record.packets_received
        assert [e["kind"] for e in record.events].count("connected") == 2
    policed = measured["udp-throttle"].timeline
    assert sum(r["lost"] for r in policed) > sum(r["received"] for r in policed)
    assert max(r["mos"] for r in policed if r["mos"] is not None) < 3.0


def test_the_deciding_rule_is_counted(measured: dict[str, CallRecord]) -> None:
    (counter,) = measured["udp-throttle"].censor_counters
    assert counter["rule"] == "police-udp" and counter["packets"] > 100
    assert measured["baseline"].censor_counters == []


def test_pcap_is_a_readable_capture_of_the_call(measured: dict[str, CallRecord]) -> None:
    pcap = measured["baseline"].files["pcap"]
    assert pcap is not None
    read = subprocess.run(["tcpdump", "-nn", "-r", str(RUN_DIR[0] / pcap), "udp"],
                          capture_output=True,
                          text=True, check=True)
    assert len(read.stdout.splitlines()) > 200
    assert "198.18.1.2" in read.stdout  # the relay


def _run(policy: str, results: Path) -> subprocess.CompletedProcess[str]:
    env = {"CALLWALL_RESULTS": str(results), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run([*CALLWALL, "run", "-p", policy, "-s", "turn-udp", "--seconds", "3"],
                          capture_output=True, text=True, timeout=120, env=env)


def test_compare_passes_a_rerun_and_flags_a_stricter_policy(tmp_path: Path) -> None:
    stricter = tmp_path / "stricter.yaml"
    text = (paths.POLICIES / "turn-relay-block.yaml").read_text()
    # Same policy name as the baseline, so the comparison pairs the calls.
    stricter.write_text(text.replace("name: turn-relay-block", "name: baseline", 1))
    runs: list[Path] = []
    for policy in ("baseline", "baseline", str(stricter)):
        results = tmp_path / f"results{len(runs)}"
        _run(policy, results)
        runs.append(next(p for p in results.iterdir() if p.name != "latest"))
        assert (runs[-1] / "report.html").is_file()
    same = subprocess.run([*CALLWALL, "report", "--compare", str(runs[0]), str(runs[1])],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout
    worse = subprocess.run([*CALLWALL, "report", "--compare", str(runs[0]), str(runs[2])],
                           capture_output=True, text=True)
    assert worse.returncode == 1
    assert "turn-udp" in worse.stdout and "fails" in worse.stdout
    assert json.loads((runs[2] / "results.json").read_text())["calls"][0]["outcome"] == "fails"
