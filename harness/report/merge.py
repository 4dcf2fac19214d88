"""`callwall report --merge RUN... [--out DIR]`: one run from the shards of a matrix.

Each shard (`make scenarios SHARD=k/N`, on this machine or on another) leaves
a run directory whose results.json says which shard it ran and lists the
whole matrix's cells. The merge checks that the shards belong together, then
writes one run: results.json (every call record as its shard wrote it, and
where each came from under ``merged_from``), junit.xml (each shard's test
suite, named after its shard), the calls' directories (calls/<cell>/:
recordings, pcaps, logs) and report.html.

It refuses, naming the runs and the cells, and writes nothing:

- a run that is not a scenario run with its matrix's cells (an older
  results.json, a `callwall run`);
- runs of different matrices (name or cells), commits, topologies or shard
  counts;
- the same run given twice, and a cell recorded by more than one run
  (overlapping shards) or twice in one run;
- a call that is not a cell of the matrix;
- a matrix cell that no run recorded (a shard not given, or one that crashed
  before recording its call), unless `allow_partial`: then the merged
  results.json lists them under ``partial``;
- a run without a readable junit.xml.
"""

from __future__ import annotations

import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import paths
from harness.netns.registry import new_run_id
from harness.report.html import ReportError, load_run, write_report
from harness.report.results import new_results_dir, point_latest, write_raw_results
from harness.spec.matrix import cell_slug
from harness.spec.presets import IDEAL_LINK

JUNIT_NAME = "junit.xml"
JUNIT_COUNTS = ("tests", "failures", "errors", "skipped")
# Cells named in one problem, at most; the rest are counted.
LISTED_CELLS = 12
WHOLE = "whole"  # the label of an unsharded run


class MergeError(ReportError):
    """The runs cannot be merged; the message lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("cannot merge:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class ShardRun:
    """One run given to the merge, as read from its directory."""

    given: str  # the path as the user gave it, for messages
    dir: Path
    meta: Mapping[str, Any]
    calls: tuple[Mapping[str, Any], ...]  # raw records, as results.json holds them
    junit: tuple[ET.Element, ...] = field(default=(), compare=False)  # its <testsuite>s

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.dir.name)

    @property
    def shard(self) -> Mapping[str, Any] | None:
        shard = self.meta.get("shard")
        return shard if isinstance(shard, Mapping) else None

    @property
    def label(self) -> str:
        """"2/4", or "whole" for a run of the whole matrix."""
        return str(self.shard.get("label")) if self.shard else WHOLE

    @property
    def count(self) -> int:
        return _int(self.shard.get("count")) if self.shard else 1

    @property
    def index(self) -> int:
        return _int(self.shard.get("index")) if self.shard else 1

    @property
    def name(self) -> str:
        return f"{self.given} (shard {self.label})"

    @property
    def matrix_cells(self) -> tuple[str, ...]:
        cells = self.meta.get("matrix_cells")
        return tuple(str(c) for c in cells) if isinstance(cells, list) else ()

    @property
    def planned(self) -> tuple[str, ...]:
        """The cells this run was given: its shard's, or the whole matrix."""
        cells = self.shard.get("cells") if self.shard else None
        return tuple(str(c) for c in cells) if isinstance(cells, list) else self.matrix_cells

    @property
    def commit(self) -> str:
        environment = self.meta.get("environment")
        commit = environment.get("commit") if isinstance(environment, Mapping) else None
        return str(commit) if commit else "?"

    @property
    def cell_ids(self) -> list[str]:
        return [cell_id(c) for c in self.calls]


@dataclass(frozen=True)
class Merged:
    dir: Path
    runs: tuple[ShardRun, ...]
    matrix: str
    cells: int  # the matrix's
    calls: int  # merged
    missing: tuple[str, ...]  # matrix cells no run recorded (only with allow_partial)


def cell_id(call: Mapping[str, Any]) -> str:
    """The matrix cell of a call record: its call_id (the cell's slug), else
    the slug its fields give (harness.spec.matrix.cell_slug)."""
    given = call.get("call_id")
    if isinstance(given, str) and given:
        return given
    return cell_slug(str(call.get("policy")), str(call.get("profile") or "webrtc"),
                     str(call.get("strategy")), str(call.get("link_profile") or IDEAL_LINK))


def read_shard(path: Path) -> ShardRun:
    """A run directory (or its results.json) with its records and JUnit suites;
    raises ReportError when results.json cannot be read."""
    run = load_run(path)
    return ShardRun(str(path), run.dir, run.meta, tuple(c.raw for c in run.calls))


