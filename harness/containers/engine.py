"""The Docker engine callwall's image is built and run with.

`engine()` yields an engine that answers: the one at $DOCKER_HOST (or the
default socket) if it does; otherwise, only when asked (`private=True`, or
CALLWALL_PRIVATE_DOCKERD=1), a private dockerd that this module starts under a
callwall-owned state directory (default ${XDG_CACHE_HOME:-~/.cache}/callwall/dockerd,
or CALLWALL_DOCKERD_DIR) with the flags a shared machine needs:

    dockerd --iptables=false --ip6tables=false --bridge=none --ip-forward=false
            --data-root DIR/data --exec-root DIR/run --pidfile DIR/dockerd.pid
            -H unix://DIR/docker.sock [--add-runtime nsr=DIR/runc-nosysres
            --default-runtime=nsr]

so that it never touches the root namespace's firewall, links or forwarding,
and shares no state with any other dockerd. Where the machine lacks
CAP_SYS_RESOURCE (so that `--privileged` would fail), its default runtime is
`runc_wrapper.py`, which drops that capability.

Ownership: the dockerd's PID and kernel start time are recorded in
DIR/owner.json as soon as it is spawned; it is stopped by that PID only, and
only while the PID still has that start time. Users hold a shared lock on
DIR/users.lock while they use it; whoever releases it last stops a dockerd that
`engine()` started (a dockerd started by `start` stays until `stop`). A
recorded dockerd whose owner died (SIGKILL) and that nobody uses is stopped by
the next `engine()`. No other dockerd, container or image is ever touched.

Command line (standard library only, so the system Python can run it):

    python -m harness.containers.engine run [--private] -- CMD ARGS...
    python -m harness.containers.engine start | stop | status
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from harness.logtail import log_tail
from harness.procfs import process_start_ticks

PRIVATE_ENV = "CALLWALL_PRIVATE_DOCKERD"
DIR_ENV = "CALLWALL_DOCKERD_DIR"
DEFAULT_HOST = "unix:///var/run/docker.sock"
CAP_SYS_RESOURCE = 24
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0  # dockerd gives running containers 15 s, then kills them


class EngineError(RuntimeError):
    """No engine could be found or started (the message says what to do)."""


def default_state_dir() -> Path:
    """Where a private dockerd keeps everything: CALLWALL_DOCKERD_DIR, or
    ${XDG_CACHE_HOME:-~/.cache}/callwall/dockerd."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "callwall" / "dockerd"


