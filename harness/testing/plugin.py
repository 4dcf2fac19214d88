"""callwall's pytest plugin, loaded in every pytest run of an environment
where callwall is installed (the ``callwall`` pytest11 entry point).

Fixtures:

- ``root_snapshot`` (session): the root namespace's links, ruleset, qdiscs,
  sysctls and namespaces before any lab of the session existed
  (harness.testing.rootsnapshot.RootSnapshot; compare with ``RootSnapshot.take()``);
- ``lab`` (module): a real lab on the default topology, up; taken down after
  the module and checked to have left nothing behind;
- ``call`` (function): ``call(policy, strategy, profile="webrtc", fault=None,
  **settings) -> CallRecord`` places one judged call on ``lab``
  (harness.session.judged_call); its files go under the test's ``tmp_path``;
- ``fake_backend`` and ``fake_lab`` (function): a lab on the fake substrate
  of harness.testing.fake, up, under ``tmp_path``; no root needed.

Marker: ``root``. Tests marked ``root`` are skipped, with the missing
capabilities as the reason (harness.netns.capabilities), where this machine
cannot build labs. A test that uses ``lab`` or ``call`` must carry it.

The plugin imports the harness only when a fixture or a marked test needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.testbed import Lab
    from harness.testing.fake import FakeBackend
    from harness.testing.labs import CallPlacer
    from harness.testing.rootsnapshot import RootSnapshot

ROOT_MARKER = "root"
ROOT_MARKER_HELP = (f"{ROOT_MARKER}: needs root, network namespaces and the lab's system "
                    "packages; skipped, saying what is missing, where labs cannot be built")


def pytest_configure(config: pytest.Config) -> None:
    declared = [str(line).split(":")[0].strip() for line in config.getini("markers")]
    if ROOT_MARKER not in declared:  # callwall's own pyproject.toml declares it too
        config.addinivalue_line("markers", ROOT_MARKER_HELP)


@pytest.hookimpl(trylast=True)  # after conftests that add the marker by directory
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker(ROOT_MARKER) is not None]
    if not marked:
        return
    missing = _missing_capabilities()
    if not missing:
        return
    skip = pytest.mark.skip(reason="needs " + "; ".join(missing))
    for item in marked:
        item.add_marker(skip)


def _missing_capabilities() -> list[str]:
    from harness.netns.capabilities import missing_lab_capabilities

    return missing_lab_capabilities()


@pytest.fixture(scope="session")
def root_snapshot() -> RootSnapshot:
    """The root namespace before any lab of this session existed."""
    from harness.testing.rootsnapshot import RootSnapshot

    return RootSnapshot.take()


@pytest.fixture(scope="module")
def lab(root_snapshot: RootSnapshot) -> Iterator[Lab]:
    """A lab on the default topology for the module's tests (mark them ``root``)."""
    from harness.testing.labs import running_lab

    missing = _missing_capabilities()
    if missing:
        pytest.fail(f"the lab fixture needs {'; '.join(missing)}: mark the tests that use it "
                    f"with @pytest.mark.{ROOT_MARKER}, so they skip on such machines",
                    pytrace=False)
    with running_lab() as running:
        yield running


@pytest.fixture
def call(lab: Lab, tmp_path: Path) -> CallPlacer:
    """``call(policy, strategy, profile=..., fault=..., **settings)``: one judged
    call on `lab`, its files under ``tmp_path/calls``."""
    from harness.testing.labs import CallPlacer

    return CallPlacer(lab, tmp_path / "calls")


@pytest.fixture
def fake_backend() -> FakeBackend:
    """The substrate of `fake_lab`: its hosts, rules and journal."""
    from harness.testing.fake import FakeBackend

    return FakeBackend()


@pytest.fixture
def fake_lab(fake_backend: FakeBackend, tmp_path: Path) -> Iterator[Lab]:
    """A lab on the default topology on `fake_backend`, up; state under tmp_path."""
    from harness.testing.labs import LabLeftBehind, running_lab

    with running_lab(root=tmp_path / "runs", backend=fake_backend) as running:
        yield running
    if fake_backend.leftovers:
        raise LabLeftBehind("stand-ins nobody stopped: " + ", ".join(
            f"{c.what} in {c.host}" for c in fake_backend.leftovers))
