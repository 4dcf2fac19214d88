"""One call of a demo while it runs: placed in a background thread, watched
through its processes' ``--events`` files.

Every call client appends JSON lines to ``<call_dir>/<role>.events.jsonl``
(harness.calls.events): ``attempt``, ``media`` (first decoded frame),
``failed``, and once a second during the media window a ``stats`` row (the
cumulative RTP counters of the peer's timeline, the seconds of received audio
recorded so far and, for the app-like clients, the frame duration). The
watcher reads what was appended since its last look, so the demo has the
per-second figures of a call while it is still going on.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.calls import CallOutput, CallSettings, place_call
from harness.measure.timeline import per_second
from harness.spec.names import Role
from harness.testbed import Lab

DEFAULT_FRAME_MS = 20.0
Row = dict[str, Any]


@dataclass
class SideEvents:
    """What one side of a call said so far."""

    stats: list[Row] = field(default_factory=list)
    attempt_at: float | None = None
    media_at: float | None = None
    failed_at: float | None = None
    failure: str | None = None
    offset: int = 0  # bytes of the events file read so far

    def take(self, event: Row) -> None:
        kind, at = event.get("event"), event.get("monotonic")
        if not isinstance(at, int | float):
            return
        if kind == "stats":
            self.stats.append(event)
        elif kind == "attempt" and self.attempt_at is None:
            self.attempt_at = float(at)
        elif kind == "media" and self.media_at is None:
            self.media_at = float(at)
        elif kind == "failed" and self.failed_at is None:
            self.failed_at = float(at)
            self.failure = f"{event.get('error')} ({event.get('stage')})"

    @property
    def frame_ms(self) -> float:
        for row in self.stats:
            value = row.get("frame_ms")
            if isinstance(value, int | float) and value > 0:
                return float(value)
        return DEFAULT_FRAME_MS

    def recorded_at(self, monotonic: float) -> float | None:
        """Seconds of received audio recorded by `monotonic`, interpolated
        between the stats rows around it (None before the first row)."""
        points = [(float(r["monotonic"]), float(r["recorded_s"])) for r in self.stats
                  if isinstance(r.get("recorded_s"), int | float)]
        if not points or monotonic < points[0][0] - 1.0:
            return None
        if monotonic <= points[0][0]:
            return max(0.0, points[0][1] - (points[0][0] - monotonic))
        for (t1, r1), (t2, r2) in zip(points, points[1:], strict=False):
            if t1 <= monotonic <= t2:
                share = (monotonic - t1) / (t2 - t1) if t2 > t1 else 1.0
                return r1 + share * (r2 - r1)
        return points[-1][1]


class CallWatch:
    """Both sides' events of one call, read incrementally."""

    def __init__(self, call_dir: Path) -> None:
        self.call_dir = call_dir
        self.sides: dict[str, SideEvents] = {role.value: SideEvents() for role in Role}

    def events_file(self, role: str) -> Path:
        return self.call_dir / f"{role}.events.jsonl"

    def poll(self) -> None:
        for role, side in self.sides.items():
            _read_new(self.events_file(role), side)

    @property
    def media_at(self) -> float | None:
        """When both sides had decoded their first frame."""
        times = [s.media_at for s in self.sides.values()]
        return None if any(t is None for t in times) else max(t for t in times if t)

    @property
    def failure(self) -> tuple[float, str] | None:
        """The first failure either side declared, and which."""
        failed = [(s.failed_at, f"{role}: {s.failure}") for role, s in self.sides.items()
                  if s.failed_at is not None and s.failure is not None]
        return min(failed) if failed else None

    def rows(self, t0: float, rtt_ms: float | None = None) -> dict[str, list[Row]]:
        """Per-second rows of both directions on the demo's clock (seconds
        from `t0`): ``to_callee`` is what the callee heard of the caller."""
        caller, callee = self.sides[Role.CALLER], self.sides[Role.CALLEE]
        return {"to_callee": per_second(caller.stats, callee.stats, t0, rtt_ms,
                                        caller.frame_ms),
                "to_caller": per_second(callee.stats, caller.stats, t0, rtt_ms,
                                        callee.frame_ms)}


def _read_new(path: Path, side: SideEvents) -> None:
    """The complete lines appended to `path` since the last look."""
    try:
        with path.open("rb") as handle:
            handle.seek(side.offset)
            data = handle.read()
    except OSError:
        return
    end = data.rfind(b"\n")
    if end < 0:
        return
    side.offset += end + 1
    for line in data[: end + 1].splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                side.take(event)


class CallRun:
    """One call placed in a background thread (harness.calls.place_call), so
    that the demo can change the censor and draw its figures while it runs."""

    def __init__(self, lab: Lab, profile: str, strategy: str, settings: CallSettings,
                 call_dir: Path, on_done: Callable[[], None] | None = None) -> None:
        self.lab, self.profile, self.strategy = lab, profile, strategy
        self.settings, self.call_dir = settings, call_dir
        self.watch = CallWatch(call_dir)
        self.output: CallOutput | None = None
        self.error: str | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self._on_done = on_done
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"demo-call-{call_dir.name}")

    def start(self) -> None:
        self.call_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        try:
            self.output = place_call(self.lab, self.profile, self.strategy, self.settings,
                                     self.call_dir)
        except Exception as exc:  # shown on the page; the demo goes on
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended = time.monotonic()
            if self._on_done is not None:
                self._on_done()

    @property
    def done(self) -> bool:
        return self.started is not None and not self._thread.is_alive()

    @property
    def rtt_ms(self) -> float | None:
        """The call's end-to-end round trip, once both sides reported."""
        if self.output is None:
            return None
        values = [v for v in (self.output.caller.rtt_ms, self.output.callee.rtt_ms)
                  if v is not None]
        return max(values) if values else None

    def received_wav(self, role: str = Role.CALLEE) -> Path:
        return self.call_dir / f"{role}-received.wav"