def merge_runs(run_paths: Sequence[Path], out: Path | None = None,
               allow_partial: bool = False) -> Merged:
    """Check the runs, then write the merged run to `out` (default: a new
    results/<run>, which results/latest then points at)."""
    if not run_paths:
        raise MergeError(["no run given"])
    runs: list[ShardRun] = []
    problems: list[str] = []
    for path in run_paths:
        try:
            runs.append(_with_junit(read_shard(path), problems))
        except ReportError as exc:
            problems.append(str(exc))
    if problems:  # the rest compares runs that could all be read
        raise MergeError(problems)
    missing = check_runs(runs, allow_partial)
    target = _target(out)
    run_id = new_run_id()
    target = target if target is not None else new_results_dir(paths.RESULTS, run_id)
    calls = sorted((c for r in runs for c in r.calls),
                   key=lambda c: (str(c.get("policy")), str(c.get("profile")),
                                  str(c.get("strategy")),
                                  str(c.get("link_profile") or IDEAL_LINK)))
    for run in runs:
        for cell in run.cell_ids:
            source = run.dir / "calls" / cell
            if cell and "/" not in cell and cell not in (".", "..") and source.is_dir():
                shutil.copytree(source, target / "calls" / cell, symlinks=True)
    _write_junit(runs, target / JUNIT_NAME)
    write_raw_results(target, calls, _merged_meta(runs, run_id, missing))
    if out is None:
        point_latest(target)
    write_report(target)
    first = runs[0]
    return Merged(target, tuple(runs), str(first.meta.get("matrix") or "?"),
                  len(first.matrix_cells), len(calls), missing)


def check_runs(runs: Sequence[ShardRun], allow_partial: bool = False) -> tuple[str, ...]:
    """Raise MergeError listing every reason the runs do not make one matrix
    run; return the cells none of them recorded (allowed with allow_partial)."""
    problems: list[str] = []
    for run in runs:
        if run.meta.get("kind") != "scenarios" or not run.matrix_cells:
            problems.append(f"{run.given}: results.json lists no matrix cells: not a run of "
                            "`make scenarios` (or one older than sharding)")
    if problems:
        raise MergeError(problems)
    seen_dirs: dict[Path, ShardRun] = {}
    for run in runs:
        if run.dir in seen_dirs:
            problems.append(f"the same run given twice: {seen_dirs[run.dir].given} and "
                            f"{run.given}")
        seen_dirs.setdefault(run.dir, run)
    problems += _differences(runs, "matrices", lambda r: (
        f"matrix {r.meta.get('matrix') or '?'} ({len(r.matrix_cells)} cells, "
        f"first {r.matrix_cells[0]})"), key=lambda r: (r.meta.get("matrix"), r.matrix_cells))
    problems += _differences(runs, "commits", lambda r: r.commit)
    problems += _differences(runs, "topologies", lambda r: str(r.meta.get("topology") or "?"))
    problems += _differences(runs, "shard counts",
                             lambda r: f"{r.count} shards" if r.shard else WHOLE,
                             key=lambda r: r.count)
    matrix = set(runs[0].matrix_cells)
    where: dict[str, list[ShardRun]] = {}
    for run in runs:
        ids = run.cell_ids
        twice = sorted({c for c in ids if ids.count(c) > 1})
        if twice:
            problems.append(f"{run.name} records a cell twice: {_cells(twice)}")
        outside = sorted(set(ids) - matrix)
        if outside:
            problems.append(f"{run.name} has calls outside the matrix: {_cells(outside)}")
        for cell in dict.fromkeys(ids):
            where.setdefault(cell, []).append(run)
    overlaps = {cell: holders for cell, holders in where.items() if len(holders) > 1}
    if overlaps:
        pairs: dict[tuple[str, ...], list[str]] = {}
        for cell, holders in overlaps.items():
            pairs.setdefault(tuple(h.name for h in holders), []).append(cell)
        problems += [f"{len(cells)} cells in more than one run ({' and '.join(names)}): "
                     f"{_cells(sorted(cells))}" for names, cells in pairs.items()]
    missing = tuple(c for c in runs[0].matrix_cells if c not in where)
    if missing and not allow_partial:
        problems.append(_missing_text(runs, missing))
    if problems:
        raise MergeError(problems)
    return missing


