"""Containers a lab runs, through the Docker SDK on an engine from engine.py.

A lab uses containers two ways: a topology host that names an image (the
container holds that host's network namespace; harness.netns.container_hosts),
and a call endpoint whose program comes from an image (its files, in the lab
host's network; harness.calls.descriptor). Both go through :class:`Docker`.

Ownership: a container is known by a :class:`ContainerRecord`. Its name,
unique to the run, is recorded before the container is asked for; its id as
soon as the engine answers; its init PID and that PID's kernel start time once
it runs. Whoever records (the run's registry) does so before the next step,
so a container is never created that no record names. Removal
(:func:`remove_recorded`) goes by the recorded id, or, for a record that never
got one (the owner died while the engine was creating it), by the recorded
exact name, and only if the container found there carries the run's label.
Nothing is ever looked up by a pattern.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from harness.containers.engine import (
    DEFAULT_HOST,
    Engine,
    EngineError,
    PrivateDockerd,
    engine,
    ping,
)
from harness.procfs import process_start_ticks

RUN_LABEL = "org.callwall.run"
WHAT_LABEL = "org.callwall.what"
API_TIMEOUT_S = 120
REMOVE_TIMEOUT_S = 20
START_TIMEOUT_S = 30.0


class ContainerError(RuntimeError):
    """The engine refused or failed a request; the message says which and why."""


@dataclass(frozen=True)
class ContainerRecord:
    """One container of a run, as the registry keeps it. ``engine_host`` is the
    engine it was created on; ``dockerd_dir`` the private dockerd's state
    directory when that engine is callwall's own (so that a later `callwall
    clean` can start it again to remove the container)."""

    run_id: str
    name: str
    host: str
    what: str
    engine_host: str
    dockerd_dir: str | None = None
    id: str = ""
    pid: int = 0
    start_ticks: int = 0

    def alive(self) -> bool:
        """Whether the container's init process still runs (same PID, same start)."""
        return self.pid > 0 and process_start_ticks(self.pid) == self.start_ticks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ContainerRecord:
        return cls(**raw)


def _sdk() -> Any:
    try:
        import docker  # the Docker SDK for Python (PyPI: docker)
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ContainerError("the Docker SDK for Python is missing (pip install docker; "
                             "`make install` installs it)") from exc
    if not hasattr(docker, "DockerClient"):  # pragma: no cover
        raise ContainerError("`import docker` found something other than the Docker SDK "
                             f"({getattr(docker, '__path__', '?')})")
    return docker


class Docker:
    """A Docker client on one engine, with the engine held (a private dockerd
    stays up) until :meth:`close`."""

    def __init__(self, found: Engine, dockerd_dir: Path | None,
                 release: Callable[[], None] | None = None) -> None:
        self.engine = found
        self.dockerd_dir = dockerd_dir
        self._release = release
        self.client = _sdk().DockerClient(base_url=found.host, timeout=API_TIMEOUT_S)

    @classmethod
    def open(cls, state_dir: Path | None = None) -> Docker:
        """The engine at $DOCKER_HOST if one answers, else callwall's private
        dockerd (started if needed): EngineError says why there is none."""
        stack = contextlib.ExitStack()
        found = stack.enter_context(engine(private=True, state_dir=state_dir))
        try:
            directory = PrivateDockerd(state_dir).dir if found.private else None
            return cls(found, directory, stack.close)
        except BaseException:
            stack.close()
            raise

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._release is not None:
                release, self._release = self._release, None
                release()

    def __enter__(self) -> Docker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ records

    def record(self, run_id: str, name: str, host: str, what: str) -> ContainerRecord:
        """The record of a container about to be created here (no id yet)."""
        return ContainerRecord(run_id=run_id, name=name, host=host, what=what,
                               engine_host=self.engine.host,
                               dockerd_dir=str(self.dockerd_dir) if self.dockerd_dir else None)

    # ------------------------------------------------------------ lifecycle

    def create(self, record: ContainerRecord, image: str, *,
               command: Sequence[str] | None = None,
               mounts: Mapping[str, str] | None = None,
               read_only_mounts: Mapping[str, str] | None = None,
               host_pids: bool = False) -> ContainerRecord:
        """Create (not start) the container of `record`: no network but its
        own loopback (`--network none`), the run's labels, and `mounts`
        (host path -> path inside) bound read-write, `read_only_mounts`
        read-only. With `host_pids`, it shares this machine's PID namespace
        (its /proc then describes the programs the harness enters into it).
        Returns the record with its id."""
        volumes: dict[str, dict[str, str]] = {}
        for source, target in (mounts or {}).items():
            volumes[source] = {"bind": target, "mode": "rw"}
        for source, target in (read_only_mounts or {}).items():
            volumes[source] = {"bind": target, "mode": "ro"}
        try:
            container = self.client.containers.create(
                image, command=list(command) if command is not None else None,
                name=record.name, network_mode="none", detach=True, stdin_open=False,
                labels={RUN_LABEL: record.run_id, WHAT_LABEL: record.what},
                volumes=volumes, init=False, pid_mode="host" if host_pids else None)
        except Exception as exc:  # noqa: BLE001 - the SDK's errors, one message
            raise ContainerError(f"cannot create container {record.name} from {image}: "
                                 f"{_explain(exc)}") from exc
        return replace(record, id=str(container.id))

    def start(self, record: ContainerRecord) -> ContainerRecord:
        """Start a created container; returns the record with its init PID and
        that PID's start time (ContainerError if it does not stay up)."""
        try:
            container = self.client.containers.get(record.id)
            container.start()
            container.reload()
        except Exception as exc:  # noqa: BLE001
            raise ContainerError(f"cannot start container {record.name}: {_explain(exc)}") \
                from exc
        state = container.attrs.get("State", {})
        pid = int(state.get("Pid") or 0)
        ticks = process_start_ticks(pid) if pid > 0 else None
        if not state.get("Running") or ticks is None:
            logs = _logs(container)
            raise ContainerError(f"container {record.name} did not stay up (status "
                                 f"{state.get('Status')}, exit code {state.get('ExitCode')})"
                                 + (f"; its output:\n{logs}" if logs else ""))
        return replace(record, pid=pid, start_ticks=ticks)

    def remove(self, record: ContainerRecord) -> str | None:
        """Remove the recorded container (killed first if it runs); None when
        it is gone, else what went wrong."""
        errors = _errors()
        try:
            if record.id:
                container = self.client.containers.get(record.id)
            else:
                container = self.client.containers.get(record.name)
                if container.labels.get(RUN_LABEL) != record.run_id:
                    return None  # a container of that name, but not this run's: not ours
            container.remove(force=True, v=True)
        except errors.NotFound:
            return None
        except Exception as exc:  # noqa: BLE001
            if "is already in progress" in str(exc):
                return None  # dockerd removes it already
            return f"container {record.name} ({record.id[:12] or 'no id'}): {_explain(exc)}"
        return None

    def exists(self, record: ContainerRecord) -> bool:
        """Whether the engine still knows the recorded container."""
        try:
            self.client.containers.get(record.id or record.name)
        except _errors().NotFound:
            return False
        return True

    def image_config(self, image: str) -> Mapping[str, Any]:
        """The image's config (Env, WorkingDir, Cmd...); ContainerError if missing."""
        try:
            found = self.client.images.get(image)
        except Exception as exc:  # noqa: BLE001
            raise ContainerError(f"no image {image} on the engine at {self.engine.host}: "
                                 f"{_explain(exc)}") from exc
        config: Mapping[str, Any] = found.attrs.get("Config") or {}
        return config


def engine_reachable() -> bool:
    """Whether a Docker engine can be had: one answers at $DOCKER_HOST (or the
    default socket), or dockerd is here for callwall to start its own (as root)."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if ping(host, timeout=1.0):
        return True
    return os.geteuid() == 0 and shutil.which("dockerd") is not None


def remove_recorded(records: Sequence[ContainerRecord]) -> dict[str, str]:
    """Remove every recorded container, each on the engine it was created on;
    returns, by container name, what could not be removed (empty when all are
    gone). A private dockerd that has stopped since is started again for
    this, and stopped afterwards when nobody else uses it."""
    problems: dict[str, str] = {}
    by_engine: dict[tuple[str, str | None], list[ContainerRecord]] = {}
    for record in records:
        by_engine.setdefault((record.engine_host, record.dockerd_dir), []).append(record)
    for (host, directory), group in by_engine.items():
        try:
            with _client_for(host, directory) as docker:
                for record in group:
                    problem = docker.remove(record)
                    if problem:
                        problems[record.name] = problem
        except (EngineError, ContainerError) as exc:
            problems.update({r.name: f"container {r.name}: no engine to remove it with ({exc})"
                             for r in group})
    return problems


@contextlib.contextmanager
def _client_for(host: str, dockerd_dir: str | None) -> Iterator[Docker]:
    """A client on the engine at `host`; for callwall's private dockerd, that
    dockerd (started again if it stopped)."""
    if dockerd_dir is None:
        if not ping(host):
            raise EngineError(f"the engine at {host} does not answer")
        docker = Docker(Engine(host), None)
        try:
            yield docker
        finally:
            docker.close()
        return
    daemon = PrivateDockerd(Path(dockerd_dir))
    if os.geteuid() != 0:
        raise EngineError("removing containers of callwall's private dockerd needs root")
    found, users = daemon.acquire(ephemeral=True, may_start=True)
    docker = Docker(found, daemon.dir, lambda: daemon.release(users))
    try:
        yield docker
    finally:
        docker.close()


@contextlib.contextmanager
def build_lock(name: str, state_dir: Path | None = None) -> Iterator[IO[str]]:
    """An exclusive lock for building one image, so two runs do not build it
    at once (the second then finds it built)."""
    directory = PrivateDockerd(state_dir).dir.parent / "image-locks"
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    with open(directory / f"{safe}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _errors() -> Any:
    return _sdk().errors


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()


def _logs(container: Any, lines: int = 15) -> str:
    try:
        raw: bytes = container.logs(tail=lines)
    except Exception:  # noqa: BLE001 - only for a message
        return ""
    return raw.decode(errors="replace").strip()
