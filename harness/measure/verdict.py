"""Where a call's fate is decided: what the call showed (its outcome), whether
that is what the policy declared (its verdict), and the evidence for both.

Outcomes:

- ``connects``: the whole call worked. Both peers reported; media covered at
  least MIN_WINDOW_SHARE of the window in both directions; each receiver
  decoded at least MIN_FRAME_SHARE of the frames a full window carries; no
  failure after media started; E-model MOS at or above DEGRADED_BELOW_MOS;
  PESQ at or above PESQ_FLOOR wherever audio was recorded (unless the
  callee's jitter buffer time-scaled the audio: see TIME_SCALED_MIN_MS).
- ``degraded``: media flowed for the whole window, but the call sounds
  broken: MOS under DEGRADED_BELOW_MOS, too few frames decoded, or PESQ under
  its floor.
- ``fails``: no usable call: it never set up in both directions, or it
  dropped (any failure once media had started).
- ``error``: the harness or a tool broke, so the call cannot be judged: a
  peer crashed or wrote no result, an internal error, a peer still running
  at the call's hard budget, a direction without figures, a dead lab service
  or a missing tool. An error is never a pass.

Verdicts: ``pass``, ``fail``, ``error``, ``no-expectation``. A ``fails`` or
``degraded`` expectation passes only when the observed outcome matches AND at
least one of its ``decided_by`` rules counted packets during the call (or,
for ``link``, the topology impairs a link): a failure nobody on the censor
caused is an ``error``, not a pass.

An expectation may declare a rare outcome (``rarely``): one the policy's own
rules give a stated small share of calls, e.g. a probabilistic drop that
leaves a client no port at all. A call showing it passes only as that
outcome's own expectation would (deciding rule counted, failure kind
accepted), and its judgement is marked ``rare``.

A ``connects`` expectation's ``min_mos`` is written for ideal links; on a
link profile (a preset on the access link) the bound is resolved once, here
(:func:`resolve_mos_bound`, from harness.measure.link_bound): the lower of
the declared bound and what the E-model allows on that link, and the
judgement says which applied and why (``mos_bound``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.measure.link_bound import MosBound, mos_bound
from harness.measure.peer import PeerReport, PeerTimeline
from harness.spec.impairment import Impairment
from harness.spec.policy import LINK_CAUSE, Expectation
from harness.spec.presets import IDEAL_LINK

# One bound for every degraded cell: MOS 3.0 is R ≈ 58, inside ITU-T G.107
# Annex B's "nearly all users dissatisfied" band (R 50-60).
DEGRADED_BELOW_MOS = 3.0
# Media must cover this share of the window in each direction ("the whole
# window", less the receiver's own start-up: its first frame starts the
# window, and its stall timer ends a broken one).
MIN_WINDOW_SHARE = 0.9
# Frames decoded against the frames a full window carries at the sender's
# frame duration: below this, a tenth of the speech is missing, which a
# listener hears as dropouts whatever the E-model says of the packets.
MIN_FRAME_SHARE = 0.9
# PESQ-WB MOS-LQO (P.862.2) of what the callee heard: under 3.0 is "fair" or
# worse on the ACR scale (P.800), not a working call.
PESQ_FLOOR = 3.0
# A receiver that time-scales its playout (WebRTC NetEq: acceleration and
# deceleration, reported by a browser side) shifts the audio's delay inside
# speech; PESQ aligns once per utterance and scores the shift as distortion.
# Measured: a clean Chromium-to-Chromium call whose callee removed 3,466
# samples (72 ms) showed exactly that 72 ms step in its delay and PESQ 2.87,
# while the same sender heard by the aiortc client, which does not time-scale,
# scored 3.67. From one frame of time-scaling on, PESQ under its floor is
# recorded and explained but does not decide: the E-model and the frames
# decoded still do.
TIME_SCALED_MIN_MS = 20.0

OUTCOMES = ("connects", "degraded", "fails", "error")
# Failure kinds that mean the harness or a tool broke, not the network.
HARNESS_FAILURES = frozenset({
    "peer-crashed", "internal-error", "bad-audio-file", "terminated", "total-timeout",
    "tool-missing",
})
# What a harness puts in a peer's place when it wrote no result.
NO_RESULT_ERRORS = ("peer-crashed-or-timed-out", "peer-killed")


@dataclass(frozen=True)
class RuleCount:
    """What one censor rule counted during the call."""

    rule: str
    packets: int
    bytes: int


@dataclass(frozen=True)
class LinkFidelity:
    """How late the link emulator itself was on one impaired link direction
    during the call (harness.link.backend.LinkLateness over the call's
    window): its own error, not the impairment it was asked for. `missed`
    says it was late beyond its tolerance for more than 1 % of the packets,
    so the call's figures are partly the emulator's, not the network's."""

    link: str
    packets: int
    p99_late_us: int
    max_late_us: int
    tolerance_us: int
    over_tolerance: int
    steal_pct: float | None
    missed: bool

    def describe(self) -> str:
        steal = "" if self.steal_pct is None else f", hypervisor steal {self.steal_pct:.1f} %"
        return (f"{self.link}: {self.over_tolerance} of {self.packets} packets later than "
                f"{self.tolerance_us} us (p99 {self.p99_late_us} us{steal})")


