"""Injected faults: something breaks in the lab while a call runs, and the call
still ends, within its budget, with a result that says what happened.

A :class:`Fault` says what to break and when: ``at_s`` seconds after media
started (both peers decoded their first audio frame), or, for
``signalling-down``, after the call started (``at_s <= 0``: before the peers
start). :class:`FaultInjector` performs it for one call, from a background
thread, and reports a :class:`FaultEvent` with the times on the call's clock
(seconds from when the harness started the peers, ``time.monotonic``, which is
the same in every network namespace).

Faults act only on what the run owns: processes recorded in the lab's registry
(checked by PID and kernel start time) and the lab's own interfaces. After a
destructive fault, :func:`restore_services` starts what is missing again with
the same configuration; a swapped policy stays until the next
``lab.apply_policy`` (``judged_call`` re-applies its policy when it differs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from harness import paths
from harness.netns.directory import ServiceDirectory
from harness.netns.registry import OwnedProcess
from harness.services.lab_services import (
    RELAY,
    SIGNALLING,
    ServiceStartError,
    start_service,
)
from harness.services.lab_services import restore_services as restore_lab_services
from harness.spec.policy import Policy, load_policy
from harness.spec.topology import Topology
from harness.testbed import Lab

FaultKind = Literal["kill-relay", "signalling-down", "kill-callee", "swap-policy", "link-flap"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
POLL_S = 0.05
# How long an injector may take to wind down once the call is over.
STOP_TIMEOUT_S = 10.0


class FaultError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    """What to break, and when.

    - ``kill-relay``: SIGKILL the relay (coturn) process, like a crash;
    - ``signalling-down``: stop the signalling server (SIGTERM); ``at_s``
      counts from the call's start, and ``at_s <= 0`` stops it before the
      peers start;
    - ``kill-callee``: SIGKILL the callee's peer process (it writes no result);
    - ``swap-policy``: apply ``policy`` (a name in policies/ or a path) on the censor;
    - ``link-flap``: set ``link`` = (host, interface) down for ``duration_s``,
      then up again (the host's routes are restored: the kernel drops routes
      through an interface that goes down).
    """

    kind: FaultKind
    at_s: float = 0.0
    duration_s: float | None = None
    policy: str | None = None
    link: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault {self.kind!r}; faults are: {', '.join(FAULT_KINDS)}")
        if self.at_s < 0 and self.kind != "signalling-down":
            raise FaultError(f"{self.kind}: at_s must be >= 0")
        if self.kind == "swap-policy" and not self.policy:
            raise FaultError("swap-policy needs policy")
        if self.kind == "link-flap":
            if self.link is None:
                raise FaultError("link-flap needs link=(host, interface)")
            if self.duration_s is None or self.duration_s <= 0:
                raise FaultError("link-flap needs duration_s > 0")

    @property
    def origin(self) -> Literal["media", "call"]:
        """What ``at_s`` counts from."""
        return "call" if self.kind == "signalling-down" else "media"

    def describe(self) -> str:
        text = f"{self.kind} at {self.origin}+{self.at_s:g}s"
        if self.policy:
            text += f" -> {self.policy}"
        if self.link:
            text += f" {self.link[0]}:{self.link[1]}"
        if self.duration_s is not None:
            text += f" for {self.duration_s:g}s"
        return text

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["link"] = list(self.link) if self.link else None
        return raw


@dataclass
class FaultEvent:
    """What an injector did, on the call's clock (seconds from the call's start).

    ``performed`` is False when the fault could not be done: media never
    started, the call ended first, or the action failed (``error`` says why).
    ``started_s`` is when the action began (the signal sent, the policy swap or
    the link change started), ``done_s`` when it was complete (the process gone,
    the new ruleset in place, the link down), ``ended_s`` when a timed fault
    (link-flap) was undone; ``media_started_s`` when both peers had decoded
    their first frame (null if they never did or were not watched).
    """

    fault: dict[str, Any]
    kind: str
    performed: bool = False
    started_s: float | None = None
    done_s: float | None = None
    ended_s: float | None = None
    media_started_s: float | None = None
    detail: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Watched:
    """The running call, as the injector sees it."""

    procs: Mapping[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    events: Mapping[str, Path] = field(default_factory=dict)


class FaultInjector:
    """Performs one fault during one call. Use: ``before_call(t0)`` just before
    the peers start, ``start(procs, events)`` once they run, ``stop()`` after
    they ended (it undoes a link-flap still in progress and returns the events).
    Never raises once constructed: failures are reported in the FaultEvent."""

    def __init__(self, lab: Lab, fault: Fault) -> None:
        self.lab = lab
        self.fault = fault
        self.event = FaultEvent(fault=fault.to_dict(), kind=fault.kind)
        self.killed: dict[str, float] = {}
        self._policy: Policy | None = None
        self._t0 = time.monotonic()
        self._watched = _Watched()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._check()

    def _check(self) -> None:
        """Everything that can be checked before the call: fail early, not mid-call."""
        fault = self.fault
        if fault.kind == "swap-policy":
            assert fault.policy is not None
            self._policy = load_policy(paths.policy_path(fault.policy))
        elif fault.kind == "link-flap":
            assert fault.link is not None
            host, interface = fault.link
            self.lab.host(host)
            names = [i.name for i in self.lab.topology.interfaces(host)]
            if interface not in names:
                raise FaultError(f"{host} has no interface {interface!r} ({', '.join(names)})")

    def _now(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def before_call(self, t0: float) -> None:
        """The call starts at `t0`; a fault due before the peers start happens now."""
        self._t0 = t0
        if self.fault.kind == "signalling-down" and self.fault.at_s <= 0:
            self._perform()

    def start(self, procs: Mapping[str, subprocess.Popen[bytes]],
              events: Mapping[str, Path]) -> None:
        self._watched = _Watched(procs, events)
        if self.event.performed or self.event.error:
            return  # done before the call
        self._thread = threading.Thread(target=self._run, name=f"fault-{self.fault.kind}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> list[FaultEvent]:
        """The call is over: cut a pending or running fault short and report."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive() and self.event.error is None:
                self.event.error = "the injector did not stop in time"
        return [self.event]

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            due = self._due()
            if due is None:
                return
            if self._stop.wait(max(due - time.monotonic(), 0.0)):
                self.event.detail = self.event.detail or "the call ended before the fault was due"
                return
            self._perform()
        except Exception as exc:  # report, never raise from the thread
            self.event.error = f"{type(exc).__name__}: {exc}"[:300]

    def _due(self) -> float | None:
        """The monotonic time the fault is due, or None if it never will be."""
        if self.fault.origin == "call":
            return self._t0 + self.fault.at_s
        media = self._wait_media()
        if media is None:
            self.event.detail = "media never started in both directions: fault not injected"
            return None
        self.event.media_started_s = round(media - self._t0, 3)
        return media + self.fault.at_s

    def _wait_media(self) -> float | None:
        """When both peers reported their first decoded frame (monotonic)."""
        while not self._stop.is_set():
            seen = [peer_event(path, "media") for path in self._watched.events.values()]
            if seen and all(s is not None for s in seen):
                return max(s for s in seen if s is not None)
            self._stop.wait(POLL_S)
        return None

    # ------------------------------------------------------------------ the faults

    def _perform(self) -> None:
        try:
            action = {
                "kill-relay": self._kill_relay,
                "signalling-down": self._signalling_down,
                "kill-callee": self._kill_callee,
                "swap-policy": self._swap_policy,
                "link-flap": self._link_flap,
            }[self.fault.kind]
            action()
        except Exception as exc:
            self.event.error = f"{type(exc).__name__}: {exc}"[:300]

    def _begin(self) -> None:
        self.event.started_s = self._now()

    def _done(self, detail: str) -> None:
        self.event.performed = True
        self.event.done_s = self._now()
        self.event.detail = detail

    def _kill_relay(self) -> None:
        self._begin()
        stopped = stop_service(self.lab, RELAY, first_signal=signal.SIGKILL)
        if not stopped:
            raise FaultError("no running coturn relay is recorded")
        self._done(f"SIGKILL coturn relay (pid {', '.join(map(str, stopped))})")

    def _signalling_down(self) -> None:
        self._begin()
        stopped = stop_service(self.lab, SIGNALLING)
        if not stopped:
            raise FaultError("no running signalling server is recorded")
        self._done(f"stopped the signalling server (pid {', '.join(map(str, stopped))})")

    def _kill_callee(self) -> None:
        proc = self._watched.procs.get("callee")
        if proc is None:
            raise FaultError("the callee peer is not running")
        owned = _recorded(self.lab, proc.pid, "callee peer")
        if owned is None or not owned.alive():
            raise FaultError(f"the callee peer (pid {proc.pid}) already ended")
        self._begin()
        with contextlib.suppress(ProcessLookupError):
            os.kill(owned.pid, signal.SIGKILL)
        assert self.event.started_s is not None
        self.killed["callee"] = self.event.started_s
        self._done(f"SIGKILL callee peer (pid {owned.pid})")

    def _swap_policy(self) -> None:
        assert self._policy is not None
        before = self.lab.registry.state.policy
        self._begin()
        self.lab.apply_policy(self._policy)
        self._done(f"censor policy {before} -> {self._policy.name}")

    def _link_flap(self) -> None:
        assert self.fault.link is not None and self.fault.duration_s is not None
        host_name, interface = self.fault.link
        set_link(self.lab, host_name, interface, up=False, before=self._begin)
        self._done(f"{host_name}:{interface} down")
        try:
            self._stop.wait(self.fault.duration_s)
        finally:
            set_link(self.lab, host_name, interface, up=True)
            self.event.ended_s = self._now()
            down_s = self.event.ended_s - (self.event.done_s or 0.0)
            self.event.detail += f", up again after {down_s:.2f}s"


