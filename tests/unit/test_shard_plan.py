"""`make scenarios SHARD=k/N`: the shard plan puts every cell in exactly one
shard, is the same whatever order the cells come in, balances the expected
time within the greedy bounds, and bad shard values are clear errors; the
scenario conftest deselects the other shards' cells and says so on a bad
value (pytest --collect-only, no lab needed)."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import paths
from harness.spec.matrix import Cell, load_matrix, matrix_cells
from scenarios.matrix_file import (
    SCENARIOS,
    ShardError,
    assign_shards,
    durations_from_runs,
    load_durations,
    modelled_duration_ms,
    parse_shard,
    plan_shards,
    shard_from_environment,
    shipped_policy,
)

ROOT = Path(__file__).resolve().parents[2]
TINY_MATRIX = ROOT / "tests" / "integration" / "matrices" / "shards-tiny.yaml"

durations_st = st.dictionaries(st.text("abcdefgh-", min_size=1, max_size=8),
                               st.integers(1, 120_000), min_size=1, max_size=40)


# ---------------------------------------------------------------- k/N

@pytest.mark.parametrize(("text", "index", "count"), [("1/1", 1, 1), ("2/4", 2, 4),
                                                      (" 4 / 4 ", 4, 4), ("10/12", 10, 12)])
def test_a_shard_is_k_of_n(text: str, index: int, count: int) -> None:
    shard = parse_shard(text)
    assert (shard.index, shard.count) == (index, count)
    assert shard.label == f"{index}/{count}"


@pytest.mark.parametrize(("text", "says"), [
    ("0/4", "k must be between 1 and N=4"), ("5/4", "k must be between 1 and N=4"),
    ("1/0", "N must be at least 1"), ("4", "expected k/N"), ("a/b", "expected k/N"),
    ("-1/2", "expected k/N"), ("1/2/3", "expected k/N"), ("1.5/2", "expected k/N"),
])
def test_a_bad_shard_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ShardError, match=f"shard '{text}': .*{says}"):
        parse_shard(text)


def test_the_environment_names_the_variable_in_its_error() -> None:
    assert shard_from_environment({}) is None
    assert shard_from_environment({"CALLWALL_SHARD": " "}) is None
    assert shard_from_environment({"CALLWALL_SHARD": "3/4"}) == parse_shard("3/4")
    with pytest.raises(ShardError, match=r"CALLWALL_SHARD='5/4': k must be between 1 and N=4"):
        shard_from_environment({"CALLWALL_SHARD": "5/4"})


# ---------------------------------------------------------------- the assignment

@settings(max_examples=200, deadline=None)
@given(durations_st, st.integers(1, 8), st.randoms(use_true_random=False))
def test_every_cell_lands_in_exactly_one_shard_whatever_the_order(
        durations: dict[str, int], count: int, shuffler: random.Random) -> None:
    if count > len(durations):
        with pytest.raises(ShardError, match="at most one shard per cell"):
            assign_shards(durations, count)
        return
    shards = assign_shards(durations, count)
    flat = [cell for shard in shards for cell in shard]
    assert sorted(flat) == sorted(durations) and len(flat) == len(set(flat))
    assert len(shards) == count and all(shards), "no shard may be empty"
    items = list(durations.items())
    shuffler.shuffle(items)
    assert assign_shards(dict(items), count) == shards


@settings(max_examples=200, deadline=None)
@given(durations_st, st.integers(1, 8))
def test_shards_are_balanced_within_the_greedy_bounds(durations: dict[str, int],
                                                      count: int) -> None:
    if count > len(durations):
        return
    loads = [sum(durations[c] for c in shard) for shard in assign_shards(durations, count)]
    longest = max(durations.values())
    # Each cell goes to the least loaded shard: no shard ends more than one cell
    # ahead of another, and the last finisher is within Graham's list bound.
    assert max(loads) - min(loads) <= longest
    assert max(loads) <= sum(loads) / count + (1 - 1 / count) * longest + 1e-9


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 50_000), min_size=2, max_size=8), st.integers(2, 3))
def test_longest_first_is_within_four_thirds_of_the_best(times: list[int],
                                                         count: int) -> None:
    """Graham's bound for LPT: makespan <= (4/3 - 1/(3m)) × optimum (brute-forced)."""
    if count > len(times):
        return
    durations = {f"c{i}": t for i, t in enumerate(times)}
    loads = [sum(durations[c] for c in shard) for shard in assign_shards(durations, count)]
    best = min(max(sum(t for t, s in zip(times, split, strict=True) if s == k)
                   for k in range(count))
               for split in itertools.product(range(count), repeat=len(times)))
    assert max(loads) <= (4 / 3 - 1 / (3 * count)) * best + 1e-9


def test_ties_go_by_cell_id_and_to_the_lowest_shard() -> None:
    durations = {"d": 10, "b": 10, "a": 10, "c": 10, "e": 30}
    assert assign_shards(durations, 2) == [["e", "d"], ["a", "b", "c"]]
    assert assign_shards(durations, 3) == [["e"], ["a", "c"], ["b", "d"]]


def test_impossible_plans_are_refused() -> None:
    with pytest.raises(ShardError, match="at least 1"):
        assign_shards({"a": 1}, 0)
    with pytest.raises(ShardError, match="3 shards of 2 cells"):
        assign_shards({"a": 1, "b": 2}, 3)
    with pytest.raises(ShardError, match="at least 1 ms: b"):
        assign_shards({"a": 1, "b": 0}, 1)


# ---------------------------------------------------------------- expected durations

def _quick_cells() -> list[Cell]:
    matrix, loc = load_matrix(SCENARIOS / "quick.yaml")
    return matrix_cells(matrix, loc, [p.stem for p in paths.all_policies()], shipped_policy)


