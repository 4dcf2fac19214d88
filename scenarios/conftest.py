"""The scenario matrix's machinery: one lab per session (per worker under
pytest-xdist), one results directory (results/<run>/ with results.json and
junit.xml, and results/latest pointing at it), and the table printed at the
end. Under `pytest -n N` every worker writes its records to the shared
directory and the controller merges them. Under `make scenarios SHARD=k/N`
(CALLWALL_SHARD) only the cells of shard k run (scenarios/matrix_file.py
says which), and results.json says which shard it holds and lists the whole
matrix's cells, for `callwall report --merge`."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.measure.record import CallRecord
from harness.netns.capabilities import missing_lab_capabilities
from harness.netns.environment import describe_environment
from harness.netns.registry import new_run_id
from harness.report.html import record_from_dict, write_report
from harness.report.results import format_table, new_results_dir, point_latest, write_results
from harness.spec.schema import SpecError
from harness.spec.topology import load_topology
from harness.testbed import Lab
from harness.testing.labs import running_lab
from scenarios.matrix_file import (
    MATRIX,
    MATRIX_PATH,
    Shard,
    ShardError,
    ShardPlan,
    cells,
    matrix_plan,
    shard_from_environment,
)

TOPOLOGY = os.environ.get("CALLWALL_TOPOLOGY") or MATRIX.topology
RECORDS: list[CallRecord] = []
RUN: dict[str, Any] = {}
PARTIAL = "records-{}.json"


def pytest_configure(config: pytest.Config) -> None:
    _choose_shard()
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        RUN.update(run_id=new_run_id(), results=Path(worker["callwall_results"]),
                   started=worker["callwall_started"], worker=worker["workerid"])
        return
    run_id = new_run_id()
    results = new_results_dir(paths.RESULTS, run_id)
    RUN.update(run_id=run_id, results=results, started=time.time(), worker=None)
    if not config.option.xmlpath:
        config.option.xmlpath = str(results / "junit.xml")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_ShareRunWithWorkers())


class _ShareRunWithWorkers:
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["callwall_results"] = str(RUN["results"])
        node.workerinput["callwall_started"] = RUN["started"]


def _choose_shard() -> None:
    """CALLWALL_SHARD=k/N: the plan, checked before anything runs (a bad value
    or more shards than cells is a usage error, exit 4)."""
    try:
        shard = shard_from_environment()
        RUN["shard"] = shard
        if shard is not None:
            RUN["plan"] = matrix_plan(shard.count)
    except (ShardError, SpecError) as exc:
        raise pytest.UsageError(f"make scenarios SHARD: {exc}") from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard: Shard | None = RUN.get("shard")
    if shard is not None:
        mine = set(_plan().cells_of(shard))
        kept = [i for i in items if _cell_id(i) is None or _cell_id(i) in mine]
        others = [i for i in items if i not in kept]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = kept
    missing = missing_lab_capabilities()
    if missing:
        skip = pytest.mark.skip(reason="needs " + "; ".join(missing))
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One lab per session (per worker under xdist), from the same factory as
    the plugin's module-scoped `lab`; checked to leave nothing behind."""
    with running_lab(TOPOLOGY, run_id=RUN["run_id"], progress=True) as running:
        yield running
        RUN["link_backend"] = running.registry.state.link_backend


@pytest.fixture(scope="session")
def results_dir() -> Path:
    path: Path = RUN["results"]
    return path


@pytest.fixture
def keep_record() -> Iterator[list[CallRecord]]:
    kept: list[CallRecord] = []
    yield kept
    RECORDS.extend(kept)


def pytest_sessionfinish(session: pytest.Session) -> None:
    results: Path = RUN["results"]
    if RUN["worker"] is not None:
        partial = results / PARTIAL.format(RUN["worker"])
        partial.write_text(json.dumps([r.to_dict() for r in RECORDS]))
        return
    RECORDS.extend(_merge_worker_records(results))
    RECORDS.sort(key=lambda r: (r.policy, r.profile, r.strategy, r.link_profile))
    meta = {"run_id": RUN["run_id"], "kind": "scenarios", "topology": TOPOLOGY,
            "matrix": MATRIX.name, "matrix_file": str(MATRIX_PATH),
            "started": RUN["started"], "finished": time.time(),
            "host": platform.node(), "environment": describe_environment(_link_backend()),
            **_shard_meta()}
    write_results(results, RECORDS, meta)
    point_latest(results)
    write_report(results)


def _plan() -> ShardPlan:
    plan: ShardPlan = RUN["plan"]
    return plan


def _cell_id(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get("cell") if callspec is not None else None
    return None if cell is None else str(cell.slug)


def _shard_meta() -> dict[str, Any]:
    """The whole matrix's cells, and under SHARD=k/N which shard this run is:
    what `callwall report --merge` checks shards against."""
    shard: Shard | None = RUN.get("shard")
    if shard is None:
        return {"matrix_cells": [c.slug for c in cells()]}
    plan = _plan()
    return {"matrix_cells": list(plan.cells),
            "shard": {"index": shard.index, "count": shard.count, "label": shard.label,
                      "cells": list(plan.cells_of(shard)),
                      "expected_s": round(plan.expected_s(shard), 1),
                      "measured_durations": len(set(plan.cells_of(shard)) & plan.measured)}}


def _link_backend() -> str | None:
    """The link backend this process's lab used; under xdist the workers' labs
    chose theirs, which the controller does not see."""
    if "link_backend" in RUN:
        backend: str | None = RUN["link_backend"]
        return backend
    return "chosen per worker" if load_topology(paths.topology_path(TOPOLOGY)).impairs_links() \
        else None


def _merge_worker_records(results: Path) -> list[CallRecord]:
    merged = []
    for partial in sorted(results.glob(PARTIAL.format("*"))):
        merged += [record_from_dict(raw) for raw in json.loads(partial.read_text())]
        partial.unlink()
    return merged


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RUN.get("worker") is not None:
        return
    terminalreporter.section("callwall scenario matrix")
    if RECORDS:
        terminalreporter.write_line(format_table(RECORDS))
    terminalreporter.write_line(f"results: {RUN['results']}/results.json, report: "
                                f"{RUN['results']}/report.html (also {paths.RESULTS}/latest)")
