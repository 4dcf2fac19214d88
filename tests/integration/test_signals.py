"""Ctrl-C or SIGTERM at any point leaves nothing behind; after SIGKILL, the
next start (or `callwall clean`) removes exactly the dead run's resources.
Each case really sends the signal to a real `callwall` process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.netns.registry import RUNS_ROOT, OwnedProcess, process_start_ticks
from tests.integration.rootsnapshot import RootSnapshot

CALLWALL = [sys.executable, "-m", "harness.cli"]
RUN_ID = re.compile(r"\[(cw[0-9a-f]{6})\]")


class Run:
    """A `callwall run` in its own session, whose progress lines we follow."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*CALLWALL, "run", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.run_id = ""
        self.owned: list[OwnedProcess] = []

    def lines(self) -> Iterator[str]:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            match = RUN_ID.search(line)
            if match and not self.run_id:
                self.run_id = match.group(1)
            yield line

    def wait_for(self, marker: str) -> None:
        for line in self.lines():
            self.remember_owned()
            if marker in line:
                return
        raise AssertionError(f"{marker!r} never appeared")

    def remember_owned(self) -> None:
        state = RUNS_ROOT / self.run_id / "state.json"
        if self.run_id and state.is_file():
            raw = json.loads(state.read_text())
            self.owned = [OwnedProcess(**p) for p in
                          [*raw["hosts"].values(), *raw["processes"]]]

    def finish(self, timeout: float = 60) -> int:
        self.proc.communicate(timeout=timeout)
        return self.proc.returncode


def assert_nothing_left(run: Run, snapshot: RootSnapshot) -> None:
    assert run.run_id
    assert not (RUNS_ROOT / run.run_id).exists()
    assert run.owned, "the test never saw what the run owned"
    alive = [o for o in run.owned if process_start_ticks(o.pid) == o.start_ticks]
    assert alive == []
    assert RootSnapshot.take() == snapshot


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point, marker, delay_s", [
    ("bring-up", "configuring addresses", 0.0),
    ("services", "starting relay", 0.2),
    ("mid-call", "calling with", 3.0),
    ("teardown", "removing the lab", 0.0),
])
def test_stop_signal_leaves_nothing(root_snapshot: RootSnapshot, signum: int, point: str,
                                    marker: str, delay_s: float) -> None:
    run = Run("-p", "baseline", "-s", "turn-udp", "--seconds", "4")
    run.wait_for(marker)
    time.sleep(delay_s)
    run.remember_owned()
    os.kill(run.proc.pid, signum)
    code = run.finish()
    # Teardown finishes what it started, then the deferred signal ends the process.
    assert code == 130, f"{point}: exit {code}"
    assert_nothing_left(run, root_snapshot)


def test_sigkill_then_next_start_removes_the_dead_run(root_snapshot: RootSnapshot) -> None:
    run = Run("-p", "baseline", "-s", "direct", "--seconds", "6")
    run.wait_for("calling with")
    time.sleep(2.0)
    run.remember_owned()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert (RUNS_ROOT / run.run_id).exists(), "SIGKILL cannot clean up: state must remain"
    status = subprocess.run([*CALLWALL, "status"], capture_output=True, text=True, check=True)
    assert f"{run.run_id}" in status.stdout and "stale" in status.stdout
    # Any new lab first removes stale ones: `callwall run` here, `callwall clean` alike.
    after = subprocess.run([*CALLWALL, "run", "-p", "baseline", "-s", "turn-tcp", "--seconds",
                            "2"], capture_output=True, text=True, timeout=90)
    assert after.returncode == 0, after.stderr
    assert f"removed stale lab {run.run_id}" in after.stderr
    assert_nothing_left(run, root_snapshot)


def test_sigterm_to_the_up_supervisor_during_bring_up(root_snapshot: RootSnapshot) -> None:
    before = set(RUNS_ROOT.glob("cw*")) if RUNS_ROOT.exists() else set()
    up = subprocess.Popen([*CALLWALL, "up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True)
    state = _wait_new_state(before)
    raw = json.loads(state.read_text())
    run = Run.__new__(Run)
    run.run_id = state.parent.name
    os.kill(raw["owner_pid"], signal.SIGTERM)
    _out, err = up.communicate(timeout=60)
    assert up.returncode != 0 and "did not come up" in err
    run.owned = [OwnedProcess(**p) for p in [*raw["hosts"].values(), *raw["processes"]]]
    run.owned.append(OwnedProcess(raw["owner_pid"], raw["owner_start_ticks"], "", "owner"))
    assert_nothing_left(run, root_snapshot)


def _wait_new_state(before: set[Path]) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for run_dir in set(RUNS_ROOT.glob("cw*")) - before:
            state = run_dir / "state.json"
            if state.is_file() and json.loads(state.read_text())["hosts"]:
                return state
        time.sleep(0.01)
    raise AssertionError("no new lab appeared")