def render_merge_text(merged: Merged) -> str:
    """What `callwall report --merge` prints."""
    lines = []
    for run in sorted(merged.runs, key=lambda r: r.index):
        host = run.meta.get("host") or "?"
        lines.append(f"shard {run.label:<6} {run.run_id}  {len(run.calls):>4} calls  "
                     f"host {host}  {run.dir}")
    lines.append(f"merged {merged.calls} calls of matrix {merged.matrix} ({merged.cells} cells) "
                 f"into {merged.dir}: results.json, {JUNIT_NAME}, report.html")
    if merged.missing:
        lines.append(f"partial: {len(merged.missing)} cells missing: {_cells(merged.missing)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- helpers

def _with_junit(run: ShardRun, problems: list[str]) -> ShardRun:
    file = run.dir / JUNIT_NAME
    if not file.is_file():
        problems.append(f"{run.given}: no {JUNIT_NAME}")
        return run
    try:
        top = ET.parse(file).getroot()
        suites = [top] if top.tag == "testsuite" else top.findall("testsuite")
        for suite in suites:
            for key in JUNIT_COUNTS:
                int(suite.get(key, "0"))
            float(suite.get("time", "0"))
    except (OSError, ET.ParseError, ValueError) as exc:
        problems.append(f"{file}: unreadable: {exc}")
        return run
    return ShardRun(run.given, run.dir, run.meta, run.calls, tuple(suites))


def _differences(runs: Sequence[ShardRun], what: str, describe: Callable[[ShardRun], str],
                 key: Callable[[ShardRun], Hashable] | None = None) -> list[str]:
    """One problem if the runs differ in `key` (default: their description)."""
    groups: dict[Hashable, list[ShardRun]] = {}
    for run in runs:
        groups.setdefault((key or describe)(run), []).append(run)
    if len(groups) < 2:
        return []
    return [f"different {what}: " + "; ".join(
        f"{', '.join(r.name for r in group)}: {describe(group[0])}"
        for group in groups.values())]


def _missing_text(runs: Sequence[ShardRun], missing: Sequence[str]) -> str:
    """Which cells no run recorded, and why: a shard not given, or a shard
    that ran but recorded no result for a cell it was given."""
    planned_by = {cell: run for run in runs for cell in run.planned}
    unrecorded: dict[str, list[str]] = {}
    not_given = []
    for cell in missing:
        run = planned_by.get(cell)
        if run is None:
            not_given.append(cell)
        else:
            unrecorded.setdefault(run.name, []).append(cell)
    parts = [f"{len(missing)} of {len(runs[0].matrix_cells)} matrix cells missing "
             "(--allow-partial merges without them)"]
    absent = _absent_shards(runs)
    if not_given:
        shards = f" (shards not given: {', '.join(absent)})" if absent else ""
        parts.append(f"in no shard given{shards}: {_cells(not_given)}")
    parts += [f"given to {name}, which recorded no result for them: {_cells(cells)}"
              for name, cells in unrecorded.items()]
    return "; ".join(parts)


def _absent_shards(runs: Sequence[ShardRun]) -> list[str]:
    count = runs[0].count
    given = {r.index for r in runs}
    return [f"{i}/{count}" for i in range(1, count + 1) if i not in given]


def _cells(cells: Sequence[str]) -> str:
    shown = ", ".join(cells[:LISTED_CELLS])
    more = len(cells) - LISTED_CELLS
    return shown + (f" … and {more} more" if more > 0 else "")


def _target(out: Path | None) -> Path | None:
    """`out`, created; it may exist only as an empty directory."""
    if out is None:
        return None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError([f"{out}: exists and is not an empty directory; the merge writes "
                          "a new run"])
    out.mkdir(parents=True, exist_ok=True)
    return out


def _merged_meta(runs: Sequence[ShardRun], run_id: str,
                 missing: Sequence[str]) -> dict[str, Any]:
    first = runs[0].meta
    ordered = sorted(runs, key=lambda r: r.index)
    started = [s for s in (_number(r.meta.get("started")) for r in runs) if s is not None]
    finished = [f for f in (_number(r.meta.get("finished")) for r in runs) if f is not None]
    hosts = list(dict.fromkeys(str(r.meta.get("host") or "?") for r in ordered))
    meta: dict[str, Any] = {
        "run_id": run_id, "kind": "scenarios", "topology": first.get("topology"),
        "matrix": first.get("matrix"), "matrix_file": first.get("matrix_file"),
        "matrix_cells": list(runs[0].matrix_cells),
        "started": min(started) if started else None,
        "finished": max(finished) if finished else None,
        "merged_at": time.time(), "host": ", ".join(hosts),
        "environment": first.get("environment"),
        "merged_from": [{"run_id": r.run_id, "dir": str(r.dir), "shard": r.label,
                         "host": r.meta.get("host"), "started": r.meta.get("started"),
                         "finished": r.meta.get("finished"), "calls": len(r.calls),
                         "expected_s": (r.shard or {}).get("expected_s"),
                         "environment": r.meta.get("environment")} for r in ordered],
    }
    if missing:
        meta["partial"] = {"missing": list(missing)}
    return meta


def _write_junit(runs: Sequence[ShardRun], path: Path) -> None:
    """One <testsuites> holding each shard's <testsuite>s, named after the
    shard, with the totals summed."""
    root = ET.Element("testsuites")
    totals = dict.fromkeys(JUNIT_COUNTS, 0)
    time_s = 0.0
    for run in sorted(runs, key=lambda r: r.index):
        for suite in run.junit:
            suite.set("name", f"{suite.get('name') or 'pytest'} (shard {run.label})")
            for key in JUNIT_COUNTS:
                totals[key] += int(suite.get(key, "0"))
            time_s += float(suite.get("time", "0"))
            root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{time_s:.3f}")
    tmp = path.with_name(f".{path.name}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
