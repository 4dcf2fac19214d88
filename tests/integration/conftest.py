"""Root-only fixtures: a lab per module, and a check that it left nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.netns.capabilities import missing_lab_capabilities
from harness.testbed import Lab
from tests.integration.rootsnapshot import RootSnapshot


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = missing_lab_capabilities()
    if not missing:
        return
    skip = pytest.mark.skip(reason="needs " + "; ".join(missing))
    for item in items:
        if "integration" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def root_snapshot() -> RootSnapshot:
    """The root namespace before any lab of this session existed."""
    return RootSnapshot.take()


@pytest.fixture(scope="module")
def lab(root_snapshot: RootSnapshot) -> Iterator[Lab]:
    with Lab.create(paths.topology_path(paths.DEFAULT_TOPOLOGY)) as running:
        running.up()
        yield running
    assert not running.registry.dir.exists()


@pytest.fixture
def run_files(tmp_path: Path) -> Path:
    return tmp_path
