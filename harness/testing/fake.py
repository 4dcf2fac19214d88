"""A fake lab substrate, for unit tests of the orchestration (testbed,
services, faults, calls) without root, namespaces or real servers: in the
spirit of aiortc's in-process fakes (its DummyConnection).

- :class:`FakeBackend` is a :class:`~harness.netns.backend.LabBackend`. Each
  topology host is held by an idle child process of the test (``cat`` on a
  pipe from the test), recorded in the run's registry like a Mininet host
  shell, so the registry's cleanup runs exactly as for a real lab. Links are
  only the hosts' interface names (``lo``, ``eth0``, ...).
- :class:`FakeHost` is a :class:`~harness.netns.host.LabHost` that never
  enters a namespace and never runs the program it is asked to:

  - ``run(argv)`` is recorded and answered from the rule table: a
    :class:`Reply` (returncode, stdout, stderr); unmatched commands succeed
    with no output;
  - ``start(argv, what=..., log=...)`` is recorded and starts a real local
    *stand-in* process, recorded in the registry as the real one would be: a
    :class:`Scripted` process (writes given files, log text and peer events,
    then exits with a given code after N seconds, or runs until stopped; the
    default) or a :class:`Program` (``python -c CODE`` the test gives, with the
    started argv as its ``sys.argv[1:]``);
  - ``netlink()`` is a :class:`FakeNetlink`: calls recorded, interface state
    (up/down, addresses, veths added and deleted) kept;
  - ``listening_ports(pid, proto)`` answers readiness probes
    (harness.netns.process.wait_listening) without sockets: a stand-in listens
    on the sockets its rule declares for as long as it runs (by default on
    every socket asked for if it runs until stopped, on none if it exits by
    itself).

- :class:`FakeScript` holds the rules (shared by every host of one backend;
  a rule may be limited to one host) and the journal: every run, start and
  netlink call in order, each naming its host.

A call's peer is scripted with :meth:`Scripted.peer`: it writes its events to
the file after ``--events`` in its argv and its result JSON beside its log
(``<call_dir>/<role>.log`` -> ``<call_dir>/<role>.json``), then exits.

Stand-ins run in the root namespace but do nothing there beyond writing
files (a Program does what its code does), and end by themselves if the test
process dies; commands given to ``run`` are
never executed, and ``argv`` (for programs that would enter the namespace
themselves) raises FakeError.

Typical use, with the plugin's fixtures::

    def test_relay_that_cannot_bind(fake_backend, tmp_path):
        fake_backend.script.on_start(["turnserver"], Scripted(exit_after_s=0, returncode=1,
                                     log_text="cannot bind"), host="relay")
        with pytest.raises(ServiceStartError, match="cannot bind"):
            Lab.create(topology_path("ru-to-abroad"), root=tmp_path, backend=fake_backend).up()
        assert fake_backend.host("relay").starts[0].argv[0] == "turnserver"
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

from pyroute2 import NetNS

from harness import paths
from harness.netns.backend import HostCallback
from harness.netns.host import HostCommandError, LabHost
from harness.netns.network import LabNetwork
from harness.netns.registry import Registry
from harness.spec.topology import Topology, load_topology

# What holds a fake host: `cat` reading a pipe whose other end only this
# process holds, so it ends with this process, however that ends (a killed
# test run leaves no host behind); SIGHUP (the registry's) ends it too.
SHELL_ARGV = ("cat",)
EVENTS_FLAG = "--events"

# The sockets a stand-in listens on: "any" answers every readiness probe while
# it runs; a collection of (proto, port) only those.
Listens = Literal["any"] | frozenset[tuple[str, int]]


class FakeError(RuntimeError):
    """The fake was used in a way it does not support, or was told to fail."""


# ---------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Reply:
    """The scripted outcome of one ``run``."""

    returncode: int = 0
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class StartRequest:
    """What ``start`` was asked to run (given to a :class:`Scripted` files function)."""

    host: str
    argv: tuple[str, ...]
    what: str
    log: Path
    env: Mapping[str, str] | None

    def flag(self, name: str) -> str | None:
        """The argument after `name` in argv (e.g. ``--events``), if any."""
        argv = list(self.argv)
        if name in argv[:-1]:
            return argv[argv.index(name) + 1]
        return None


FileMap = Mapping[str, str | bytes]


@dataclass(frozen=True)
class Scripted:
    """A stand-in process. In order: writes `log_text` to its log; writes each
    of `events` (name, seconds after it started) as a JSON line ``{"event":
    name, "monotonic": t}`` to the file after ``--events`` in its argv; then,
    `exit_after_s` seconds after it started (or after the last event, if
    later), writes `files` and exits with `returncode`. With `exit_after_s`
    None it writes `files` at once and runs until stopped.

    `listens`: the sockets it answers readiness probes for while it runs;
    unset, every socket for one that runs until stopped (a service), none
    for one that exits by itself (so a service scripted to fail at start
    never looks ready).

    `files` maps paths (relative ones are relative to the log's directory) to
    their contents, or is a function of the :class:`StartRequest` giving them.
    """

    exit_after_s: float | None = None
    returncode: int = 0
    log_text: str = ""
    events: Sequence[tuple[str, float]] = ()
    files: FileMap | Callable[[StartRequest], FileMap] = field(default_factory=dict)
    listens: Listens | None = None

    @property
    def listening(self) -> Listens:
        if self.listens is not None:
            return self.listens
        return "any" if self.exit_after_s is None else frozenset()

    @classmethod
    def peer(cls, result: Mapping[str, Any] | None, *,
             events: Sequence[tuple[str, float]] = (("attempt", 0.0), ("media", 0.2)),
             exit_after_s: float = 0.5, returncode: int = 0, log_text: str = "") -> Scripted:
        """A call's peer process: emits `events`, then writes `result` as JSON to
        ``<role>.json`` beside its log ``<role>.log`` (nothing if None) and exits."""
        if result is None:
            return cls(exit_after_s=exit_after_s, returncode=returncode, events=events,
                       log_text=log_text)
        text = json.dumps(result)

        def files(request: StartRequest) -> FileMap:
            return {str(request.log.with_suffix(".json")): text}

        return cls(exit_after_s=exit_after_s, returncode=returncode, events=events,
                   files=files, log_text=log_text)


@dataclass(frozen=True)
class Program:
    """A real local program, ``python -c code``, with the started argv as its
    ``sys.argv[1:]``, its output going to the log. `listens`: the sockets it
    answers readiness probes for while it runs (its real sockets are not
    looked at)."""

    code: str
    listens: Listens = "any"

    @property
    def listening(self) -> Listens:
        return self.listens


StartAnswer = Scripted | Program
RunAnswer = Reply | Callable[["RunCall"], Reply]


def sockets(*pairs: tuple[str, int]) -> frozenset[tuple[str, int]]:
    """The sockets a stand-in listens on, e.g. ``sockets(("udp", 3478))``;
    ``sockets()`` listens on none (a service that never becomes ready)."""
    return frozenset(pairs)


# ---------------------------------------------------------------------- the journal


@dataclass(frozen=True)
class RunCall:
    """One ``run``: what was asked and what the fake answered."""

    host: str
    argv: tuple[str, ...]
    input_text: str | None
    timeout: float
    check: bool
    reply: Reply


@dataclass(frozen=True)
class StartCall:
    """One ``start``: what was asked, and the stand-in that runs in its place."""

    host: str
    argv: tuple[str, ...]
    what: str
    log: Path
    env: Mapping[str, str] | None
    proc: subprocess.Popen[bytes]
    answer: StartAnswer


@dataclass(frozen=True)
class NetlinkCall:
    """One call on a :class:`FakeNetlink`, e.g. ``("link", ("set",), {"index": 2,
    "state": "down"})``."""

    host: str
    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


Call = RunCall | StartCall | NetlinkCall


@dataclass
class _Rule:
    prefix: tuple[str, ...]
    answer: Any
    host: str | None
    what: str | None
    times: int | None  # None: every time
    order: int

    def matches(self, host: str, argv: Sequence[str], what: str | None) -> bool:
        return ((self.times is None or self.times > 0)
                and (self.host is None or self.host == host)
                and (self.what is None or self.what == what)
                and tuple(argv[:len(self.prefix)]) == self.prefix)


class FakeScript:
    """The rules of one fake lab and its journal. Among the rules that match a
    command (its argv starts with the rule's prefix; the host, and for
    ``start`` the `what`, agree if the rule names them; the rule is not used
    up), the one with the longest prefix wins, then the one added last."""

    def __init__(self) -> None:
        self.journal: list[Call] = []
        self._runs: list[_Rule] = []
        self._starts: list[_Rule] = []
        self._netlink: list[_Rule] = []
        self._order = 0
        self._lock = threading.Lock()

    def on_run(self, prefix: Sequence[str], answer: RunAnswer, *, host: str | None = None,
               times: int | None = None) -> None:
        """Answer ``run`` of a command starting with `prefix` (in `host`, or
        any) with `answer` (a Reply, or a function of the RunCall, whose
        `reply` is not set yet, giving one), `times` times (None: always)."""
        self._add(self._runs, prefix, answer, host, None, times)

    def on_start(self, prefix: Sequence[str], answer: StartAnswer, *, host: str | None = None,
                 what: str | None = None, times: int | None = None) -> None:
        """Run `answer` in place of a started command starting with `prefix`."""
        self._add(self._starts, prefix, answer, host, what, times)

    def on_netlink(self, method: str, error: BaseException, *, host: str | None = None,
                   times: int | None = None) -> None:
        """Make netlink `method` (e.g. "link", "route", "tc") raise `error`."""
        self._add(self._netlink, (method,), error, host, None, times)

    def _add(self, rules: list[_Rule], prefix: Sequence[str], answer: object,
             host: str | None, what: str | None, times: int | None) -> None:
        with self._lock:
            self._order += 1
            rules.append(_Rule(tuple(prefix), answer, host, what, times, self._order))

    def run_answer(self, host: str, argv: Sequence[str]) -> RunAnswer | None:
        """The answer to ``run`` of `argv` in `host` (None: no rule matches)."""
        answer: RunAnswer | None = self._take(self._runs, host, argv)
        return answer

    def start_answer(self, host: str, argv: Sequence[str], what: str) -> StartAnswer | None:
        """The stand-in for ``start`` of `argv` as `what` in `host`."""
        answer: StartAnswer | None = self._take(self._starts, host, argv, what)
        return answer

    def netlink_error(self, host: str, method: str) -> BaseException | None:
        """The error netlink `method` raises in `host` (None: it works)."""
        error: BaseException | None = self._take(self._netlink, host, (method,))
        return error

    def _take(self, rules: list[_Rule], host: str, argv: Sequence[str],
              what: str | None = None) -> Any:
        with self._lock:
            found = [r for r in rules if r.matches(host, argv, what)]
            if not found:
                return None
            rule = max(found, key=lambda r: (len(r.prefix), r.order))
            if rule.times is not None:
                rule.times -= 1
            return rule.answer

    def record(self, call: Call) -> None:
        with self._lock:
            self.journal.append(call)

    # -------------------------------------------------------------- reading the journal

    def runs(self, host: str | None = None) -> list[RunCall]:
        return [c for c in list(self.journal)
                if isinstance(c, RunCall) and host in (None, c.host)]

    def starts(self, host: str | None = None) -> list[StartCall]:
        return [c for c in list(self.journal)
                if isinstance(c, StartCall) and host in (None, c.host)]

    def netlink_calls(self, host: str | None = None) -> list[NetlinkCall]:
        return [c for c in list(self.journal)
                if isinstance(c, NetlinkCall) and host in (None, c.host)]

    def argvs(self, host: str | None = None) -> list[list[str]]:
        """Every run argv (in `host`, or in any), in order."""
        return [list(c.argv) for c in self.runs(host)]


# ---------------------------------------------------------------------- hosts


class _EveryPort(Container[int]):
    def __contains__(self, item: object) -> bool:
        return True


EVERY_PORT: Container[int] = _EveryPort()


@dataclass
class FakeInterface:
    index: int
    state: str = "down"
    addresses: list[str] = field(default_factory=list)


@dataclass
class FakeHost(LabHost):
    """A lab host without a namespace (see the module's docstring)."""

    script: FakeScript = field(default_factory=FakeScript)
    interfaces: dict[str, FakeInterface] = field(default_factory=dict)
    routes: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ scripting

    def on_run(self, prefix: Sequence[str], answer: RunAnswer, *,
               times: int | None = None) -> None:
        self.script.on_run(prefix, answer, host=self.name, times=times)

    def on_start(self, prefix: Sequence[str], answer: StartAnswer, *, what: str | None = None,
                 times: int | None = None) -> None:
        self.script.on_start(prefix, answer, host=self.name, what=what, times=times)

    @property
    def runs(self) -> list[RunCall]:
        return self.script.runs(self.name)

    @property
    def starts(self) -> list[StartCall]:
        return self.script.starts(self.name)

    @property
    def netlink_calls(self) -> list[NetlinkCall]:
        return self.script.netlink_calls(self.name)

    # ------------------------------------------------------------------ LabHost

    def argv(self, command: Sequence[str]) -> list[str]:
        raise FakeError(f"fake host {self.name} has no namespace to enter: use run or start")

    def run(self, command: Sequence[str], *, input_text: str | None = None,
            timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = tuple(command)
        answer = self.script.run_answer(self.name, argv)
        asked = RunCall(self.name, argv, input_text, timeout, check, Reply())
        reply = (answer(asked) if callable(answer) else answer) or Reply()
        self.script.record(RunCall(self.name, argv, input_text, timeout, check, reply))
        if check and reply.returncode != 0:
            raise HostCommandError(
                f"{self.name}: {' '.join(command)} exited {reply.returncode}: "
                f"{reply.stderr.strip() or reply.stdout.strip()}")
        return subprocess.CompletedProcess(list(argv), reply.returncode, reply.stdout,
                                           reply.stderr)

    def start(self, command: Sequence[str], *, what: str, log: Path,
              env: Mapping[str, str] | None = None,
              stdout: int | IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        argv = tuple(command)
        answer = self.script.start_answer(self.name, argv, what) or Scripted()
        request = StartRequest(self.name, argv, what, log, env)
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(
                _stand_in_argv(answer, request), stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log_file, stderr=log_file,
                env=dict(env) if env is not None else None, start_new_session=True,
            )
        self.script.record(StartCall(self.name, argv, what, log, env, proc, answer))
        if self.registry is not None:
            try:
                self.registry.record_process(proc.pid, self.name, what)
            except RuntimeError:
                pass  # it already exited, as LabHost.start
        return proc

    def netlink(self) -> NetNS:
        # A structural stand-in: the harness uses NetNS only as a context
        # manager with the methods FakeNetlink has.
        return cast(NetNS, FakeNetlink(self))

    def listening_ports(self, pid: int, proto: str) -> Container[int]:
        for call in reversed(self.starts):
            if call.proc.pid == pid:
                if call.proc.poll() is not None:
                    return frozenset()
                listens = call.answer.listening
                if listens == "any":
                    return EVERY_PORT
                return frozenset(port for p, port in listens if p == proto)
        return frozenset()


def _stand_in_argv(answer: StartAnswer, request: StartRequest) -> list[str]:
    if isinstance(answer, Program):
        return [sys.executable, "-c", answer.code, *request.argv]
    raw = answer.files(request) if callable(answer.files) else answer.files
    files = {}
    for path, content in raw.items():
        target = Path(path)
        if not target.is_absolute():
            target = request.log.parent / target
        text = content.decode("latin-1") if isinstance(content, bytes) else content
        files[str(target)] = [text, isinstance(content, bytes)]
    spec = {"exit_after_s": answer.exit_after_s, "returncode": answer.returncode,
            "log_text": answer.log_text, "events": [list(e) for e in answer.events],
            "events_path": request.flag(EVENTS_FLAG), "files": files}
    return [sys.executable, "-c", _STAND_IN, json.dumps(spec)]


# The stand-in process: a few lines of Python, so it starts fast and needs
# nothing of callwall. While it waits it checks that the test process (its
# parent) is still there, and ends if not.
_STAND_IN = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
t0 = time.monotonic()
parent = os.getppid()
if spec["log_text"]:
    sys.stderr.write(spec["log_text"])
    sys.stderr.flush()
def until(delay):
    while True:
        rest = t0 + delay - time.monotonic()
        if rest <= 0:
            return
        if os.getppid() != parent:
            sys.exit(0)
        time.sleep(min(rest, 0.2))
for name, delay in spec["events"]:
    until(delay)
    if spec["events_path"]:
        with open(spec["events_path"], "a") as out:
            out.write(json.dumps({"event": name, "monotonic": time.monotonic()}) + "\n")
def write_files():
    for path, (text, binary) in spec["files"].items():
        tmp = path + ".part"
        with open(tmp, "wb") as out:
            out.write(text.encode("latin-1") if binary else text.encode("utf-8"))
        os.replace(tmp, path)
if spec["exit_after_s"] is None:
    write_files()
    until(float("inf"))
until(spec["exit_after_s"])
write_files()
sys.exit(spec["returncode"])
"""


class FakeNetlink:
    """The part of pyroute2's NetNS the harness uses, on a FakeHost: every
    call recorded; interfaces looked up, added, deleted and set up or down;
    addresses and routes kept on the host."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host

    def __enter__(self) -> FakeNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def _call(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        script = self.host.script
        script.record(NetlinkCall(self.host.name, method, args, dict(kwargs)))
        error = script.netlink_error(self.host.name, method)
        if error is not None:
            raise error

    def link_lookup(self, **kwargs: Any) -> list[int]:
        self._call("link_lookup", (), kwargs)
        found = self.host.interfaces.get(str(kwargs.get("ifname")))
        return [found.index] if found is not None else []

    def link(self, command: str, **kwargs: Any) -> list[Any]:
        self._call("link", (command,), kwargs)
        interfaces = self.host.interfaces
        if command == "add":
            for name in (kwargs["ifname"], kwargs.get("peer")):
                if name is not None:
                    interfaces[name] = FakeInterface(_next_index(interfaces))
        elif command in ("set", "del"):
            name = self._name_of(kwargs["index"])
            if command == "del":
                del interfaces[name]
            elif "state" in kwargs:
                interfaces[name].state = kwargs["state"]
        return []

    def addr(self, command: str, **kwargs: Any) -> list[Any]:
        self._call("addr", (command,), kwargs)
        if command == "add":
            interface = self.host.interfaces[self._name_of(kwargs["index"])]
            interface.addresses.append(f"{kwargs['address']}/{kwargs['prefixlen']}")
        return []

    def route(self, command: str, **kwargs: Any) -> list[Any]:
        self._call("route", (command,), kwargs)
        if command in ("add", "replace"):
            routes = [r for r in self.host.routes if r.get("dst") != kwargs.get("dst")]
            self.host.routes[:] = [*routes, dict(kwargs)]
        return []

    def tc(self, command: str, **kwargs: Any) -> list[Any]:
        self._call("tc", (command,), kwargs)
        return []

    def get_qdiscs(self, **kwargs: Any) -> list[Any]:
        self._call("get_qdiscs", (), kwargs)
        return []

    def _name_of(self, index: int) -> str:
        for name, interface in self.host.interfaces.items():
            if interface.index == index:
                return name
        raise FakeError(f"{self.host.name} has no interface with index {index}")


def _next_index(interfaces: Mapping[str, FakeInterface]) -> int:
    return max((i.index for i in interfaces.values()), default=0) + 1


# ---------------------------------------------------------------------- the backend


class FakeBackend:
    """A LabBackend whose hosts are FakeHosts held by sleeping children of this
    process (see the module's docstring). `fail_build_at`: raise FakeError
    right after the host of that name was created (and handed to `on_host`),
    as a backend that fails half-way would."""

    def __init__(self, script: FakeScript | None = None, *,
                 fail_build_at: str | None = None) -> None:
        self.script = script or FakeScript()
        self.fail_build_at = fail_build_at
        self.hosts: dict[str, FakeHost] = {}
        self.shells: dict[str, subprocess.Popen[bytes]] = {}
        # Stand-ins still running when the backend stopped: nobody stopped
        # them before (a lab stops every process its registry recorded first).
        self.leftovers: list[StartCall] = []
        self.stopped = False
        self._interfaces: dict[str, list[str]] = {}

    def build(self, topology: Topology, on_host: HostCallback) -> None:
        for name in topology.hosts:
            shell = subprocess.Popen(list(SHELL_ARGV), stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            self.shells[name] = shell
            self._interfaces[name] = ["lo", *(i.name for i in topology.interfaces(name))]
            on_host(name, shell.pid)
            if name == self.fail_build_at:
                raise FakeError(f"fake backend told to fail after creating {name}")

    def lab_host(self, name: str, role: str, pid: int, registry: Registry) -> FakeHost:
        names = self._interfaces.get(name, ["lo"])
        host = FakeHost(name, role, pid, registry, script=self.script,
                        interfaces={n: FakeInterface(i + 1) for i, n in enumerate(names)})
        self.hosts[name] = host
        return host

    def stop(self) -> None:
        """End the host shells (SIGHUP, as Mininet's) and reap every stand-in;
        those still running are killed and kept in `leftovers`."""
        for shell in self.shells.values():
            if shell.poll() is None:
                shell.send_signal(signal.SIGHUP)
            shell.wait(timeout=10)
            if shell.stdin is not None:
                shell.stdin.close()
        for call in self.script.starts():
            if call.proc.poll() is None:
                self.leftovers.append(call)
                _kill_group(call.proc)
            call.proc.wait(timeout=10)
        self.stopped = True

    @property
    def journal(self) -> list[Call]:
        return self.script.journal

    def host(self, name: str) -> FakeHost:
        return self.hosts[name]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def fake_backend_of(lab: Any) -> FakeBackend:
    """The FakeBackend of a lab built on one (a Lab keeps its backend until down)."""
    backend = getattr(lab, "backend", None)
    if not isinstance(backend, FakeBackend):
        raise FakeError(f"{lab!r} does not run on a FakeBackend")
    return backend


@contextmanager
def fake_network(root: Path, topology: str | Path = paths.DEFAULT_TOPOLOGY,
                 backend: FakeBackend | None = None) -> Iterator[tuple[LabNetwork, FakeBackend]]:
    """The namespaces layer alone on fake hosts (built, not configured, no
    services), for the layers below the testbed; its run lives under `root`.
    Removed again on exit: recorded processes, shells, files."""
    backend = backend or FakeBackend()
    topology_path = paths.topology_path(str(topology))
    spec = load_topology(topology_path)
    registry = Registry.create(str(topology_path.resolve()), root)
    hosts: dict[str, LabHost] = {}

    def own(name: str, pid: int) -> None:
        registry.record_host(name, pid)
        hosts[name] = backend.lab_host(name, spec.hosts[name].role, pid, registry)

    try:
        backend.build(spec, own)
        yield LabNetwork(spec, hosts, registry), backend
    finally:
        registry.stop_services()
        backend.stop()
        registry.remove()
