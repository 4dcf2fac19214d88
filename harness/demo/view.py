"""What the demo's page shows, as typed values: the script's phases with
their figures and checks, every call's per-second rows, the censor's rule
counters over time and the demo's events. The live page receives it as JSON
(Server-Sent Events), the offline page and demo.json carry its last state."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

Row = dict[str, Any]


@dataclass
class CallFigures:
    """One call during one phase. ``mos`` is the E-model's, for the worse of
    the two directions; ``pesq`` PESQ-WB of what the callee heard."""

    seconds: int = 0
    media: bool | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    bitrate_kbps: float | None = None
    mos: float | None = None
    pesq: float | None = None
    pesq_status: str | None = None
    failure: str | None = None
    audio: str | None = None  # the phase's received audio, a file name in demo/audio/
    audio_s: float | None = None
    note: str = ""


@dataclass
class Check:
    subject: str  # "call" or "attempt"
    expected: str
    observed: str
    ok: bool
    # Passed as the rare outcome the phase's policy declares for the cell.
    rare: bool = False


@dataclass
class SourceRef:
    id: str
    title: str
    date: str = ""


@dataclass
class PhaseView:
    index: int
    id: str
    title: str
    explain: str
    sources: list[SourceRef]
    policy: str  # the censor's policy during the phase
    loads_policy: bool  # the phase starts by loading it
    attempt: str | None  # the strategy of the phase's new call, if any
    hang_up: bool
    planned_s: float
    start_t: float | None = None
    end_t: float | None = None
    status: str = "pending"  # pending, running, ended (being scored), done
    change_s: float | None = None  # how long the policy change took
    change_error: str | None = None
    error: str | None = None  # anything else that kept the phase from being judged
    figures: dict[str, CallFigures] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.status == "done" and self.change_error is None and self.error is None
                and all(c.ok for c in self.checks))


@dataclass
class CallView:
    key: str
    label: str
    strategy: str
    to_callee: list[Row] = field(default_factory=list)
    to_caller: list[Row] = field(default_factory=list)
    media_t: float | None = None
    failed_t: float | None = None
    failure: str | None = None


@dataclass
class CounterSnapshot:
    t: float
    policy: str
    rules: dict[str, int]  # rule id -> packets
    bytes: dict[str, int]


@dataclass
class DemoEvent:
    t: float | None
    text: str
    level: str = "info"  # info, ok, error


@dataclass
class DemoView:
    name: str
    title: str
    description: str
    profile: str
    strategy: str
    topology: str
    speed: float
    status: str = "starting"  # starting, running, done, failed, stopped
    message: str = ""
    now_t: float | None = None
    current: int | None = None  # index of the running phase
    phases: list[PhaseView] = field(default_factory=list)
    calls: dict[str, CallView] = field(default_factory=dict)
    counters: list[CounterSnapshot] = field(default_factory=list)
    events: list[DemoEvent] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def passed(self) -> bool:
        return self.status == "done" and all(p.passed for p in self.phases)


class LiveView:
    """The view shared by the demo's driver (writes) and the page server
    (reads): every change bumps a version and wakes the waiting readers."""

    def __init__(self, view: DemoView) -> None:
        self.view = view
        self._version = 0
        self._text = json.dumps(view.to_dict())
        self._cond = threading.Condition()
        self.closed = False

    def publish(self) -> None:
        """The view changed: serialise it once for every reader."""
        text = json.dumps(self.view.to_dict())
        with self._cond:
            self._text = text
            self._version += 1
            self._cond.notify_all()

    def snapshot(self) -> tuple[int, str]:
        with self._cond:
            return self._version, self._text

    def wait_newer(self, version: int, timeout_s: float) -> tuple[int, str] | None:
        """The next version after `version`, or None after `timeout_s` (or when closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > version or self.closed, timeout_s)
            if self._version > version:
                return self._version, self._text
            return None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