@dataclass(frozen=True)
class PeerFailure:
    role: str
    kind: str
    at_s: float | None
    after_media: bool


@dataclass(frozen=True)
class CallEvidence:
    """Everything the judge looks at, gathered by harness.session.

    ``window_s`` is the media window the call asked for; ``pesq_mos`` the
    PESQ of the callee's received audio (None where audio was not recorded);
    ``killed_by_fault`` the roles an injected fault killed on purpose;
    ``harness_error`` what broke outside the peers (a dead service, a missing
    tool); ``link_impaired`` whether the topology impairs any link;
    ``link_fidelity`` how late the link emulator was on each of them."""

    caller: PeerReport
    callee: PeerReport
    window_s: float
    timelines: Sequence[PeerTimeline] = ()
    counters: Sequence[RuleCount] = ()
    pesq_mos: float | None = None
    killed_by_fault: frozenset[str] = frozenset()
    harness_error: str | None = None
    link_impaired: bool = False
    # The userspace link emulator's own lateness on each impaired link
    # direction during the call (empty: no link impaired, or netem).
    link_fidelity: Sequence[LinkFidelity] = ()
    # The link profile the call ran on (harness.link.profile) and the one-way
    # impairment it put on each direction of the access link (None: ideal).
    link_profile: str = IDEAL_LINK
    link_profile_impairment: Impairment | None = None

    def peers(self) -> tuple[PeerReport, PeerReport]:
        return self.caller, self.callee

    def timeline_of(self, role: str) -> PeerTimeline | None:
        return next((t for t in self.timelines if t.role == role), None)


@dataclass(frozen=True)
class Quality:
    """The scored figures the judge needs: the worse direction's MOS, and per
    receiver the share of the window covered and of frames decoded."""

    mos: float | None
    window_share: Mapping[str, float | None] = field(default_factory=dict)
    frame_share: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement:
    outcome: str
    verdict: str
    # In words, what decided the outcome and the verdict, most important first.
    reasons: tuple[str, ...]
    failures: tuple[PeerFailure, ...]
    # The expectation's decided_by rules and what each counted during the call.
    deciding_rules: tuple[RuleCount, ...] = ()
    # The call passed as the rare outcome its expectation declares.
    rare: bool = False
    # The MOS bound a connects expectation was held to, and why (None otherwise).
    mos_bound: MosBound | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "verdict": self.verdict,
                "reasons": list(self.reasons),
                "failures": [asdict(f) for f in self.failures],
                "deciding_rules": [asdict(c) for c in self.deciding_rules],
                "rare": self.rare,
                **({"mos_bound": self.mos_bound.to_dict()} if self.mos_bound else {})}


