"""Suite-wide leak check: after the whole test session, no lab may remain and
the root namespace must be as the session found it."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from harness.netns.registry import RUNS_ROOT
from harness.testing.rootsnapshot import RootSnapshot

SNAPSHOT: dict[str, RootSnapshot] = {}

# Property tests check what the code does, never how fast: a machine busy with
# labs (or CI's) must not turn a slow example into a failure. Speed targets
# live in `make bench`.
settings.register_profile("callwall", deadline=None)
settings.load_profile("callwall")


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        SNAPSHOT["start"] = RootSnapshot.take()


def leaks() -> list[str]:
    found = []
    if RUNS_ROOT.is_dir():
        found += [f"lab state left: {p}" for p in RUNS_ROOT.glob("cw*")]
    after = RootSnapshot.take()
    before = SNAPSHOT["start"]
    # A lab that was running before the session (another run's, e.g. `make
    # scenarios` beside the tests) is not this session's leak.
    found += [f"process left: {p}" for p in after.mininet_shells
              if p not in before.mininet_shells]
    for field in ("links", "ruleset", "qdiscs", "sysctls", "netns"):
        if getattr(after, field) != getattr(before, field):
            found.append(f"root namespace {field} changed:\n  before: {getattr(before, field)}"
                         f"\n  after:  {getattr(after, field)}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if "start" not in SNAPSHOT or hasattr(session.config, "workerinput"):
        return
    found = leaks()
    if found:
        print("\ncallwall leak check FAILED:\n" + "\n".join(found))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        print("\ncallwall leak check: no lab, process or state file left; root namespace "
              "firewall, qdiscs, links and forwarding sysctls unchanged")
