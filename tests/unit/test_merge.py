"""`callwall report --merge`: shards of one matrix become one run (results.json,
junit.xml, report.html, the calls' files); shards that do not belong together
are refused, naming the runs and the cells, and nothing is written."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.report.compare import compare_runs
from harness.report.merge import MergeError, merge_runs
from tests.unit.test_report import build_run, make_record

CELLS = ["baseline--webrtc--direct", "baseline--webrtc--turn-udp",
         "udp-throttle--webrtc--direct", "udp-throttle--webrtc--turn-udp"]
SPLIT = {1: CELLS[:2], 2: CELLS[2:]}


def record(cell: str) -> dict[str, Any]:
    policy, profile, strategy = cell.split("--")
    if policy == "udp-throttle":
        return make_record(policy, strategy, outcome="degraded", mos=1.2, profile=profile,
                           call_id=cell, expected={"outcome": "degraded", "basis": "mechanism",
                                                   "decided_by": ["police-udp"]})
    return make_record(policy, strategy, profile=profile, call_id=cell)


def junit(cells: list[str], failures: int = 0) -> str:
    cases = "".join(f'<testcase classname="scenarios.test_matrix" name="test_call[{c}]" '
                    f'time="9.5"/>' for c in cells)
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
            f'errors="0" failures="{failures}" skipped="0" tests="{len(cells)}" '
            f'time="{9.5 * len(cells):.1f}" hostname="vm">{cases}</testsuite></testsuites>')


def shard_run(root: Path, index: int | None, cells: list[str] | None = None,
              count: int = 2, commit: str = "a3dbb97", matrix: str = "tiny",
              matrix_cells: list[str] | None = None, name: str | None = None,
              recorded: list[str] | None = None) -> Path:
    """A shard's run directory as `make scenarios SHARD=index/count` leaves it
    (index None: a run of the whole matrix)."""
    cells = (SPLIT[index] if index is not None else CELLS) if cells is None else cells
    recorded = cells if recorded is None else recorded
    run = build_run(root, [record(c) for c in recorded],
                    environment={"commit": commit, "kernel": "6.1.0-test"},
                    name=name or f"shard{index}")
    payload = json.loads((run / "results.json").read_text())
    payload.update(matrix=matrix, matrix_cells=matrix_cells or CELLS, host=f"host{index}")
    if index is not None:
        payload["shard"] = {"index": index, "count": count, "label": f"{index}/{count}",
                            "cells": cells, "expected_s": 30.0}
    (run / "results.json").write_text(json.dumps(payload))
    (run / "junit.xml").write_text(junit(recorded))
    for cell in recorded:
        (run / "calls" / cell).mkdir(parents=True, exist_ok=True)
        (run / "calls" / cell / "caller.json").write_text(json.dumps({"cell": cell}))
    return run


def refusal(runs: list[Path], out: Path, **kwargs: Any) -> str:
    with pytest.raises(MergeError) as caught:
        merge_runs(runs, out, **kwargs)
    assert not out.exists(), "a refused merge writes nothing"
    return str(caught.value)


# ---------------------------------------------------------------- merging

def test_two_shards_merge_into_the_run_of_the_whole_matrix(tmp_path: Path) -> None:
    runs = [shard_run(tmp_path, 2), shard_run(tmp_path, 1)]  # any order
    merged = merge_runs(runs, tmp_path / "merged")
    assert (merged.calls, merged.cells, merged.missing) == (4, 4, ())
    payload = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert sorted(c["call_id"] for c in payload["calls"]) == sorted(CELLS)
    assert payload["matrix_cells"] == CELLS and payload["kind"] == "scenarios"
    assert [m["shard"] for m in payload["merged_from"]] == ["1/2", "2/2"]
    assert payload["host"] == "host1, host2" and "partial" not in payload
    assert payload["environment"]["commit"] == "a3dbb97"
    # Every call's own files came along, and the report links them.
    for cell in CELLS:
        assert json.loads((tmp_path / "merged" / "calls" / cell / "caller.json")
                          .read_text()) == {"cell": cell}
    report = (tmp_path / "merged" / "report.html").read_text()
    assert all(f"calls/{cell}/caller.json" in report for cell in CELLS)
    suites = ET.parse(tmp_path / "merged" / "junit.xml").getroot()
    assert suites.get("tests") == "4" and suites.get("failures") == "0"
    assert [s.get("name") for s in suites] == ["pytest (shard 1/2)", "pytest (shard 2/2)"]
    assert len(suites.findall("testsuite/testcase")) == 4
    # The merged run is a run like any other: it compares with the whole matrix's.
    whole = shard_run(tmp_path, None, name="whole")
    assert not compare_runs(whole, tmp_path / "merged").has_regression
    assert len(compare_runs(whole, tmp_path / "merged").pairs) == 4


def test_the_command_merges_and_prints_where(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    runs = [str(shard_run(tmp_path, 1)), str(shard_run(tmp_path, 2))]
    assert main(["report", "--merge", *runs, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "merged 4 calls of matrix tiny (4 cells)" in out
    assert "shard 1/2" in out and "shard 2/2" in out


def test_missing_cells_are_refused_unless_partial_is_allowed(tmp_path: Path) -> None:
    only_first = [shard_run(tmp_path, 1)]
    text = refusal(only_first, tmp_path / "out")
    assert "2 of 4 matrix cells missing" in text
    assert "in no shard given (shards not given: 2/2): udp-throttle--webrtc--direct, " \
           "udp-throttle--webrtc--turn-udp" in text
    merged = merge_runs(only_first, tmp_path / "partial", allow_partial=True)
    assert merged.missing == tuple(CELLS[2:])
    payload = json.loads((tmp_path / "partial" / "results.json").read_text())
    assert payload["partial"] == {"missing": CELLS[2:]}


def test_a_shard_that_lost_a_call_is_named(tmp_path: Path) -> None:
    runs = [shard_run(tmp_path, 1), shard_run(tmp_path, 2, recorded=CELLS[2:3])]
    text = refusal(runs, tmp_path / "out")
    assert f"given to {runs[1]} (shard 2/2), which recorded no result for them: " \
           "udp-throttle--webrtc--turn-udp" in text


# ---------------------------------------------------------------- refusals

def test_shards_of_different_commits_are_refused(tmp_path: Path) -> None:
    runs = [shard_run(tmp_path, 1), shard_run(tmp_path, 2, commit="79eb1d2")]
    text = refusal(runs, tmp_path / "out")
    assert "different commits" in text and "a3dbb97" in text and "79eb1d2" in text


def test_shards_of_different_matrices_are_refused(tmp_path: Path) -> None:
    other = [*CELLS, "dpi-stun-drop--webrtc--turn-udp"]
    runs = [shard_run(tmp_path, 1), shard_run(tmp_path, 2, matrix_cells=other)]
    text = refusal(runs, tmp_path / "out")
    assert "different matrices" in text and "(4 cells" in text and "(5 cells" in text
    renamed = [shard_run(tmp_path, 1, name="a"),
               shard_run(tmp_path, 2, name="b", matrix="quick")]
    assert "matrix quick" in refusal(renamed, tmp_path / "out")


def test_overlapping_shards_are_refused_naming_the_cells(tmp_path: Path) -> None:
    runs = [shard_run(tmp_path, 1), shard_run(tmp_path, 2, cells=CELLS[1:])]
    text = refusal(runs, tmp_path / "out")
    assert "1 cells in more than one run" in text
    assert "baseline--webrtc--turn-udp" in text and "different" not in text
    plans = [shard_run(tmp_path, 1, name="three", count=3, cells=CELLS[:1]),
             shard_run(tmp_path, 2, name="two", cells=CELLS[1:])]
    text = refusal(plans, tmp_path / "out")
    assert "different shard counts" in text and "3 shards" in text


def test_the_same_run_twice_and_a_whole_run_with_a_shard_are_refused(tmp_path: Path) -> None:
    first = shard_run(tmp_path, 1)
    assert "the same run given twice" in refusal([first, first], tmp_path / "out")
    whole = shard_run(tmp_path, None, name="whole")
    text = refusal([whole, first], tmp_path / "out")
    assert "different shard counts" in text and "whole" in text


def test_calls_outside_the_matrix_and_other_runs_are_refused(tmp_path: Path) -> None:
    stray = shard_run(tmp_path, 2, cells=[*CELLS[2:], "relay-block--webrtc--direct"])
    text = refusal([shard_run(tmp_path, 1), stray], tmp_path / "out")
    assert "calls outside the matrix: relay-block--webrtc--direct" in text
    plain = build_run(tmp_path, [record(CELLS[0])], name="plain")
    assert "lists no matrix cells" in refusal([plain], tmp_path / "out")


def test_unreadable_inputs_are_refused_all_at_once(tmp_path: Path) -> None:
    broken = shard_run(tmp_path, 1)
    (broken / "junit.xml").write_text("<testsuites><testsuite")
    no_junit = shard_run(tmp_path, 2)
    (no_junit / "junit.xml").unlink()
    text = refusal([broken, no_junit, tmp_path / "nowhere"], tmp_path / "out")
    assert "junit.xml: unreadable" in text and f"{no_junit}: no junit.xml" in text
    assert "nowhere: no such run directory" in text


def test_the_merge_does_not_write_over_a_run(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    runs = [str(shard_run(tmp_path, 1)), str(shard_run(tmp_path, 2))]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "results.json").write_text("{}")
    assert main(["report", "--merge", *runs, "--out", str(taken)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert (taken / "results.json").read_text() == "{}"
    assert main(["report", "--merge", runs[0], "--compare", runs[0], runs[1]]) == 2
    assert main(["report", runs[0], "--out", str(tmp_path / "x")]) == 2