def failure_kind(peer: PeerReport, timeline: PeerTimeline | None = None) -> str | None:
    """What went wrong for one peer: its error code ("setup-timeout",
    "media-stalled", ...; "internal-error" for any internal error),
    "peer-killed" when an injected fault killed it before it wrote its result,
    "peer-crashed" when it wrote none for another reason, or None."""
    if timeline is not None and not timeline.wrote_result:
        return "peer-killed" if timeline.killed_s is not None else "peer-crashed"
    if not peer.wrote_result and peer.error not in (None, *NO_RESULT_ERRORS):
        return peer.error
    if not peer.wrote_result or peer.error in NO_RESULT_ERRORS:
        return "peer-killed" if peer.error == "peer-killed" else "peer-crashed"
    if not peer.error:
        return None
    return "internal-error" if peer.error.startswith("internal-error") else peer.error


def peer_failures(evidence: CallEvidence) -> tuple[PeerFailure, ...]:
    """Every failure of both peers, earliest first (unknown times last)."""
    failures = []
    for peer in evidence.peers():
        timeline = evidence.timeline_of(peer.role)
        kind = failure_kind(peer, timeline)
        if kind is None:
            continue
        at = _failure_time(peer, timeline)
        failures.append(PeerFailure(peer.role, kind, at, _after_media(peer, timeline, at)))
    return tuple(sorted(failures, key=lambda f: (f.at_s is None, f.at_s or 0.0)))


def judge(evidence: CallEvidence, quality: Quality,
          expectation: Expectation | None) -> Judgement:
    failures = peer_failures(evidence)
    outcome, reasons = observe(evidence, quality, failures)
    deciding = _deciding_rules(evidence, expectation)
    bound = resolve_mos_bound(expectation, evidence)
    verdict, why = _verdict(outcome, quality, expectation, deciding, evidence, failures, bound)
    rare = expectation.rare_expectation() if expectation is not None else None
    is_rare = False
    if verdict == "fail" and rare is not None and outcome == rare.outcome:
        # The policy's own mechanism gives this outcome to a stated share of
        # calls: judged by the rare expectation, its cause shown like any other.
        assert expectation is not None and expectation.rarely is not None
        rare_deciding = _deciding_rules(evidence, rare)
        rare_verdict, rare_why = _verdict(outcome, quality, rare, rare_deciding, evidence,
                                          failures)
        if rare_verdict != "fail":
            is_rare = rare_verdict == "pass"
            said = (f"the rare outcome the policy declares (about "
                    f"{expectation.rarely.share_pct:g} % of calls): {outcome}")
            verdict, why, deciding = rare_verdict, [said, *rare_why, *why], rare_deciding
    verdict, why = _emulator_check(verdict, why, evidence)
    return Judgement(outcome, verdict, tuple(why + reasons), failures, deciding, rare=is_rare,
                     mos_bound=bound)


def resolve_mos_bound(expectation: Expectation | None,
                      evidence: CallEvidence) -> MosBound | None:
    """The MOS bound of a connects expectation on the call's link profile:
    the declared min_mos on ideal links, else the lower of it and what the
    E-model allows on the link for each direction's sender frame and the
    call's window (harness.measure.link_bound). None for other expectations."""
    if expectation is None or expectation.outcome != "connects":
        return None
    frames = [evidence.caller.frame_ms, evidence.callee.frame_ms]
    return mos_bound(expectation.min_mos, evidence.link_profile,
                     evidence.link_profile_impairment, frames, evidence.window_s)


def _emulator_check(verdict: str, why: list[str], evidence: CallEvidence
                    ) -> tuple[str, list[str]]:
    """A call on links whose emulator missed its tolerance measured the
    machine as much as the network: a verdict against the expectation is
    then the harness's error, never a fail blamed on the censor; a pass
    stands, marked."""
    missed = [f for f in evidence.link_fidelity if f.missed]
    if not missed:
        return verdict, why
    said = "the link emulator missed its tolerance: " + "; ".join(f.describe() for f in missed)
    if verdict == "fail":
        return "error", [said + " (the figures are partly the machine's; rerun on an idle "
                         "machine)"] + why
    return verdict, why + [said]


