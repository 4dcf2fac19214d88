"""A call's record: what both peers saw, combined into one line of results,
scored with the E-model and judged against the policy's expectation."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.measure.emodel import estimate_call_quality
from harness.measure.timeline import call_events, per_second
from harness.spec.policy import Expectation

# Below this MOS a connected call is labelled "degraded" in tables (R ≈ 70,
# where G.107 places "many users dissatisfied"). Verdicts use the policy's
# own bounds, not this label.
DEGRADED_BELOW_MOS = 3.6
# Failures after media flowed that end the call for its user.
DROPPED_CALL_FAILURES = frozenset({"media-stalled"})

# The error a call harness puts in a peer's place when it wrote no result.
NO_RESULT_ERRORS = ("peer-crashed-or-timed-out", "peer-killed")


@dataclass(frozen=True)
class PeerTimeline:
    """What the harness saw of one peer process, in seconds from the call's start
    (the moment the harness started the peers): when the peer began its attempt,
    decoded its first audio frame and declared a failure (from its ``--events``),
    when the process ended, and whether an injected fault killed it or the call's
    hard budget ran out first."""

    role: str
    wrote_result: bool
    attempt_s: float | None = None
    media_s: float | None = None
    failed_s: float | None = None
    exited_s: float | None = None
    killed_s: float | None = None
    stopped_at_budget: bool = False


@dataclass
class Direction:
    """One direction of media, as measured by its receiver."""

    receiver: str
    packets_received: int | None
    packets_lost: int | None
    loss_pct: float | None
    jitter_ms: float | None
    bitrate_kbps: float | None
    mos: float | None
    r_factor: float | None


@dataclass
class CallRecord:
    topology: str
    policy: str
    strategy: str
    connected: bool
    setup_s: float | None
    loss_pct: float | None
    jitter_ms: float | None
    rtt_ms: float | None
    mos: float | None
    expected: dict[str, Any] | None
    verdict: str
    outcome: str
    packets_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    bitrate_kbps: float | None = None
    selected_pair: dict[str, Any] | None = None
    error: str | None = None
    directions: list[Direction] = field(default_factory=list)
    run_id: str = ""
    call_id: str = ""
    finished_at: float = field(default_factory=time.time)
    # Why the call failed, if it did (see failure_kind()), and when: seconds from
    # the call's start (when the harness started the peers), the clock of `faults`.
    failure_kind: str | None = None
    failed_at_s: float | None = None
    # The injected faults (FaultEvent dicts): what was done, and when.
    faults: list[dict[str, Any]] = field(default_factory=list)
    # Per-second rows (harness.measure.timeline.per_second) for caller→callee
    # and callee→caller, and the call's events, on the clock of `faults`.
    timeline: list[dict[str, Any]] = field(default_factory=list)
    timeline_reverse: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # What each censor rule counted during the call: {"rule", "packets", "bytes"}.
    censor_counters: list[dict[str, Any]] = field(default_factory=list)
    # Files of the call, relative to the run's results directory.
    files: dict[str, str | None] = field(default_factory=dict)
    # PESQ-WB of what the callee heard against the reference: {"mos_lqo", "status"}.
    pesq: dict[str, Any] | None = None
    # The call profile (harness.calls.place: webrtc, signal-like, whatsapp-like,
    # telegram-like), the path the caller's call ended on (e.g. p2p, udp-reflector,
    # tcp-relay; None for webrtc, whose selected_pair says it) and every path change
    # of either side: {"role", "path", "at_s" (the call's clock), "reason"}.
    profile: str = "webrtc"
    path: str | None = None
    path_changes: list[dict[str, Any]] = field(default_factory=list)
    # In words, why the call failed, when the client said (app profiles: e.g. which
    # relay ports went unanswered and that there is no TCP fallback).
    failure_detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def direction_from(peer: dict[str, Any]) -> Direction:
    """Score the media that `peer` received."""
    loss, jitter = peer.get("loss_pct"), peer.get("jitter_ms")
    mos = r = None
    if peer.get("connected") and loss is not None:
        quality = estimate_call_quality(loss_pct=loss, jitter_ms=jitter,
                                        rtt_ms=peer.get("rtt_ms"))
        mos, r = round(quality.mos, 2), round(quality.r, 1)
    return Direction(receiver=peer.get("role", "?"),
                     packets_received=peer.get("packets_received"),
                     packets_lost=peer.get("packets_lost"), loss_pct=loss, jitter_ms=jitter,
                     bitrate_kbps=peer.get("received_bitrate_kbps"), mos=mos, r_factor=r)


def build_record(*, topology: str, policy: str, strategy: str, caller: dict[str, Any],
                 callee: dict[str, Any], expectation: Expectation | None,
                 timelines: Sequence[PeerTimeline] = (),
                 faults: Sequence[dict[str, Any]] = ()) -> CallRecord:
    """A call is as good as its worse direction: the top-level loss, jitter
    and MOS are those of the worse of the two; connected means media flowed
    both ways. The first failure, of either peer, gives failure_kind and
    failed_at_s. A call whose media stalled (nothing arrived for the stall
    timeout inside the media window) connected but dropped: its outcome is
    `fails`, whatever the MOS of the packets that did arrive says (the
    E-model only sees the packets received, not the silence after them)."""
    directions = [direction_from(caller), direction_from(callee)]
    connected = bool(caller.get("connected")) and bool(callee.get("connected"))
    worst = _worst(directions) if connected else None
    mos = worst.mos if worst else None
    record = CallRecord(
        topology=topology, policy=policy, strategy=strategy, connected=connected,
        setup_s=_max_of(caller.get("setup_s"), callee.get("setup_s")) if connected else None,
        loss_pct=worst.loss_pct if worst else None,
        jitter_ms=_max_of(*(d.jitter_ms for d in directions)) if connected else None,
        rtt_ms=_max_of(caller.get("rtt_ms"), callee.get("rtt_ms")),
        mos=mos, expected=_expected_dict(expectation), verdict="unjudged", outcome="unknown",
        packets_sent=caller.get("packets_sent"),
        packets_received=_sum(caller.get("packets_received"), callee.get("packets_received")),
        packets_lost=_sum(caller.get("packets_lost"), callee.get("packets_lost")),
        bitrate_kbps=worst.bitrate_kbps if worst else None,
        selected_pair=caller.get("selected_pair"),
        error=caller.get("error") or callee.get("error"), directions=directions,
    )
    record.failure_kind, record.failed_at_s = first_failure(caller, callee, timelines)
    working = connected and record.failure_kind not in DROPPED_CALL_FAILURES
    record.verdict = judge(working, mos, expectation)
    record.outcome = observed_outcome(working, mos)
    record.faults = [dict(f) for f in faults]
    record.events = call_events(timelines, record.faults, record.failure_kind,
                                record.failed_at_s)
    return record


def attach_timelines(record: CallRecord, caller: dict[str, Any], callee: dict[str, Any],
                     t0: float) -> None:
    """Per-second rows of both directions, each seen by its receiver."""
    caller_samples, callee_samples = caller.get("timeline", []), callee.get("timeline", [])
    record.timeline = per_second(caller_samples, callee_samples, t0, record.rtt_ms)
    record.timeline_reverse = per_second(callee_samples, caller_samples, t0, record.rtt_ms)


def failure_kind(peer: dict[str, Any], timeline: PeerTimeline | None = None) -> str | None:
    """What went wrong for one peer: its error code ("setup-timeout",
    "media-stalled", "ice-failed", ...; "internal-error" for any internal
    error), "peer-killed" when an injected fault killed it before it wrote its
    result, "peer-crashed" when it wrote none for another reason, or None when
    it reported no failure."""
    if timeline is not None and not timeline.wrote_result:
        return "peer-killed" if timeline.killed_s is not None else "peer-crashed"
    error = peer.get("error")
    if not error:
        return None
    if error in NO_RESULT_ERRORS:
        return "peer-killed" if error == "peer-killed" else "peer-crashed"
    error = str(error)
    return "internal-error" if error.startswith("internal-error") else error


def first_failure(caller: dict[str, Any], callee: dict[str, Any],
                  timelines: Sequence[PeerTimeline] = ()) -> tuple[str | None, float | None]:
    """The earliest failure of the two peers: (kind, seconds from the call's start).

    With a timeline, a failure's time is on the call's clock: the kill, the
    peer's declared failure (its events) or, for a peer that wrote nothing,
    when its process ended. Without one, the peer's own failed_at_s (seconds
    from its attempt's start) stands in."""
    by_role = {t.role: t for t in timelines}
    failures: list[tuple[float, int, str]] = []
    for order, peer in enumerate((caller, callee)):
        timeline = by_role.get(str(peer.get("role")))
        kind = failure_kind(peer, timeline)
        if kind is None:
            continue
        when = _failure_time(peer, timeline)
        failures.append((when if when is not None else float("inf"), order, kind))
    if not failures:
        return None, None
    when, _, kind = min(failures)
    return kind, (None if when == float("inf") else round(when, 3))


def _failure_time(peer: dict[str, Any], timeline: PeerTimeline | None) -> float | None:
    if timeline is None:
        value = peer.get("failed_at_s")
        return float(value) if value is not None else None
    if not timeline.wrote_result:
        return timeline.killed_s if timeline.killed_s is not None else timeline.exited_s
    return timeline.failed_s if timeline.failed_s is not None else timeline.exited_s


def judge(connected: bool, mos: float | None, expectation: Expectation | None) -> str:
    """'pass' when the call did what the policy file says it should."""
    if expectation is None:
        return "no-expectation"
    if expectation.outcome == "fails":
        ok = not connected
    elif not connected or mos is None:
        ok = False
    elif expectation.outcome == "connects":
        ok = expectation.min_mos is None or mos >= expectation.min_mos
    else:
        assert expectation.max_mos is not None
        ok = mos < expectation.max_mos
    return "pass" if ok else "fail"


def observed_outcome(connected: bool, mos: float | None) -> str:
    if not connected:
        return "fails"
    if mos is not None and mos < DEGRADED_BELOW_MOS:
        return "degraded"
    return "connects"


def _worst(directions: list[Direction]) -> Direction:
    return min(directions, key=lambda d: d.mos if d.mos is not None else 5.0)


def _max_of(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _sum(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _expected_dict(expectation: Expectation | None) -> dict[str, Any] | None:
    if expectation is None:
        return None
    raw = {k: v for k, v in asdict(expectation).items() if v not in (None, "")}
    return raw
