"""What the container and descriptor tests share: a Docker engine (or a skip
that names why there is none), a topology whose callee is a container, and
the checks that a run left no container, process or veth behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.containers.engine import EngineError
from harness.containers.images import BASE_IMAGE, ensure_base, missing_base
from harness.containers.runtime import ContainerError, ContainerRecord, Docker
from harness.netns.registry import RUNS_ROOT, OwnedProcess, process_start_ticks

CALLWALL = [sys.executable, "-m", "harness.cli"]
RUN_ID = re.compile(r"\[(cw[0-9a-f]{6})\]")


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """A Docker engine with the local base image; skips, naming why, where none
    can be had (no dockerd, or one that will not start)."""
    try:
        engine = Docker.open()
    except (EngineError, ContainerError) as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    try:
        missing = missing_base(engine.engine.host)
        if missing:  # no base image, and nothing here to make it with
            pytest.skip(f"missing {', '.join(missing)}")
        ensure_base(engine)
        yield engine
    finally:
        engine.close()


def container_topology(folder: Path, image: str = BASE_IMAGE) -> Path:
    """ru-to-abroad with its callee held by a container of `image` that idles."""
    text = paths.topology_path(paths.DEFAULT_TOPOLOGY).read_text()
    anchor = "    role: callee\n"
    assert text.count(anchor) == 1
    path = folder / "ru-to-abroad-container-callee.yaml"
    path.write_text(text.replace("name: ru-to-abroad\n", "name: container-callee\n").replace(
        anchor, anchor + f"    image: {image}\n    command: [sleep, infinity]\n"))
    return path


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip() for line in out.stdout.splitlines()}


@dataclass
class Seen:
    """Everything a run recorded, as the test last read its state file."""

    run_id: str = ""
    processes: list[OwnedProcess] = field(default_factory=list)
    containers: list[ContainerRecord] = field(default_factory=list)
    status: str = ""

    def read(self) -> bool:
        state = RUNS_ROOT / self.run_id / "state.json"
        try:
            raw: dict[str, Any] = json.loads(state.read_text())
        except (OSError, ValueError):
            return False
        self.status = raw.get("status", "")
        owned = [OwnedProcess(**p) for p in [*raw["hosts"].values(), *raw["processes"]]]
        known = {(p.pid, p.start_ticks) for p in self.processes}
        self.processes += [p for p in owned if (p.pid, p.start_ticks) not in known]
        names = {c.name for c in self.containers}
        for entry in raw.get("containers", []):
            record = ContainerRecord.from_dict(entry)
            if record.name in names:
                self.containers = [record if c.name == record.name else c
                                   for c in self.containers]
            else:
                self.containers.append(record)
        return True


class Run:
    """`callwall run ...` in its own session; its run id from its progress lines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*CALLWALL, "run", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.seen = Seen()
        self.stderr: list[str] = []

    def wait_for_run_id(self, timeout_s: float = 60) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        for line in self.proc.stderr:
            self.stderr.append(line)
            match = RUN_ID.search(line)
            if match:
                self.seen.run_id = match.group(1)
                return
            if time.monotonic() > deadline:
                break
        raise AssertionError("no run id in: " + "".join(self.stderr))

    def wait_until(self, ready: Any, what: str, timeout_s: float = 180) -> None:
        """Poll the run's state until `ready(seen)`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.seen.read() and ready(self.seen):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended before {what}: {self.finish()}")
            time.sleep(0.05)
        raise AssertionError(f"no {what} after {timeout_s} s")

    def signal(self, signum: int) -> None:
        self.seen.read()
        self.proc.send_signal(signum)

    def finish(self, timeout_s: float = 120) -> str:
        _out, err = self.proc.communicate(timeout=timeout_s)
        return "".join(self.stderr) + (err or "")


def endpoint_containers_running(seen: Seen) -> bool:
    return sum(1 for c in seen.containers if c.what.endswith("endpoint") and c.pid) == 2


def assert_no_process_left(seen: Seen, links_before: set[str]) -> None:
    """No state, no recorded process (each by PID and start time), no new root
    link: the lab's namespaces (and so its veths) went with their holders."""
    assert seen.run_id and seen.processes, "the test never saw what the run owned"
    assert not (RUNS_ROOT / seen.run_id).exists(), f"state of {seen.run_id} is still there"
    alive = [p for p in seen.processes if process_start_ticks(p.pid) == p.start_ticks]
    assert alive == [], f"still running: {alive}"
    assert root_links() == links_before


def assert_nothing_left(docker: Docker, seen: Seen, links_before: set[str]) -> None:
    """As assert_no_process_left, and no recorded or labelled container, and no
    container's namespace holder."""
    assert_no_process_left(seen, links_before)
    left = [c.name for c in seen.containers if docker.exists(c)]
    assert left == [], f"containers left: {left}"
    labelled = docker.client.containers.list(all=True, filters={
        "label": f"org.callwall.run={seen.run_id}"})
    assert labelled == [], f"containers of the run left: {[c.name for c in labelled]}"
    holders = [c.pid for c in seen.containers if c.pid and process_start_ticks(c.pid)
               == c.start_ticks]
    assert holders == [], "a container's namespace holder still runs"
    assert root_links() == links_before


def kill_now(run: Run) -> None:
    run.signal(signal.SIGKILL)
    run.proc.wait(timeout=30)