def observe(evidence: CallEvidence, quality: Quality,
            failures: Sequence[PeerFailure]) -> tuple[str, list[str]]:
    """The outcome the call showed, and why."""
    broken = _harness_broke(evidence, failures)
    if broken:
        return "error", broken
    caller, callee = evidence.peers()
    if not (caller.connected and callee.connected):
        silent = [p.role for p in evidence.peers() if not p.connected]
        kinds = ", ".join(f"{f.role} {f.kind}" for f in failures) or "no failure reported"
        return "fails", [f"no media at the {' and '.join(silent)} ({kinds})"]
    dropped = [f for f in failures if f.after_media]
    if dropped:
        return "fails", ["dropped after media started: " + ", ".join(
            f"{f.role} {f.kind} at {_secs(f.at_s)}" for f in dropped)]
    if failures:  # connected both ways, yet a failure before media: say so, it is odd
        return "error", ["a peer reported a failure before media yet connected: " + ", ".join(
            f"{f.role} {f.kind}" for f in failures)]
    short = {role: share for role, share in quality.window_share.items()
             if share is not None and share < MIN_WINDOW_SHARE}
    if short:
        return "error", ["media covered too little of the window with no failure reported: "
                         + _shares(short)]
    missing = [p.role for p in evidence.peers() if p.loss_pct is None]
    if missing or quality.mos is None:
        return "error", [f"no loss figures from the {' and '.join(missing) or 'peers'}: "
                         "the call cannot be scored"]
    return _quality_outcome(evidence, quality)


def _quality_outcome(evidence: CallEvidence, quality: Quality) -> tuple[str, list[str]]:
    reasons = []
    assert quality.mos is not None
    if quality.mos < DEGRADED_BELOW_MOS:
        reasons.append(f"E-model MOS {quality.mos:.2f} < {DEGRADED_BELOW_MOS}")
    few = {role: share for role, share in quality.frame_share.items()
           if share is not None and share < MIN_FRAME_SHARE}
    if few:
        reasons.append(f"frames decoded below {MIN_FRAME_SHARE:.0%} of a full window: "
                       + _shares(few))
    notes = []
    if evidence.pesq_mos is not None and evidence.pesq_mos < PESQ_FLOOR:
        scaled_ms = evidence.callee.time_scaled_ms
        if scaled_ms is not None and scaled_ms >= TIME_SCALED_MIN_MS:
            notes.append(f"PESQ {evidence.pesq_mos:.2f} < {PESQ_FLOOR} not judged: the "
                         f"callee's jitter buffer time-scaled {scaled_ms:.0f} ms of the audio, "
                         "which PESQ's alignment scores as distortion")
        else:
            reasons.append(f"PESQ {evidence.pesq_mos:.2f} < {PESQ_FLOOR}")
    if reasons:
        return "degraded", reasons + notes
    return "connects", [f"media both ways for the whole window, MOS {quality.mos:.2f}", *notes]


def _harness_broke(evidence: CallEvidence,
                   failures: Sequence[PeerFailure]) -> list[str]:
    reasons = []
    if evidence.harness_error:
        reasons.append(evidence.harness_error)
    for failure in failures:
        if failure.kind == "peer-killed" and failure.role in evidence.killed_by_fault:
            continue  # the injected fault did it, on purpose
        if failure.kind in HARNESS_FAILURES or failure.kind == "peer-killed":
            reasons.append(f"{failure.role}: {failure.kind}")
    for timeline in evidence.timelines:
        if timeline.stopped_at_budget:
            reasons.append(f"{timeline.role} was still running at the call's hard budget "
                           "and was stopped")
    return reasons