# ---------------------------------------------------------------------- helpers


def peer_event(path: Path, event: str) -> float | None:
    """The monotonic time of the first `event` in a peer's --events file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            raw = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(raw, dict) and raw.get("event") == event:
            return float(raw["monotonic"])
    return None


def link_towards(topology: Topology, host: str, peer: str) -> tuple[str, str]:
    """(host, interface) of `host`'s link to `peer`, for a link-flap fault."""
    for intf in topology.interfaces(host):
        if intf.peer_host == peer:
            return host, intf.name
    raise FaultError(f"{host} has no link to {peer}")


def set_link(lab: Lab, host_name: str, interface: str, *, up: bool,
             before: Callable[[], None] | None = None) -> None:
    """Set a lab interface down or up (pyroute2, in the host's namespace);
    `before` runs just before the change (netlink is open by then). When it
    comes up, the host's routes from the topology are put back: the kernel
    deletes routes through an interface that goes down."""
    host = lab.host(host_name)
    with host.netlink() as ns:
        (index,) = ns.link_lookup(ifname=interface)
        if before is not None:
            before()
        ns.link("set", index=index, state="up" if up else "down")
        if up:
            for route in lab.topology.hosts[host_name].routes:
                ns.route("replace", dst=str(route.destination), gateway=str(route.via))


def _recorded(lab: Lab, pid: int, what: str) -> OwnedProcess | None:
    for owned in lab.registry.state.processes:
        if owned.pid == pid and owned.what == what:
            return owned
    return None


def running(lab: Lab, what: str) -> list[OwnedProcess]:
    """The recorded, still running processes that are `what` (e.g. "coturn relay")."""
    return lab.registry.running(what)


def stop_service(lab: Lab, what: str, first_signal: int = signal.SIGTERM) -> list[int]:
    """Stop the recorded `what` processes (only if each PID is still ours) and
    drop them from the registry. Returns their PIDs."""
    return lab.registry.stop(what, first_signal)


def restart_service(lab: Lab, what: str) -> None:
    """Stop `what` if it still runs, then start it again with the same configuration."""
    stop_service(lab, what)
    start_service(lab.network, _services_of(lab), what)


def restore_services(lab: Lab) -> list[str]:
    """Start again every lab service (relay, STUN, signalling, app relays)
    that is not running, as it was configured; returns what was restarted."""
    return restore_lab_services(lab.network, _services_of(lab))


def _services_of(lab: Lab) -> ServiceDirectory:
    if lab.services is None:
        raise ServiceStartError("the lab's services were never started")
    return lab.services