def _outcome(cell: Cell) -> str:
    expectation = shipped_policy(cell.policy).expectation(cell.profile, cell.strategy)
    assert expectation is not None
    return expectation.outcome


def test_the_shipped_quick_matrix_splits_into_four_disjoint_shards() -> None:
    cells = _quick_cells()
    plan = plan_shards(cells, 4, load_durations(), _outcome)
    assert plan.cells == tuple(c.slug for c in cells)
    flat = [c for shard in plan.shards for c in shard]
    assert sorted(flat) == sorted(plan.cells) and len(flat) == len(set(flat))
    order = {c: i for i, c in enumerate(plan.cells)}
    for shard in plan.shards:
        assert list(shard) == sorted(shard, key=order.__getitem__), "matrix order kept"


def test_measured_durations_win_over_the_model() -> None:
    cells = [Cell("baseline", "webrtc", "direct"), Cell("baseline", "webrtc", "turn-udp"),
             Cell("baseline", "webrtc", "turn-tcp")]
    plan = plan_shards(cells, 2, {"baseline--webrtc--turn-tcp": 100.0},
                       lambda cell: "connects")
    assert plan.expected_ms["baseline--webrtc--turn-tcp"] == 100_000
    assert plan.measured == {"baseline--webrtc--turn-tcp"}
    assert plan.shards == (("baseline--webrtc--turn-tcp",),
                           ("baseline--webrtc--direct", "baseline--webrtc--turn-udp"))


def test_the_model_orders_cells_by_what_they_wait_for() -> None:
    plain = modelled_duration_ms(Cell("p", "webrtc", "direct"), "connects")
    blocked = modelled_duration_ms(Cell("p", "webrtc", "direct"), "fails")
    tunnelled = modelled_duration_ms(Cell("p", "webrtc", "wireguard"), "connects")
    assert blocked > plain, "a blocked call waits for its setup timeout"
    assert tunnelled > plain, "a tunnel comes up first"
    assert modelled_duration_ms(Cell("p", "webrtc", "direct"), "degraded") == plain


def test_durations_come_from_placed_calls_averaged_over_runs(tmp_path: Path) -> None:
    def call(cell: str, total: float | None, verdict: str = "pass") -> dict[str, object]:
        return {"call_id": cell, "verdict": verdict, "timing_s": {"total": total}}

    runs = [{"run_id": "cw1", "calls": [call("a", 10.0), call("b", 20.0),
                                        call("c", 3.0, verdict="skipped"), call("d", None)]},
            {"run_id": "cw2", "calls": [call("a", 14.0)]}]
    payload = durations_from_runs(runs)
    assert payload["durations_s"] == {"a": 12.0, "b": 20.0}
    assert [s["run_id"] for s in payload["sources"]] == ["cw1", "cw2"]
    file = tmp_path / "durations.json"
    file.write_text(json.dumps(payload))
    assert load_durations(file) == {"a": 12.0, "b": 20.0}
    assert load_durations(tmp_path / "absent.json") == {}


@pytest.mark.parametrize(("content", "says"), [
    ("{", "unreadable"), ("[]", "no durations_s object"),
    ('{"durations_s": {"a": -1}}', "durations_s.a: -1 is not a duration"),
    ('{"durations_s": {"a": "10"}}', "durations_s.a: '10' is not a duration"),
    ('{"durations_s": {"a": true}}', "durations_s.a: True is not a duration"),
])
def test_a_bad_durations_file_is_a_clear_error(tmp_path: Path, content: str, says: str) -> None:
    file = tmp_path / "durations.json"
    file.write_text(content)
    with pytest.raises(ShardError, match=f"{file}: .*{says}"):
        load_durations(file)


def test_the_committed_durations_file_is_valid_and_names_matrix_cells() -> None:
    durations = load_durations()
    assert durations, "scenarios/durations.json is committed"
    shipped = [p.stem for p in paths.all_policies()]
    known = {c.slug for name in ("matrix", "quick")
             for c in matrix_cells(*load_matrix(SCENARIOS / f"{name}.yaml"), shipped,
                                   shipped_policy)}
    assert set(durations) <= known, sorted(set(durations) - known)


# ---------------------------------------------------------------- the pytest hook

def _collect(tmp_path: Path, shard: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLWALL_MATRIX": str(TINY_MATRIX), "CALLWALL_SHARD": shard,
           "CALLWALL_RESULTS": str(tmp_path / "results")}
    return subprocess.run([sys.executable, "-m", "pytest", "scenarios", "--collect-only", "-q",
                           "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _collected(out: str) -> list[str]:
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines()
            if line.startswith("scenarios/test_matrix.py::test_call[")]


def test_the_conftest_runs_only_its_shard(tmp_path: Path) -> None:
    whole = _collected(_collect(tmp_path, "").stdout)
    halves = []
    for shard in ("1/2", "2/2"):
        proc = _collect(tmp_path, shard)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "deselected" in proc.stdout
        halves.append(_collected(proc.stdout))
    assert len(whole) == 5 and all(halves)
    assert sorted(halves[0] + halves[1]) == sorted(whole)


@pytest.mark.parametrize(("shard", "says"), [
    ("5/4", "CALLWALL_SHARD='5/4': k must be between 1 and N=4"),
    ("two", "CALLWALL_SHARD='two': expected k/N"),
    ("1/9", "9 shards of 5 cells: at most one shard per cell"),
])
def test_a_bad_shard_stops_the_run_before_any_lab(tmp_path: Path, shard: str, says: str) -> None:
    proc = _collect(tmp_path, shard)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert says in proc.stderr
    assert not (tmp_path / "results").exists(), "no results directory for a refused run"