def _verdict(outcome: str, quality: Quality, expectation: Expectation | None,
             deciding: Sequence[RuleCount], evidence: CallEvidence,
             failures: Sequence[PeerFailure],
             bound: MosBound | None = None) -> tuple[str, list[str]]:
    if outcome == "error":
        return "error", ["could not be judged"]
    if expectation is None:
        return "no-expectation", []
    if expectation.outcome == "connects":
        on_link = [] if bound is None or bound.source == "declared" else [bound.why]
        if (outcome == "degraded" and on_link and bound is not None
                and bound.min_mos is not None and quality.mos is not None
                and quality.mos >= bound.min_mos):
            # The link's own loss sample explains the degraded sound: the
            # E-model at its tail loss allows this MOS, so nothing points at
            # the censor (whose rules this cell says do not act).
            return "pass", [f"degraded by the link alone: MOS {quality.mos} is within the "
                            f"link's bound {bound.min_mos}", *on_link]
        if outcome != "connects":
            return "fail", [f"expected connects, observed {outcome}", *on_link]
        min_mos = expectation.min_mos if bound is None else bound.min_mos
        if min_mos is not None and (quality.mos or 0.0) < min_mos:
            return "fail", [f"MOS {quality.mos} < min_mos {min_mos}", *on_link]
        return "pass", []  # the bound and why it applied: Judgement.mos_bound
    if outcome != expectation.outcome:
        return "fail", [f"expected {expectation.outcome}, observed {outcome}"]
    if expectation.accepts:
        kinds = {f.kind for f in failures}
        if not kinds & set(expectation.accepts):
            return "fail", [f"failure kinds {sorted(kinds) or 'none'} are not among the "
                            f"accepted {expectation.accepts}"]
    if not _cause_shown(expectation, deciding, evidence):
        counted = ", ".join(f"{c.rule}={c.packets}" for c in deciding) or "none"
        return "error", [f"{outcome}, but no deciding rule counted a packet ({counted}): "
                         "the censor did not cause it"]
    return "pass", [_cause_text(expectation, deciding, evidence)]


def _cause_shown(expectation: Expectation, deciding: Sequence[RuleCount],
                 evidence: CallEvidence) -> bool:
    if any(c.packets > 0 for c in deciding):
        return True
    return LINK_CAUSE in expectation.decided_by and evidence.link_impaired


def _cause_text(expectation: Expectation, deciding: Sequence[RuleCount],
                evidence: CallEvidence) -> str:
    parts = [f"{c.rule} counted {c.packets} packets" for c in deciding if c.packets > 0]
    if LINK_CAUSE in expectation.decided_by and evidence.link_impaired:
        parts.append("the topology's link impairment")
    return "decided by " + "; ".join(parts)


def _deciding_rules(evidence: CallEvidence,
                    expectation: Expectation | None) -> tuple[RuleCount, ...]:
    """The decided_by rules with what each counted: every counter of a rule
    (its comment is the rule id, or 'id: part') adds up."""
    if expectation is None:
        return ()
    result = []
    for rule in expectation.decided_by:
        if rule == LINK_CAUSE:
            continue
        mine = [c for c in evidence.counters
                if c.rule == rule or c.rule.startswith(rule + ":")]
        result.append(RuleCount(rule, sum(c.packets for c in mine),
                                sum(c.bytes for c in mine)))
    return tuple(result)


def _failure_time(peer: PeerReport, timeline: PeerTimeline | None) -> float | None:
    if timeline is None:
        return peer.failed_at_s
    if not timeline.wrote_result:
        return timeline.killed_s if timeline.killed_s is not None else timeline.exited_s
    return timeline.failed_s if timeline.failed_s is not None else timeline.exited_s


def _after_media(peer: PeerReport, timeline: PeerTimeline | None, at_s: float | None) -> bool:
    """Whether the failure came once this peer had decoded media: by the
    harness's clock when it has one, else by what the peer reported."""
    if timeline is not None and timeline.media_s is not None:
        return at_s is None or at_s >= timeline.media_s
    return peer.connected


def _secs(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"


def _shares(shares: Mapping[str, float | None]) -> str:
    return ", ".join(f"{role} {share:.0%}" for role, share in shares.items()
                     if share is not None)