def private_requested() -> bool:
    """CALLWALL_PRIVATE_DOCKERD=1 (or true/yes): a private dockerd may be started."""
    return os.environ.get(PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


# ------------------------------------------------------------------ probing

class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ping(host: str, timeout: float = 3.0) -> bool:
    """True if a Docker engine answers `GET /_ping` at `host` (a DOCKER_HOST
    value). unix:// and tcp:// (plain) are asked directly; other schemes
    (ssh://, TLS) through `docker -H HOST version`."""
    if host.startswith("unix://") or host.startswith("tcp://"):
        if os.environ.get("DOCKER_TLS_VERIFY") and host.startswith("tcp://"):
            return _ping_cli(host, timeout)
        conn: http.client.HTTPConnection
        if host.startswith("unix://"):
            conn = _UnixHTTPConnection(host[len("unix://"):], timeout)
        else:
            conn = http.client.HTTPConnection(host[len("tcp://"):], timeout=timeout)
        try:
            conn.request("GET", "/_ping")
            response = conn.getresponse()
            return response.status == 200 and response.read().strip() == b"OK"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
    return _ping_cli(host, timeout)


def api_status(host: str, path: str, timeout: float = 3.0) -> int | None:
    """The HTTP status the engine at `host` (unix:// or plain tcp://) answers
    `GET path` with, e.g. 200 or 404 for `/images/NAME/json`; None where it
    does not answer or the host is of another kind (ssh://, TLS)."""
    if os.environ.get("DOCKER_TLS_VERIFY") and host.startswith("tcp://"):
        return None
    conn: http.client.HTTPConnection
    if host.startswith("unix://"):
        conn = _UnixHTTPConnection(host[len("unix://"):], timeout)
    elif host.startswith("tcp://"):
        conn = http.client.HTTPConnection(host[len("tcp://"):], timeout=timeout)
    else:
        return None
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _ping_cli(host: str, timeout: float) -> bool:
    cli = shutil.which("docker")
    if cli is None:
        return False
    try:
        done = subprocess.run([cli, "-H", host, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def lacks_cap_sys_resource() -> bool:
    """True if this machine's capability bounding set has no CAP_SYS_RESOURCE
    (then `docker run --privileged` needs the runc wrapper)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1
    return False


# ------------------------------------------------------------------ engines

@dataclass(frozen=True)
class Engine:
    """An engine that answered: `host` is the DOCKER_HOST to use."""

    host: str
    private: bool = False
    pid: int | None = None
    start_ticks: int | None = None

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with DOCKER_HOST set."""
        env = dict(os.environ if base is None else base)
        env["DOCKER_HOST"] = self.host
        return env


@dataclass(frozen=True)
class Record:
    """What owner.json says about the private dockerd."""

    pid: int
    start_ticks: int
    host: str
    ephemeral: bool  # started by engine(): the last user stops it
    owner_pid: int

    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[IO[str]]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, mode)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class PrivateDockerd:
    """A dockerd owned by callwall, everything under one state directory."""

    def __init__(self, state_dir: Path | None = None, dockerd: str | None = None) -> None:
        self.dir = (state_dir or default_state_dir()).resolve()
        self.dockerd = dockerd or shutil.which("dockerd") or "/usr/sbin/dockerd"
        self.socket = self.dir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.record_file = self.dir / "owner.json"
        self.log_file = self.dir / "dockerd.log"
        self._process: subprocess.Popen[bytes] | None = None

    # -- record

    def record(self) -> Record | None:
        """The recorded dockerd, or None."""
        try:
            return Record(**json.loads(self.record_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write_record(self, record: Record) -> None:
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, self.record_file)

    # -- locks

    def _start_lock(self) -> contextlib.AbstractContextManager[IO[str]]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _flock(self.dir / "start.lock", fcntl.LOCK_EX)

    # -- start / stop

    def _argv(self) -> list[str]:
        argv = [self.dockerd, f"--config-file={self.dir / 'daemon.json'}",
                "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
                f"--data-root={self.dir / 'data'}", f"--exec-root={self.dir / 'run'}",
                f"--pidfile={self.dir / 'dockerd.pid'}", "-H", self.host]
        if lacks_cap_sys_resource():
            argv += ["--add-runtime", f"nsr={self._write_runc_wrapper()}",
                     "--default-runtime=nsr"]
        return argv

    def _write_runc_wrapper(self) -> Path:
        runc = shutil.which("runc") or "/usr/sbin/runc"
        module = Path(__file__).with_name("runc_wrapper.py").resolve()
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        shim = self.dir / "runc-nosysres"
        shim.write_text("#!/bin/sh\n# written by harness/containers/engine.py\n"
                        f"exec {shlex.quote(python)} -I {shlex.quote(str(module))} "
                        f"{shlex.quote(runc)} \"$@\"\n")
        shim.chmod(0o755)
        return shim

    def _spawn(self, ephemeral: bool) -> Record:
        if not Path(self.dockerd).exists():
            raise EngineError("no dockerd on this machine: install it (Debian: apt-get install "
                              "docker.io) or point DOCKER_HOST at a running engine")
        # The key file dockerd 20.10 would otherwise create in /etc/docker.
        (self.dir / "daemon.json").write_text(
            json.dumps({"deprecated-key-path": str(self.dir / "key.json")}))
        with open(self.log_file, "ab") as log:
            log.write(f"--- {time.strftime('%F %T')} started by pid {os.getpid()}\n".encode())
            log.flush()
            process = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        ticks = process_start_ticks(process.pid)
        if ticks is None:
            process.wait()
            raise EngineError(f"dockerd exited at once; see {self.log_file}")
        self._process = process
        record = Record(pid=process.pid, start_ticks=ticks, host=self.host,
                        ephemeral=ephemeral, owner_pid=os.getpid())
        self._write_record(record)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ping(self.host, timeout=1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                self._stop(record)
                raise EngineError(f"private dockerd did not come up; last lines of "
                                  f"{self.log_file}:\n{log_tail(self.log_file)}")
            time.sleep(0.2)
        return record

    def _stop(self, record: Record) -> None:
        """SIGTERM exactly the recorded process (same PID and start time), wait,
        SIGKILL it if it outlives the timeout; then forget it."""
        if record.alive():
            os.kill(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while record.alive() and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.2)
            if record.alive():
                os.kill(record.pid, signal.SIGKILL)
                while record.alive():
                    self._reap()
                    time.sleep(0.1)
        self._reap()
        self.record_file.unlink(missing_ok=True)

    def _reap(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None

    def running(self) -> Record | None:
        """The recorded dockerd if it is alive and answers."""
        record = self.record()
        return record if record is not None and record.alive() and ping(record.host) else None

    def acquire(self, ephemeral: bool = True, may_start: bool = True) -> tuple[Engine, IO[str]]:
        """Start the private dockerd unless the recorded one answers (raise instead
        if not `may_start`); return it and the shared users-lock handle the caller
        holds while using it."""
        with self._start_lock():
            record = self.record()
            if record is not None and not (record.alive() and ping(record.host)):
                # Dead, or alive but not answering: ours by the record, so stop it.
                try:
                    with _flock(self.dir / "users.lock", fcntl.LOCK_EX | fcntl.LOCK_NB):
                        self._stop(record)
                except BlockingIOError:
                    raise EngineError(f"the private dockerd (pid {record.pid}) does not answer "
                                      f"and is in use; see {self.log_file}") from None
                record = None
            if record is None:
                if not may_start:
                    raise EngineError("the private dockerd stopped meanwhile")
                record = self._spawn(ephemeral)
            users = open(self.dir / "users.lock", "a+")
            fcntl.flock(users, fcntl.LOCK_SH)
        return Engine(record.host, private=True, pid=record.pid,
                      start_ticks=record.start_ticks), users

    def release(self, users: IO[str]) -> None:
        """Drop the caller's use; stop an ephemeral dockerd nobody else uses."""
        fcntl.flock(users, fcntl.LOCK_UN)
        users.close()
        with self._start_lock():
            record = self.record()
            if record is None or not record.ephemeral:
                return
            try:
                with _flock(self.dir / "users.lock", fcntl.LOCK_EX | fcntl.LOCK_NB):
                    self._stop(record)
            except BlockingIOError:
                pass  # another user: the last one stops it

    def reap_abandoned(self) -> bool:
        """Stop a recorded ephemeral dockerd that no process uses (its owner died);
        True if one was stopped."""
        with self._start_lock():
            record = self.record()
            if record is None or not record.ephemeral:
                return False
            try:
                with _flock(self.dir / "users.lock", fcntl.LOCK_EX | fcntl.LOCK_NB):
                    self._stop(record)
                    return True
            except BlockingIOError:
                return False

    def start(self) -> Engine:
        """Start (or find) a long-lived private dockerd; it runs until `stop`."""
        self.reap_abandoned()
        engine, users = self.acquire(ephemeral=False)
        with self._start_lock():
            record = self.record()
            if record is not None and record.ephemeral:
                self._write_record(Record(**{**asdict(record), "ephemeral": False}))
        fcntl.flock(users, fcntl.LOCK_UN)
        users.close()
        return engine

    def stop(self) -> bool:
        """Stop the recorded dockerd once nobody uses it (waits); True if one ran."""
        with self._start_lock():
            record = self.record()
            if record is None:
                return False
            with _flock(self.dir / "users.lock", fcntl.LOCK_EX):
                self._stop(record)
            return True


@contextlib.contextmanager
def engine(private: bool | None = None, state_dir: Path | None = None) -> Iterator[Engine]:
    """An engine that answers, for the duration of the block.

    $DOCKER_HOST (or the default socket) if an engine answers there; else, if
    `private` (default: CALLWALL_PRIVATE_DOCKERD=1), the private dockerd under
    `state_dir`, started if needed and stopped afterwards when this block
    started it and no one else uses it. A private dockerd already running
    there (`start`) is used even when `private` is off. Raises EngineError
    when there is no engine to use."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if ping(host):
        yield Engine(host)
        return
    if private is None:
        private = private_requested()
    daemon = PrivateDockerd(state_dir)
    if os.geteuid() != 0:
        raise EngineError(f"no Docker engine answers at {host}, and a private dockerd "
                          "needs root (run through sudo)")
    running = daemon.running() is not None
    if not private and not running:
        raise EngineError(f"no Docker engine answers at {host}; start one, or set "
                          f"{PRIVATE_ENV}=1 to let callwall run a private dockerd under "
                          f"{daemon.dir}")
    if not running:
        daemon.reap_abandoned()
    found, users = daemon.acquire(ephemeral=True, may_start=private)
    try:
        yield found
    finally:
        daemon.release(users)


# ------------------------------------------------------------------ command line

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.containers.engine",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"private dockerd's directory (default {default_state_dir()})")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run CMD with DOCKER_HOST set to an engine that answers")
    choice = run.add_mutually_exclusive_group()
    choice.add_argument("--private", dest="private", action="store_true", default=None,
                        help=f"allow a private dockerd (as {PRIVATE_ENV}=1)")
    choice.add_argument("--no-private", dest="private", action="store_false")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    sub.add_parser("start", help="start a long-lived private dockerd; print its DOCKER_HOST")
    sub.add_parser("stop", help="stop the private dockerd recorded under the state dir")
    sub.add_parser("status", help="say which engine would be used")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that a private dockerd started here is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.command == "run":
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not command:
                raise EngineError("run: no command given (run -- CMD ARGS...)")
            with engine(args.private, args.state_dir) as found:
                where = f"private dockerd pid {found.pid}" if found.private else "engine"
                print(f"engine: {where} at {found.host}", file=sys.stderr)
                return subprocess.run(command, env=found.env(), check=False).returncode
        daemon = PrivateDockerd(args.state_dir)
        if args.command == "start":
            if os.geteuid() != 0:
                raise EngineError("a private dockerd needs root (run through sudo)")
            started = daemon.start()
            print(f"export DOCKER_HOST={started.host}  # private dockerd pid {started.pid}; "
                  f"stop it with: python -m harness.containers.engine stop")
            return 0
        if args.command == "stop":
            print("stopped" if daemon.stop() else "no private dockerd recorded")
            return 0
        host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        print(f"{host}: {'answers' if ping(host) else 'no answer'}")
        record = daemon.record()
        if record is None:
            print(f"private dockerd ({daemon.dir}): not running")
        else:
            state = "running" if record.alive() else "recorded, gone"
            kind = "until stop" if not record.ephemeral else "ephemeral"
            print(f"private dockerd ({daemon.dir}): {state}, pid {record.pid}, {kind}, "
                  f"DOCKER_HOST={record.host}")
        return 0
    except EngineError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
