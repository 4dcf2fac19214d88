"""Which matrix this scenario run uses: scenarios/matrix.yaml, or the name
(scenarios/<name>.yaml) or path given in CALLWALL_MATRIX (`make scenarios
MATRIX=quick`); and which part of it, when CALLWALL_SHARD names a shard
(`make scenarios SHARD=2/4`).

Shards split the matrix's cells by their expected duration, so that N
machines finish at about the same time. A cell's expected duration is the
one scenarios/durations.json stores (measured in an earlier run), else the
duration model of `modelled_duration_ms`. Then the cells, longest first (ties
by cell id), each go to the shard with the least expected time so far (ties
to the lowest shard): the longest-processing-time-first rule. Durations are
whole milliseconds, so that every machine computes the same sums and so the
same plan from the same commit.

  python -m scenarios.matrix_file plan N            the plan for N shards
  python -m scenarios.matrix_file durations RUN...  durations.json from runs
                                                    (a cell in several: the mean)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness import paths
from harness.calls.base import CallSettings
from harness.paths import resolve_spec
from harness.spec.matrix import Cell, load_matrix, matrix_cells
from harness.spec.names import TUNNEL_STRATEGIES
from harness.spec.policy import Policy, load_policy

SCENARIOS = Path(__file__).resolve().parent
MATRIX_PATH = resolve_spec(os.environ.get("CALLWALL_MATRIX") or "matrix", SCENARIOS)
MATRIX, MATRIX_LOC = load_matrix(MATRIX_PATH)

SHARD_ENV = "CALLWALL_SHARD"
DURATIONS_PATH = SCENARIOS / "durations.json"
DURATIONS_FORMAT = 1


@cache
def shipped_policy(name: str) -> Policy:
    return load_policy(paths.policy_path(name))


def cells() -> list[Cell]:
    """Every cell of this run's matrix, in the order the matrix lists them."""
    shipped = [p.stem for p in paths.all_policies()]
    return matrix_cells(MATRIX, MATRIX_LOC, shipped, shipped_policy)


# ---------------------------------------------------------------- shards

class ShardError(ValueError):
    """A shard that cannot be: a malformed k/N, k out of range, more shards than cells."""


