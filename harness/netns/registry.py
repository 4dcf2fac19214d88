"""The ownership registry: everything a run creates is recorded here first,
and cleanup removes exactly what is recorded, never anything found by name.

A run's state lives in RUNS_ROOT/<run-id>/state.json (written atomically),
next to the run's private files (credentials, keys, service logs). Processes
are recorded with their kernel start time, so a recycled PID is never killed.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from harness.containers.runtime import ContainerRecord, remove_recorded
from harness.netns.directory import ServiceDirectory
from harness.procfs import process_start_ticks

__all__ = ["ContainerRecord", "OwnedProcess", "Registry", "RunState", "list_runs",
           "new_run_id", "process_start_ticks", "stale_runs", "terminate"]

RUNS_ROOT = Path(os.environ.get("CALLWALL_STATE_DIR", "/run/callwall"))
RUN_PREFIX = "cw"
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
TERM_GRACE_S = 3.0


def new_run_id() -> str:
    """A short unique prefix: it names the run's namespaces' shells and files."""
    return RUN_PREFIX + secrets.token_hex(3)


@dataclass
class OwnedProcess:
    pid: int
    start_ticks: int
    host: str
    what: str

    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks


@dataclass
class RunState:
    run_id: str
    owner_pid: int
    owner_start_ticks: int
    topology: str
    status: str = "starting"
    policy: str | None = None
    hosts: dict[str, OwnedProcess] = field(default_factory=dict)
    processes: list[OwnedProcess] = field(default_factory=list)
    # What the layers above recorded: the censor's tc devices, the link
    # backend and the impairments on each direction ("a->b" -> description),
    # and where the lab's services are.
    tc_devices: list[str] = field(default_factory=list)
    link_backend: Literal["netem", "userspace"] | None = None
    link_impairments: dict[str, str] = field(default_factory=dict)
    services: ServiceDirectory | None = None
    # Containers (harness.containers.runtime): lab hosts that run an image
    # (what "host") and call endpoints (what "<role> endpoint"), each recorded
    # by name before it is created, then with its id and init PID.
    containers: list[ContainerRecord] = field(default_factory=list)

    def owner_alive(self) -> bool:
        return process_start_ticks(self.owner_pid) == self.owner_start_ticks


class Registry:
    """Records one run's resources and removes them again."""

    def __init__(self, state: RunState, root: Path = RUNS_ROOT) -> None:
        self.state = state
        self.dir = root / state.run_id
        # Processes this object stopped or forgot: a merge must not bring them back.
        self._forgotten: set[tuple[int, int]] = set()
        # Containers (by name) this object removed: likewise.
        self._removed_containers: set[str] = set()

    @classmethod
    def create(cls, topology: str, root: Path = RUNS_ROOT, run_id: str | None = None) -> Registry:
        pid = os.getpid()
        ticks = process_start_ticks(pid)
        assert ticks is not None
        state = RunState(run_id or new_run_id(), pid, ticks, topology)
        registry = cls(state, root)
        registry.dir.mkdir(parents=True, mode=0o700)
        registry.save()
        return registry

    @classmethod
    def load(cls, run_dir: Path) -> Registry:
        raw = json.loads((run_dir / STATE_FILE).read_text())
        raw["hosts"] = {k: OwnedProcess(**v) for k, v in raw["hosts"].items()}
        raw["processes"] = [OwnedProcess(**p) for p in raw["processes"]]
        if raw.get("services") is not None:
            raw["services"] = ServiceDirectory.from_dict(raw["services"])
        raw["containers"] = [ContainerRecord.from_dict(c) for c in raw.get("containers", [])]
        return cls(RunState(**raw), run_dir.parent)

    @staticmethod
    def dir_for(run_id: str, root: Path = RUNS_ROOT) -> Path:
        return root / run_id

    @property
    def files(self) -> Path:
        """The run's private directory (keys, credentials, logs)."""
        return self.dir

    def save(self) -> None:
        """Write the state atomically. Several processes may record into one
        run (the lab's owner, `callwall link set`, `callwall exec`): under an
        exclusive lock, processes another writer recorded since we loaded are
        merged in, so no writer erases another's records."""
        if not self.dir.is_dir():
            return  # removed: nothing left to record
        try:
            lock = os.open(self.dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        except FileNotFoundError:
            return  # removed meanwhile
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._merge_recorded_elsewhere()
            tmp = self.dir / f"{STATE_FILE}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(asdict(self.state), indent=2))
            tmp.replace(self.dir / STATE_FILE)
        finally:
            os.close(lock)

    def _merge_recorded_elsewhere(self) -> None:
        try:
            on_disk = Registry.load(self.dir).state
        except (OSError, ValueError, KeyError, TypeError):
            return
        known = {(p.pid, p.start_ticks) for p in self.state.processes} | self._forgotten
        for owned in on_disk.processes:
            if (owned.pid, owned.start_ticks) not in known and owned.alive():
                self.state.processes.append(owned)
        names = {c.name for c in self.state.containers} | self._removed_containers
        for record in on_disk.containers:
            if record.name not in names:
                self.state.containers.append(record)

    def forget(self, owned: OwnedProcess) -> None:
        """Drop one record (its process has ended or was stopped)."""
        self._forgotten.add((owned.pid, owned.start_ticks))
        self.state.processes = [p for p in self.state.processes if p != owned]
        self.save()

    def adopt(self) -> None:
        """Make the calling process the run's owner (the lab supervisor does this)."""
        pid = os.getpid()
        ticks = process_start_ticks(pid)
        assert ticks is not None
        self.state.owner_pid, self.state.owner_start_ticks = pid, ticks
        self.save()

    def record_host(self, name: str, pid: int, what: str = "host-shell") -> None:
        self.state.hosts[name] = self._owned(pid, name, what)
        self.save()

    def record_container(self, record: ContainerRecord) -> None:
        """Record a container (or update its record, by name): before it is
        created (name only), then with its id, then with its init PID."""
        self.state.containers = [c for c in self.state.containers if c.name != record.name]
        self.state.containers.append(record)
        self.save()

    def forget_container(self, name: str) -> None:
        """Drop a container's record (it was removed)."""
        self._removed_containers.add(name)
        self.state.containers = [c for c in self.state.containers if c.name != name]
        self.save()

    def remove_containers(self, *, keep_hosts: bool = False) -> list[str]:
        """Remove the recorded containers (with `keep_hosts`, the call
        endpoints' only) and forget those that are gone; returns what could
        not be removed."""
        chosen = [c for c in self.state.containers
                  if not (keep_hosts and c.what == HOST_CONTAINER)]
        if not chosen:
            return []
        problems = remove_recorded(chosen)
        gone = {c.name for c in chosen} - set(problems)
        self._removed_containers |= gone
        self.state.containers = [c for c in self.state.containers if c.name not in gone]
        self.save()
        return list(problems.values())

    def record_process(self, pid: int, host: str, what: str) -> OwnedProcess:
        owned = self._owned(pid, host, what)
        self.state.processes.append(owned)
        self.save()
        return owned

    def set_status(self, status: str) -> None:
        self.state.status = status
        self.save()

    def _owned(self, pid: int, host: str, what: str) -> OwnedProcess:
        ticks = process_start_ticks(pid)
        if ticks is None:
            raise RuntimeError(f"{what} in {host} (pid {pid}) exited at once")
        return OwnedProcess(pid, ticks, host, what)

    def running(self, what: str) -> list[OwnedProcess]:
        """The recorded, still running processes that are `what` (e.g. "coturn relay")."""
        return [p for p in self.state.processes if p.what == what and p.alive()]

    def stop(self, what: str, first_signal: int = signal.SIGTERM) -> list[int]:
        """Stop the recorded `what` processes and forget them. Returns their PIDs."""
        stopped = []
        for owned in self.running(what):
            terminate(owned, first_signal=first_signal)
            stopped.append(owned.pid)
        gone = [p for p in self.state.processes if p.what == what and not p.alive()]
        self._forgotten.update((p.pid, p.start_ticks) for p in gone)
        self.state.processes = [p for p in self.state.processes if p not in gone]
        self.save()
        return stopped

    def stop_services(self) -> None:
        """Every recorded program running inside the lab's hosts, then the
        call endpoints' containers."""
        self._merge_recorded_elsewhere()
        for owned in reversed(self.state.processes):
            terminate(owned)
            self._forgotten.add((owned.pid, owned.start_ticks))
        self.state.processes = []
        self.save()
        _report(self.state.run_id, self.remove_containers(keep_hosts=True))

    def stop_processes(self) -> None:
        """Services first, then the host shells that hold the namespaces
        (interactive shells ignore SIGTERM; they end on SIGHUP)."""
        self.stop_services()
        _report(self.state.run_id, self.remove_containers())
        for owned in self.state.hosts.values():
            terminate(owned, first_signal=signal.SIGHUP)
        self.state.hosts = {}

    def remove(self) -> None:
        """Stop every recorded process and container and delete the run's
        private files; a container that could not be removed keeps its
        record (and the run's state file), for `callwall clean` to retry."""
        self.stop_processes()
        if self.state.containers:
            self.save()
            return
        shutil.rmtree(self.dir, ignore_errors=True)


HOST_CONTAINER = "host"


def _report(run_id: str, problems: list[str]) -> None:
    for problem in problems:
        print(f"callwall: [{run_id}] left behind: {problem}", file=sys.stderr, flush=True)


def terminate(owned: OwnedProcess, grace_s: float = TERM_GRACE_S,
              first_signal: int = signal.SIGTERM) -> None:
    """`first_signal`, then SIGKILL after `grace_s`; only if the PID is still ours."""
    if not owned.alive():
        return
    _signal(owned.pid, first_signal)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not owned.alive():
            return
        time.sleep(0.05)
    if owned.alive():
        _signal(owned.pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def list_runs(root: Path = RUNS_ROOT) -> list[Registry]:
    if not root.is_dir():
        return []
    runs = []
    for run_dir in sorted(root.iterdir()):
        if not run_dir.name.startswith(RUN_PREFIX):
            continue
        try:
            runs.append(Registry.load(run_dir))
        except (OSError, ValueError, TypeError):
            continue  # being created or removed right now by another process
    return runs


def stale_runs(root: Path = RUNS_ROOT) -> list[Registry]:
    """Runs whose owning process died without cleaning up (e.g. SIGKILL)."""
    return [run for run in list_runs(root) if not run.state.owner_alive()]
