"""A call's record: what both peers saw, scored with the E-model, judged by
harness.measure.verdict, and built once, in one place (:func:`build_record`).

The record is the line results.json, the report and the JUnit file carry for
each call; nothing patches it after it is built."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.measure.emodel import estimate_call_quality
from harness.measure.peer import PeerReport, PeerTimeline
from harness.measure.timeline import call_events, per_second
from harness.measure.verdict import (
    DEGRADED_BELOW_MOS,
    CallEvidence,
    Quality,
    judge,
)
from harness.spec.policy import Expectation
from harness.spec.presets import IDEAL_LINK

# aiortc decodes 20 ms frames; a client that does not say otherwise is scored so.
DEFAULT_FRAME_MS = 20.0

__all__ = ["DEGRADED_BELOW_MOS", "CallIdentity", "CallRecord", "Direction", "PeerTimeline",
           "build_record", "direction_from", "skipped_record"]


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
    frames_received: int | None = None
    frames_expected: int | None = None
    window_s: float | None = None


@dataclass(frozen=True)
class CallIdentity:
    """Which call this is: where it ran, under which policy, with which client."""

    topology: str
    policy: str
    profile: str
    strategy: str
    run_id: str = ""
    call_id: str = ""
    link_profile: str = IDEAL_LINK  # the preset on the access link, or ideal


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
    # The earliest failure of either peer (see verdict.failure_kind), and when:
    # seconds from the call's start (when the harness started the peers).
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
    # The call profile (harness.spec.names.Profile), the path the caller's call
    # ended on (e.g. p2p, udp-reflector, tcp-relay; None for webrtc, whose
    # selected_pair says it) and every path change of either side:
    # {"role", "path", "at_s" (the call's clock), "reason"}.
    profile: str = "webrtc"
    path: str | None = None
    path_changes: list[dict[str, Any]] = field(default_factory=list)
    # In words, why the call failed, when the client said.
    failure_detail: str | None = None
    # The judge's evidence (harness.measure.verdict.Judgement): reasons,
    # every failure of both peers, and the deciding rules with their counts.
    judgement: dict[str, Any] = field(default_factory=dict)
    # Seconds the tunnel took to come up (tunnel strategies), included in setup_s.
    tunnel_up_s: float | None = None
    # Text messages over the app's chat server during the call (app-like
    # profiles): true when each side got all of the other's, false when some
    # side did not (or could not reach its chat server), None when not
    # measured; text_counts has each side's sent and received.
    text_ok: bool | None = None
    text_counts: dict[str, int | None] = field(default_factory=dict)
    # The link emulator's own lateness per impaired link direction during the
    # call (harness.measure.verdict.LinkFidelity); `missed` marks a link whose
    # figures are partly the machine's.
    link_fidelity: list[dict[str, Any]] = field(default_factory=list)
    # Where the judged call's wall time went, in seconds (harness.session.call_timing):
    # policy_load, health_check, counters, capture, tunnel_up, setup,
    # failure_wait, media, teardown, call, scoring, total.
    timing_s: dict[str, float | None] = field(default_factory=dict)
    # The link profile of the call's cell (harness.link.profile): `ideal`, or
    # the preset put on both directions of the access link, and what was put
    # there ({"preset", "impairment", "directions": {label: seed}}; {} for ideal).
    # The MOS bound that applied is the judgement's `mos_bound`.
    link_profile: str = IDEAL_LINK
    link_profile_applied: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def direction_from(receiver: PeerReport, sender: PeerReport, window_s: float | None = None,
                   rtt_ms: float | None = None) -> Direction:
    """Score the media that `receiver` got from `sender`: the E-model with the
    sender's frame duration and the call's end-to-end round trip."""
    loss, jitter = receiver.loss_pct, receiver.jitter_ms
    mos = r = None
    if receiver.connected and loss is not None:
        quality = estimate_call_quality(loss_pct=loss, jitter_ms=jitter, rtt_ms=rtt_ms,
                                        frame_ms=sender.frame_ms or DEFAULT_FRAME_MS)
        mos, r = round(quality.mos, 2), round(quality.r, 1)
    expected = (receiver.frames_expected(window_s) if window_s is not None
                and receiver.frame_ms is not None else None)
    return Direction(receiver=receiver.role, packets_received=receiver.packets_received,
                     packets_lost=receiver.packets_lost, loss_pct=loss, jitter_ms=jitter,
                     bitrate_kbps=receiver.received_bitrate_kbps, mos=mos, r_factor=r,
                     frames_received=receiver.frames_received if receiver.connected else None,
                     frames_expected=expected, window_s=receiver.window_s)


def build_record(identity: CallIdentity, evidence: CallEvidence,
                 expectation: Expectation | None, *,
                 faults: Sequence[Mapping[str, Any]] = (),
                 started_monotonic: float | None = None,
                 path: str | None = None,
                 path_changes: Sequence[Mapping[str, Any]] = (),
                 pesq: Mapping[str, Any] | None = None,
                 files: Mapping[str, str | None] | None = None,
                 tunnel_up_s: float | None = None,
                 setup_offset_s: float = 0.0,
                 link_profile_applied: Mapping[str, Any] | None = None) -> CallRecord:
    """The call's one record. A call is as good as its worse direction: the
    top-level loss, jitter and MOS are those of the worse of the two.
    ``setup_offset_s`` is what the call spent before its final attempt
    (tunnel bring-up, a failed first attempt): it is part of setup_s."""
    caller, callee = evidence.caller, evidence.callee
    rtt = _max_of(caller.rtt_ms, callee.rtt_ms)
    directions = [direction_from(caller, callee, evidence.window_s, rtt),
                  direction_from(callee, caller, evidence.window_s, rtt)]
    connected = caller.connected and callee.connected
    worst = _worst(directions) if connected else None
    judgement = judge(evidence, _quality(directions, evidence.window_s, worst), expectation)
    first = judgement.failures[0] if judgement.failures else None
    setup = _max_of(caller.setup_s, callee.setup_s) if connected else None
    counters = [asdict(c) for c in evidence.counters]
    fault_rows = [dict(f) for f in faults]
    return CallRecord(
        topology=identity.topology, policy=identity.policy, strategy=identity.strategy,
        profile=identity.profile, run_id=identity.run_id, call_id=identity.call_id,
        connected=connected,
        setup_s=round(setup + setup_offset_s, 3) if setup is not None else None,
        loss_pct=worst.loss_pct if worst else None,
        jitter_ms=_max_of(*(d.jitter_ms for d in directions)) if connected else None,
        rtt_ms=rtt, mos=worst.mos if worst else None,
        expected=expectation_dict(expectation), verdict=judgement.verdict,
        outcome=judgement.outcome, packets_sent=caller.packets_sent,
        packets_received=_sum(caller.packets_received, callee.packets_received),
        packets_lost=_sum(caller.packets_lost, callee.packets_lost),
        bitrate_kbps=worst.bitrate_kbps if worst else None,
        selected_pair=dict(caller.selected_pair) if caller.selected_pair else None,
        error=caller.error or callee.error, directions=directions,
        failure_kind=first.kind if first else None, failed_at_s=first.at_s if first else None,
        faults=fault_rows,
        timeline=_per_second(caller, callee, started_monotonic, rtt),
        timeline_reverse=_per_second(callee, caller, started_monotonic, rtt),
        events=call_events(evidence.timelines, fault_rows, first.kind if first else None,
                           first.at_s if first else None),
        censor_counters=counters, files=dict(files or {}),
        pesq=dict(pesq) if pesq is not None else None,
        path=path, path_changes=[dict(c) for c in path_changes],
        failure_detail=caller.detail or callee.detail,
        judgement=judgement.to_dict(), tunnel_up_s=tunnel_up_s,
        text_ok=text_outcome(caller, callee), text_counts=text_counts(caller, callee),
        link_fidelity=[asdict(f) for f in evidence.link_fidelity],
        link_profile=identity.link_profile,
        link_profile_applied=dict(link_profile_applied or {}),
    )


def text_outcome(caller: PeerReport, callee: PeerReport) -> bool | None:
    """Whether text worked both ways: False if either side says it did not,
    True if both say it did, else None (not measured, or a side silent)."""
    sides = (caller.text_ok, callee.text_ok)
    if False in sides:
        return False
    return True if sides == (True, True) else None


def text_counts(caller: PeerReport, callee: PeerReport) -> dict[str, int | None]:
    """Each side's text messages sent and received ({} when not measured)."""
    if caller.text_sent is None and callee.text_sent is None:
        return {}
    return {"caller_sent": caller.text_sent, "caller_received": caller.text_received,
            "callee_sent": callee.text_sent, "callee_received": callee.text_received}


