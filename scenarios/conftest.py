"""The scenario matrix's machinery: one lab for the session, one results
directory (results/<run>/ with results.json and junit.xml, and
results/latest pointing at it), and the table printed at the end."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.lab.capabilities import missing_lab_capabilities
from harness.lab.lab import Lab
from harness.lab.registry import new_run_id
from harness.measure.record import CallRecord
from harness.report.results import format_table, new_results_dir, point_latest, write_results

TOPOLOGY = os.environ.get("CALLWALL_TOPOLOGY", paths.DEFAULT_TOPOLOGY)
RECORDS: list[CallRecord] = []
RUN: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    run_id = new_run_id()
    results = new_results_dir(paths.RESULTS, run_id)
    RUN.update(run_id=run_id, results=results, started=time.time())
    if not config.option.xmlpath:
        config.option.xmlpath = str(results / "junit.xml")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = missing_lab_capabilities()
    if missing:
        skip = pytest.mark.skip(reason="needs " + "; ".join(missing))
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    with Lab.create(paths.topology_path(TOPOLOGY), run_id=str(RUN["run_id"])) as running:
        running.up(progress=True)
        yield running


@pytest.fixture(scope="session")
def results_dir() -> Path:
    path = RUN["results"]
    assert isinstance(path, Path)
    return path


@pytest.fixture
def keep_record() -> Iterator[list[CallRecord]]:
    kept: list[CallRecord] = []
    yield kept
    RECORDS.extend(kept)


def pytest_sessionfinish(session: pytest.Session) -> None:
    results = RUN["results"]
    assert isinstance(results, Path)
    meta = {"run_id": RUN["run_id"], "kind": "scenarios", "topology": TOPOLOGY,
            "started": RUN["started"], "finished": time.time(),
            "host": platform.node(), "kernel": platform.release()}
    write_results(results, RECORDS, meta)
    point_latest(results)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section("callwall scenario matrix")
    if RECORDS:
        terminalreporter.write_line(format_table(RECORDS))
    terminalreporter.write_line(f"results: {RUN['results']}/results.json "
                                f"(also {paths.RESULTS}/latest)")
