"""Every test in this directory needs root and builds real labs: it is marked
`root` here, and callwall's pytest plugin (harness.testing.plugin) skips it,
naming what is missing, where labs cannot be built. The plugin also provides
the fixtures used here: `root_snapshot`, `lab` (one per module, checked to
leave nothing behind) and `call`."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.root)


@pytest.fixture
def run_files(tmp_path: Path) -> Path:
    return tmp_path