def skipped_record(identity: CallIdentity, expectation: Expectation | None,
                   reason: str) -> CallRecord:
    """The record of a call that was not placed (a tool it needs is missing):
    it is no verdict, and it says why."""
    return CallRecord(
        topology=identity.topology, policy=identity.policy, strategy=identity.strategy,
        profile=identity.profile, run_id=identity.run_id, call_id=identity.call_id,
        link_profile=identity.link_profile, connected=False, setup_s=None, loss_pct=None,
        jitter_ms=None, rtt_ms=None, mos=None,
        expected=expectation_dict(expectation), verdict="skipped", outcome="skipped",
        judgement={"outcome": "skipped", "verdict": "skipped", "reasons": [reason],
                   "failures": [], "deciding_rules": []})


def expectation_dict(expectation: Expectation | None) -> dict[str, Any] | None:
    if expectation is None:
        return None
    return {k: v for k, v in asdict(expectation).items() if v not in (None, "", [])}


def _quality(directions: Sequence[Direction], window_s: float,
             worst: Direction | None) -> Quality:
    window_share = {d.receiver: _share(d.window_s, window_s) for d in directions}
    frame_share = {d.receiver: _share(d.frames_received, d.frames_expected)
                   for d in directions}
    return Quality(mos=worst.mos if worst else None, window_share=window_share,
                   frame_share=frame_share)


def _per_second(sender: PeerReport, receiver: PeerReport, t0: float | None,
                rtt_ms: float | None) -> list[dict[str, Any]]:
    """Per-second rows of one direction, seen by its receiver."""
    if t0 is None:
        return []
    return per_second([dict(r) for r in sender.timeline], [dict(r) for r in receiver.timeline],
                      t0, rtt_ms, sender.frame_ms or DEFAULT_FRAME_MS)


def _share(part: float | int | None, whole: float | int | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return round(part / whole, 3)


def _worst(directions: Sequence[Direction]) -> Direction:
    """The direction with the lower MOS; a direction without a MOS is the worse
    one (it could not be scored), never a perfect 5."""
    return min(directions, key=lambda d: d.mos if d.mos is not None else -1.0)


def _max_of(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _sum(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None