@dataclass(frozen=True)
class Shard:
    """Part `index` (from 1) of `count` parts of a matrix."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


SHARD_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> Shard:
    """"k/N" with 1 <= k <= N, e.g. "2/4"."""
    match = SHARD_PATTERN.fullmatch(text)
    if match is None:
        raise ShardError(f"shard {text!r}: expected k/N, e.g. 2/4 (part k of N, from 1)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ShardError(f"shard {text!r}: N must be at least 1")
    if not 1 <= index <= count:
        raise ShardError(f"shard {text!r}: k must be between 1 and N={count}")
    return Shard(index, count)


def shard_from_environment(environ: Mapping[str, str] = os.environ) -> Shard | None:
    """The shard CALLWALL_SHARD names (`make scenarios SHARD=k/N`), None when unset or empty."""
    raw = environ.get(SHARD_ENV, "").strip()
    if not raw:
        return None
    try:
        return parse_shard(raw)
    except ShardError as exc:
        raise ShardError(f"{SHARD_ENV}={raw!r}: {str(exc).split(': ', 1)[1]}") from None


def assign_shards(durations_ms: Mapping[str, int], count: int) -> list[list[str]]:
    """Cell ids split into `count` shards: longest first (ties by id), each to
    the shard with the least expected time so far (ties to the lowest index).
    Every id lands in exactly one shard; with at least `count` ids, none is empty."""
    if count < 1:
        raise ShardError(f"{count} shards: at least 1")
    if count > len(durations_ms):
        raise ShardError(f"{count} shards of {len(durations_ms)} cells: at most one shard "
                         "per cell")
    bad = sorted(cell for cell, ms in durations_ms.items() if ms < 1)
    if bad:
        raise ShardError(f"expected durations must be at least 1 ms: {', '.join(bad)}")
    shards: list[list[str]] = [[] for _ in range(count)]
    loads_ms = [0] * count
    for cell in sorted(durations_ms, key=lambda c: (-durations_ms[c], c)):
        lightest = min(range(count), key=lambda i: (loads_ms[i], i))
        shards[lightest].append(cell)
        loads_ms[lightest] += durations_ms[cell]
    return shards


@dataclass(frozen=True)
class ShardPlan:
    """Which cells each shard runs, and what each is expected to take."""

    cells: tuple[str, ...]  # the whole matrix's cell ids, in matrix order
    shards: tuple[tuple[str, ...], ...]  # per shard, its cell ids in matrix order
    expected_ms: Mapping[str, int]  # per cell
    measured: frozenset[str]  # cells whose expectation was measured (else modelled)

    def cells_of(self, shard: Shard) -> tuple[str, ...]:
        return self.shards[shard.index - 1]

    def expected_s(self, shard: Shard) -> float:
        return sum(self.expected_ms[c] for c in self.cells_of(shard)) / 1000


def plan_shards(all_cells: Sequence[Cell], count: int, durations_s: Mapping[str, float],
                outcome_of: Callable[[Cell], str]) -> ShardPlan:
    """The shard plan for `all_cells`: measured durations where `durations_s`
    has them, the model (with each cell's expected outcome) elsewhere."""
    ids = [c.slug for c in all_cells]
    if len(set(ids)) != len(ids):
        raise ShardError("the matrix lists a cell twice")
    expected: dict[str, int] = {}
    for cell in all_cells:
        measured = durations_s.get(cell.slug)
        expected[cell.slug] = (max(1, round(measured * 1000)) if measured is not None
                               else modelled_duration_ms(cell, outcome_of(cell)))
    position = {cell: i for i, cell in enumerate(ids)}
    shards = tuple(tuple(sorted(s, key=position.__getitem__))
                   for s in assign_shards(expected, count))
    return ShardPlan(tuple(ids), shards, expected,
                     frozenset(c for c in ids if c in durations_s))


def matrix_plan(count: int, durations_file: Path = DURATIONS_PATH) -> ShardPlan:
    """This run's matrix split into `count` shards, with the stored durations."""
    def outcome(cell: Cell) -> str:
        expectation = shipped_policy(cell.policy).expectation(cell.profile, cell.strategy)
        return expectation.outcome if expectation is not None else "connects"

    return plan_shards(cells(), count, load_durations(durations_file), outcome)


# ---------------------------------------------------------------- expected durations

# The model, for cells without a measured duration: the call's own clock from
# CallSettings (the media window when it sets up; the setup timeout when it
# is blocked, as a blocked call waits for it), plus two guesses, not
# measurements: what the harness spends around each call (policy load, counter
# reads, capture, PESQ, teardown) and a tunnel's bring-up.
HARNESS_PER_CALL_S = 6.0  # guess
SETUP_S = 2.0  # guess: ICE or the app's own ladder, when the call gets through
TUNNEL_UP_S = 4.0  # guess


def modelled_duration_ms(cell: Cell, outcome: str, settings: CallSettings | None = None) -> int:
    """The expected wall time of one cell, by its strategy and expected outcome."""
    settings = settings or CallSettings()
    call_s = (settings.setup_timeout_s if outcome == "fails"
              else SETUP_S + settings.media_s)
    tunnel_s = TUNNEL_UP_S if cell.strategy in TUNNEL_STRATEGIES else 0.0
    return round((HARNESS_PER_CALL_S + tunnel_s + call_s) * 1000)


def load_durations(path: Path = DURATIONS_PATH) -> dict[str, float]:
    """Cell id → seconds from a durations file; none if the file does not exist."""
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: unreadable: {exc}") from None
    durations = payload.get("durations_s") if isinstance(payload, dict) else None
    if not isinstance(durations, dict):
        raise ShardError(f"{path}: no durations_s object (write it with "
                         "`python -m scenarios.matrix_file durations RUN...`)")
    result: dict[str, float] = {}
    for cell, seconds in durations.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not 0 < seconds < 86400:
            raise ShardError(f"{path}: durations_s.{cell}: {seconds!r} is not a duration in "
                             "seconds (0 < s < 86400)")
        result[str(cell)] = float(seconds)
    return result


def durations_from_runs(runs: Sequence[Mapping[str, Any]], note: str = "") -> dict[str, Any]:
    """A durations file's content from results.json payloads: each placed
    call's `timing_s.total` (what judged_call spent on it), keyed by cell id;
    skipped calls (never placed) and calls without timings are left out."""
    seen: dict[str, list[float]] = {}
    sources = []
    for payload in runs:
        environment = payload.get("environment")
        sources.append({"run_id": payload.get("run_id"), "matrix": payload.get("matrix"),
                        "host": payload.get("host"),
                        "commit": environment.get("commit")
                        if isinstance(environment, dict) else None})
        for call in payload.get("calls") or []:
            if not isinstance(call, dict) or call.get("verdict") == "skipped":
                continue
            timing = call.get("timing_s")
            total = timing.get("total") if isinstance(timing, dict) else None
            cell = call.get("call_id")
            if isinstance(cell, str) and cell and isinstance(total, int | float) and total > 0:
                seen.setdefault(cell, []).append(float(total))
    return {"format": DURATIONS_FORMAT,
            "about": "expected seconds per matrix cell (timing_s.total of earlier runs), for "
                     "`make scenarios SHARD=k/N`; cells not listed use the model in "
                     "scenarios/matrix_file.py",
            "sources": sources, **({"note": note} if note else {}),
            "durations_s": {cell: round(sum(v) / len(v), 3) for cell, v in sorted(seen.items())}}


# ---------------------------------------------------------------- the command

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.matrix_file",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="print the shard plan of this matrix for N shards")
    plan.add_argument("count", type=int, metavar="N")
    durations = sub.add_parser("durations", help="print a durations file from runs")
    durations.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                           help="results/<run> directories or their results.json")
    durations.add_argument("--note", default="",
                           help="how the runs were made (machine, load), kept in the file")
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            print_plan(matrix_plan(args.count))
        else:
            payloads = [_read_run(run) for run in args.runs]
            print(json.dumps(durations_from_runs(payloads, args.note), indent=2))
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def print_plan(plan: ShardPlan) -> None:
    count = len(plan.shards)
    print(f"matrix {MATRIX.name} ({MATRIX_PATH}): {len(plan.cells)} cells, "
          f"{len(plan.measured)} with a measured duration, in {count} shards")
    for index in range(1, count + 1):
        shard = Shard(index, count)
        print(f"shard {shard.label}: {len(plan.cells_of(shard))} cells, expected "
              f"{plan.expected_s(shard):.0f} s")
        for cell in plan.cells_of(shard):
            how = "measured" if cell in plan.measured else "model"
            print(f"  {cell}  {plan.expected_ms[cell] / 1000:.1f} s ({how})")


def _read_run(path: Path) -> dict[str, Any]:
    file = path if path.name == "results.json" else path / "results.json"
    try:
        payload = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{file}: unreadable: {exc}") from None
    if not isinstance(payload, dict):
        raise ShardError(f"{file}: not a results object")
    return payload


if __name__ == "__main__":
    sys.exit(main())
