"""Sharding changes where a call runs, not how it is judged: a small matrix
(tests/integration/matrices/shards-tiny.yaml, five calls) run whole and run as
two shards, each shard its own pytest process with its own lab, then merged
with `callwall report --merge`, judges every call alike: the same outcome,
failure kind and deciding rules (the rules, not their packet counts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATRIX = Path(__file__).resolve().parent / "matrices" / "shards-tiny.yaml"
CELLS = 5
RUN_TIMEOUT_S = 900.0


def scenario_run(results: Path, shard: str = "") -> tuple[dict[str, Any], Path, float]:
    """`make scenarios` as it runs it (python -m pytest scenarios), in its own
    process: the run's results.json, its directory and its wall time."""
    env = {**os.environ, "CALLWALL_MATRIX": str(MATRIX), "CALLWALL_SHARD": shard,
           "CALLWALL_RESULTS": str(results)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "scenarios", "-q", "-p",
                           "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    wall_s = time.monotonic() - started
    # 0: every call as expected; 1: some call not as expected, which this test
    # does not judge (the records say it, and must agree between the runs).
    assert proc.returncode in (0, 1), f"shard {shard or 'whole'}:\n{proc.stdout}\n{proc.stderr}"
    run_dir = (results / "latest").resolve()
    payload: dict[str, Any] = json.loads((run_dir / "results.json").read_text())
    print(f"shards-tiny {shard or 'whole'}: {len(payload['calls'])} calls in {wall_s:.1f} s "
          f"(load {os.getloadavg()[0]:.2f})")
    return payload, run_dir, wall_s


def judged(calls: list[dict[str, Any]]) -> dict[str, tuple[str, str | None, tuple[str, ...]]]:
    """Per cell: outcome, failure kind, the rules that decided it."""
    result = {}
    for call in calls:
        rules = tuple(sorted(str(r.get("rule")) for r in
                             (call.get("judgement") or {}).get("deciding_rules") or []))
        result[call["call_id"]] = (call["outcome"], call.get("failure_kind"), rules)
    return result


@pytest.mark.root
def test_shards_run_apart_and_merged_judge_like_the_whole_run(tmp_path: Path) -> None:
    whole, _, _ = scenario_run(tmp_path / "whole")
    assert whole["matrix_cells"] and "shard" not in whole
    assert len(whole["calls"]) == CELLS == len(whole["matrix_cells"])
    errors = [c["call_id"] for c in whole["calls"] if c["outcome"] == "error"]
    assert not errors, f"calls that could not be judged (nothing to compare): {errors}"

    shards = []
    for index in (1, 2):
        payload, run_dir, _ = scenario_run(tmp_path / f"shard{index}", f"{index}/2")
        assert payload["shard"]["label"] == f"{index}/2"
        assert payload["matrix_cells"] == whole["matrix_cells"]
        assert sorted(c["call_id"] for c in payload["calls"]) == sorted(payload["shard"]["cells"])
        shards.append((payload, run_dir))
    first, second = (set(p["shard"]["cells"]) for p, _ in shards)
    assert first and second and not first & second
    assert first | second == set(whole["matrix_cells"])
    assert shards[0][0]["run_id"] != shards[1][0]["run_id"], "each shard its own lab"

    merged_dir = tmp_path / "merged"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "report", "--merge",
                           *(str(d) for _, d in shards), "--out", str(merged_dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    merged = json.loads((merged_dir / "results.json").read_text())
    assert merged["matrix_cells"] == whole["matrix_cells"] and "partial" not in merged
    assert judged(merged["calls"]) == judged(whole["calls"])
    assert [c["verdict"] for c in merged["calls"]].count("pass") == \
        [c["verdict"] for c in whole["calls"]].count("pass")
    testcases = ET.parse(merged_dir / "junit.xml").getroot().findall("testsuite/testcase")
    assert len(testcases) == CELLS
    assert (merged_dir / "report.html").is_file()
    for cell in whole["matrix_cells"]:
        assert (merged_dir / "calls" / cell).is_dir(), f"{cell}: its files came along"
