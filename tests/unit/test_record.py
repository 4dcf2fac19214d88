"""Call records and the judge: both directions scored, the worse one counts;
an outcome for every way a call can end; a verdict that needs its cause."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from harness.measure.peer import PeerReport, PeerTimeline
from harness.measure.record import CallIdentity, CallRecord, build_record
from harness.measure.verdict import (
    DEGRADED_BELOW_MOS,
    HARNESS_FAILURES,
    MIN_FRAME_SHARE,
    PESQ_FLOOR,
    CallEvidence,
    LinkFidelity,
    RuleCount,
)
from harness.spec.policy import Expectation, RareOutcome

WINDOW_S = 6.0
IDENTITY = CallIdentity(topology="t", policy="p", profile="webrtc", strategy="direct")
CONNECTS = Expectation("connects", basis="mechanism", min_mos=4.0)
FAILS = Expectation("fails", basis="mechanism", decided_by=["stun-drop"])
DEGRADED = Expectation("degraded", basis="mechanism", decided_by=["police"])
# Kinds a network (or a censor) can cause, before media or after it.
NETWORK_FAILURES = ["setup-timeout", "ice-failed", "dtls-failed", "no-local-candidates",
                    "signalling-unreachable", "signalling-closed", "tunnel-failed"]
DROPS = ["media-stalled", "call-dropped", "relay-lost", "peer-hung-up"]


def peer(role: str, connected: bool = True, loss: float = 0.0, **extra: Any) -> PeerReport:
    """A side that worked: 300 frames of 20 ms over a 6 s window."""
    values: dict[str, Any] = {
        "connected": connected, "loss_pct": loss if connected else None, "jitter_ms": 1.0,
        "rtt_ms": 2.0, "setup_s": 0.5 if connected else None,
        "packets_received": 300 if connected else None, "packets_lost": 0,
        "frames_received": 300 if connected else 0, "frame_ms": 20.0,
        "window_s": WINDOW_S if connected else None}
    values.update(extra)
    return PeerReport(role=role, **values)


def record(caller: PeerReport | None = None, callee: PeerReport | None = None,
           expectation: Expectation | None = CONNECTS, **evidence: Any) -> CallRecord:
    facts = CallEvidence(caller=caller or peer("caller"), callee=callee or peer("callee"),
                         window_s=WINDOW_S, **evidence)
    return build_record(IDENTITY, facts, expectation)


def counted(rule: str, packets: int = 12) -> list[RuleCount]:
    return [RuleCount(rule, packets, packets * 100)]


# ------------------------------------------------------------------ scoring


def test_worse_direction_sets_the_call_quality() -> None:
    rec = record(peer("caller", loss=1.0), peer("callee", loss=40.0), expectation=None)
    assert rec.connected and rec.loss_pct == 40.0
    caller_mos, callee_mos = (d.mos for d in rec.directions)
    assert caller_mos is not None and callee_mos is not None
    assert rec.mos == callee_mos < caller_mos
    assert rec.verdict == "no-expectation"


def test_the_emodel_gets_the_senders_frame_duration() -> None:
    # 60 ms frames add 40 ms of packetisation delay (one frame) over 20 ms ones:
    # the same loss scores lower.
    twenty = record(peer("caller"), peer("callee"), expectation=None)
    sixty = record(peer("caller", frame_ms=60.0, frames_received=100),
                   peer("callee", frame_ms=60.0, frames_received=100), expectation=None)
    assert twenty.mos is not None and sixty.mos is not None
    assert sixty.directions[0].r_factor < twenty.directions[0].r_factor  # type: ignore[operator]
    assert sixty.directions[0].frames_expected == 100


def test_a_direction_without_figures_is_an_error_not_a_perfect_score() -> None:
    rec = record(callee=peer("callee", loss_pct=None))
    assert rec.outcome == "error" and rec.verdict == "error"
    assert "no loss figures from the callee" in rec.judgement["reasons"][-1]


def test_a_clean_call_connects_and_passes() -> None:
    rec = record()
    assert rec.outcome == "connects" and rec.verdict == "pass", rec.judgement
    assert rec.mos is not None and rec.mos >= 4.0


def test_setup_includes_what_came_before_the_final_attempt() -> None:
    facts = CallEvidence(peer("caller"), peer("callee"), WINDOW_S)
    rec = build_record(IDENTITY, facts, CONNECTS, tunnel_up_s=2.6, setup_offset_s=2.6)
    assert rec.setup_s == pytest.approx(0.5 + 2.6) and rec.tunnel_up_s == 2.6


# ------------------------------------------------------------------ every failure kind


@pytest.mark.parametrize("kind", DROPS)
def test_a_call_that_dropped_after_media_is_not_connected(kind: str) -> None:
    rec = record(caller=peer("caller", error=kind, failed_at_s=3.0))
    assert rec.outcome == "fails" and rec.verdict == "fail", rec.judgement
    assert rec.failure_kind == kind
    assert any("dropped after media started" in r for r in rec.judgement["reasons"])


@pytest.mark.parametrize("kind", NETWORK_FAILURES)
def test_a_call_that_never_set_up_fails(kind: str) -> None:
    rec = record(peer("caller", connected=False, error=kind),
                 peer("callee", connected=False, error=kind), expectation=FAILS,
                 counters=counted("stun-drop"))
    assert rec.outcome == "fails" and rec.verdict == "pass", rec.judgement
    assert rec.failure_kind == kind
    assert rec.judgement["deciding_rules"] == [{"rule": "stun-drop", "packets": 12,
                                                "bytes": 1200}]


@pytest.mark.parametrize("kind", sorted(HARNESS_FAILURES))
def test_a_harness_failure_is_an_error_whatever_was_expected(kind: str) -> None:
    error = "internal-error: KeyError" if kind == "internal-error" else kind
    for expectation in (CONNECTS, FAILS, DEGRADED):
        rec = record(peer("caller", connected=False, error=error), peer("callee", False),
                     expectation=expectation, counters=counted("stun-drop"))
        assert rec.outcome == "error" and rec.verdict == "error", (kind, rec.judgement)


def test_a_crashed_peer_is_an_error_even_where_failure_was_expected() -> None:
    crashed = PeerReport.absent("callee", "peer-crashed-or-timed-out")
    timelines = [PeerTimeline("caller", True, exited_s=5.0),
                 PeerTimeline("callee", False, exited_s=1.0)]
    rec = record(peer("caller", connected=False, error="peer-hung-up"), crashed,
                 expectation=FAILS, counters=counted("stun-drop"), timelines=timelines)
    assert rec.outcome == "error" and rec.verdict == "error"
    assert "callee: peer-crashed" in rec.judgement["reasons"]


def test_a_peer_killed_by_an_injected_fault_is_a_dropped_call() -> None:
    killed = PeerReport.absent("callee", "peer-killed")
    timelines = [PeerTimeline("caller", True, media_s=1.0, failed_s=4.5, exited_s=5.0),
                 PeerTimeline("callee", False, media_s=1.0, exited_s=2.6, killed_s=2.5)]
    rec = record(peer("caller", error="media-stalled"), killed, timelines=timelines,
                 killed_by_fault=frozenset({"callee"}))
    assert rec.outcome == "fails" and rec.verdict == "fail", rec.judgement
    assert (rec.failure_kind, rec.failed_at_s) == ("peer-killed", 2.5)


def test_a_peer_killed_without_a_fault_is_an_error() -> None:
    timelines = [PeerTimeline("caller", True, exited_s=5.0),
                 PeerTimeline("callee", False, exited_s=2.6, killed_s=2.5)]
    rec = record(peer("caller"), PeerReport.absent("callee", "peer-killed"),
                 timelines=timelines)
    assert rec.outcome == "error"


def test_every_failure_of_both_peers_is_kept() -> None:
    # One peer's hang-up must not hide the other's stall.
    timelines = [PeerTimeline("caller", True, media_s=0.5, failed_s=3.0, exited_s=3.1),
                 PeerTimeline("callee", True, media_s=0.5, failed_s=4.0, exited_s=4.1)]
    rec = record(peer("caller", error="peer-hung-up"), peer("callee", error="media-stalled"),
                 timelines=timelines)
    kinds = [(f["role"], f["kind"]) for f in rec.judgement["failures"]]
    assert kinds == [("caller", "peer-hung-up"), ("callee", "media-stalled")]
    assert rec.outcome == "fails"


def test_a_peer_still_running_at_the_budget_is_an_error() -> None:
    timelines = [PeerTimeline("caller", True, exited_s=40.0, stopped_at_budget=True),
                 PeerTimeline("callee", True, exited_s=7.0)]
    rec = record(timelines=timelines)
    assert rec.outcome == "error" and rec.verdict == "error"


def test_a_dead_service_is_an_error() -> None:
    rec = record(peer("caller", False, error="setup-timeout"),
                 peer("callee", False, error="setup-timeout"), expectation=FAILS,
                 counters=counted("stun-drop"), harness_error="coturn relay did not restart")
    assert rec.outcome == "error" and rec.verdict == "error"
    assert rec.judgement["reasons"][-1] == "coturn relay did not restart"


# ------------------------------------------------------------------ connects means the whole call


def test_one_way_media_is_not_connected() -> None:
    rec = record(callee=peer("callee", connected=False, error="setup-timeout"))
    assert not rec.connected and rec.mos is None and rec.verdict == "fail"


def test_too_few_frames_decoded_is_degraded_not_connected() -> None:
    frames = int(300 * MIN_FRAME_SHARE) - 1
    rec = record(callee=peer("callee", frames_received=frames), expectation=CONNECTS)
    assert rec.outcome == "degraded" and rec.verdict == "fail"
    assert any("frames decoded" in r for r in rec.judgement["reasons"])


def test_pesq_under_its_floor_is_degraded() -> None:
    rec = record(pesq_mos=PESQ_FLOOR - 0.5)
    assert rec.outcome == "degraded" and rec.verdict == "fail"
    assert record(pesq_mos=PESQ_FLOOR + 0.5).outcome == "connects"


def _playout(removed: int, inserted: int) -> MappingProxyType[str, Any]:
    return MappingProxyType({"playout": {"removedSamplesForAcceleration": removed,
                                         "insertedSamplesForDeceleration": inserted,
                                         "concealedSamples": 0}})


def test_pesq_does_not_decide_for_a_callee_that_time_scaled_its_playout() -> None:
    # 3,466 + 360 samples at 48 kHz: 80 ms stretched or compressed.
    callee = peer("callee", extra=_playout(3466, 360))
    assert callee.time_scaled_ms is not None and round(callee.time_scaled_ms) == 80
    rec = record(callee=callee, pesq_mos=PESQ_FLOOR - 0.2)
    assert rec.outcome == "connects" and rec.verdict == "pass"
    note = [r for r in rec.judgement["reasons"] if "not judged" in r]
    assert note and "80 ms" in note[0], rec.judgement["reasons"]


def test_pesq_still_decides_under_one_frame_of_time_scaling() -> None:
    callee = peer("callee", extra=_playout(400, 300))  # 14.6 ms: under one frame
    rec = record(callee=callee, pesq_mos=PESQ_FLOOR - 0.2)
    assert rec.outcome == "degraded" and rec.verdict == "fail"


def test_the_callers_time_scaling_does_not_excuse_the_callees_pesq() -> None:
    rec = record(caller=peer("caller", extra=_playout(5000, 0)), pesq_mos=PESQ_FLOOR - 0.2)
    assert rec.outcome == "degraded"


def test_time_scaling_with_too_much_loss_is_still_degraded_by_the_e_model() -> None:
    callee = peer("callee", loss=30.0, extra=_playout(3466, 360))
    rec = record(peer("caller", loss=30.0), callee, pesq_mos=1.5)
    assert rec.outcome == "degraded"
    assert any(r.startswith("E-model MOS") for r in rec.judgement["reasons"])
    assert any("not judged" in r for r in rec.judgement["reasons"])


def test_a_client_without_playout_counters_has_no_time_scaling() -> None:
    assert peer("callee").time_scaled_ms is None
    bad = peer("callee", extra=MappingProxyType({"playout": {
        "removedSamplesForAcceleration": "many", "insertedSamplesForDeceleration": 1}}))
    assert bad.time_scaled_ms is None


def test_a_window_cut_short_without_a_failure_cannot_be_judged() -> None:
    rec = record(callee=peer("callee", window_s=2.0))
    assert rec.outcome == "error"


def test_a_connected_call_under_min_mos_fails_its_expectation() -> None:
    rec = record(peer("caller", loss=5.0), peer("callee", loss=5.0))
    assert rec.outcome == "connects" and rec.mos is not None
    assert DEGRADED_BELOW_MOS <= rec.mos < 4.0 and rec.verdict == "fail"


# ------------------------------------------------------------------ negative verdicts need a cause


def test_fails_passes_only_when_a_deciding_rule_counted() -> None:
    failed = (peer("caller", False, error="setup-timeout"),
              peer("callee", False, error="setup-timeout"))
    caused = record(*failed, expectation=FAILS, counters=counted("stun-drop"))
    assert caused.verdict == "pass"
    assert "decided by stun-drop counted 12 packets" in caused.judgement["reasons"][0]
    uncaused = record(*failed, expectation=FAILS,
                      counters=counted("stun-drop", 0) + counted("other-rule"))
    assert uncaused.verdict == "error" and uncaused.outcome == "fails"
    assert "no deciding rule counted a packet (stun-drop=0)" in uncaused.judgement["reasons"][0]


def test_a_rule_counts_through_all_of_its_counters() -> None:
    counters = [RuleCount("police: mark", 5, 500), RuleCount("police", 0, 0),
                RuleCount("policeman", 99, 9900)]
    rec = record(peer("caller", loss=60.0), peer("callee", loss=60.0), expectation=DEGRADED,
                 counters=counters)
    assert rec.outcome == "degraded" and rec.verdict == "pass", rec.judgement
    assert rec.judgement["deciding_rules"] == [{"rule": "police", "packets": 5, "bytes": 500}]


def test_a_link_impairment_can_be_the_cause() -> None:
    by_link = Expectation("degraded", basis="mechanism", decided_by=["link"])
    lossy = (peer("caller", loss=60.0), peer("callee", loss=60.0))
    assert record(*lossy, expectation=by_link, link_impaired=True).verdict == "pass"
    assert record(*lossy, expectation=by_link, link_impaired=False).verdict == "error"


def test_accepts_narrows_the_failure_kinds() -> None:
    only_timeouts = Expectation("fails", basis="mechanism", decided_by=["stun-drop"],
                                accepts=["setup-timeout"])
    failed = record(peer("caller", False, error="ice-failed"),
                    peer("callee", False, error="ice-failed"), expectation=only_timeouts,
                    counters=counted("stun-drop"))
    assert failed.verdict == "fail"
    assert "not among the accepted" in failed.judgement["reasons"][0]


# ------------------------------------------------------------------ rare outcomes

RARELY_FAILS = Expectation("degraded", basis="mechanism", decided_by=["police"],
                           rarely=RareOutcome("fails", share_pct=1.8, decided_by=["dialect"],
                                              accepts=["relay-unreachable"],
                                              why="0.75^14 of calls find no port"))
NO_PORT = (peer("caller", False, error="relay-unreachable"),
           peer("callee", False, error="setup-timeout"))


def test_the_declared_rare_outcome_passes_with_its_own_cause() -> None:
    rec = record(*NO_PORT, expectation=RARELY_FAILS, counters=counted("dialect"))
    assert rec.outcome == "fails" and rec.verdict == "pass", rec.judgement
    assert rec.judgement["rare"] is True
    assert rec.judgement["reasons"][0].startswith("the rare outcome the policy declares "
                                                  "(about 1.8 % of calls)")
    assert rec.judgement["deciding_rules"] == [{"rule": "dialect", "packets": 12, "bytes": 1200}]


def test_the_rare_outcome_still_needs_its_rule_and_failure_kind() -> None:
    uncaused = record(*NO_PORT, expectation=RARELY_FAILS, counters=counted("police"))
    assert uncaused.verdict == "error" and uncaused.judgement["rare"] is False
    assert "no deciding rule counted a packet (dialect=0)" in " ".join(
        uncaused.judgement["reasons"])
    other_kind = record(peer("caller", False, error="ice-failed"),
                        peer("callee", False, error="ice-failed"), expectation=RARELY_FAILS,
                        counters=counted("dialect"))
    assert other_kind.verdict == "fail" and other_kind.judgement["rare"] is False


def test_the_declared_outcome_is_not_marked_rare() -> None:
    lossy = record(peer("caller", loss=60.0), peer("callee", loss=60.0),
                   expectation=RARELY_FAILS, counters=counted("police"))
    assert lossy.verdict == "pass" and lossy.judgement["rare"] is False
    clean = record(expectation=RARELY_FAILS, counters=counted("dialect"))
    assert clean.outcome == "connects" and clean.verdict == "fail"


@pytest.mark.parametrize("fields, message", [
    ({"share_pct": 0.0}, "share_pct"), ({"share_pct": 35.0}, "not rare"),
    ({"decided_by": []}, "decided_by"), ({"why": " "}, "why"),
    ({"outcome": "degraded", "accepts": ["x"]}, "accepts"),
])
def test_a_rare_outcome_is_checked(fields: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"outcome": "fails", "share_pct": 1.8, "decided_by": ["d"],
                              "why": "w"}
    with pytest.raises(ValueError, match=message):
        RareOutcome(**{**values, **fields})
    with pytest.raises(ValueError, match="differs from it"):
        Expectation("fails", basis="mechanism", decided_by=["d"],
                    rarely=RareOutcome("fails", share_pct=1.8, decided_by=["d"], why="w"))


@pytest.mark.parametrize("outcome_of_call, expectation, verdict", [
    ("clean", CONNECTS, "pass"),
    ("clean", FAILS, "fail"),
    ("clean", DEGRADED, "fail"),
    ("lossy", DEGRADED, "pass"),
    ("lossy", CONNECTS, "fail"),
    ("lossy", FAILS, "fail"),
    ("none", FAILS, "pass"),
    ("none", DEGRADED, "fail"),
    ("none", CONNECTS, "fail"),
])
def test_verdict_table(outcome_of_call: str, expectation: Expectation, verdict: str) -> None:
    peers = {"clean": (peer("caller"), peer("callee")),
             "lossy": (peer("caller", loss=60.0), peer("callee", loss=60.0)),
             "none": (peer("caller", False, error="setup-timeout"),
                      peer("callee", False, error="setup-timeout"))}[outcome_of_call]
    rec = record(*peers, expectation=expectation,
                 counters=counted("stun-drop") + counted("police"))
    assert rec.verdict == verdict, rec.judgement


def test_the_record_carries_its_expectation_basis_and_cause() -> None:
    rec = record(peer("caller", False, error="setup-timeout"),
                 peer("callee", False, error="setup-timeout"), expectation=FAILS,
                 counters=counted("stun-drop"))
    assert rec.expected == {"outcome": "fails", "basis": "mechanism",
                            "decided_by": ["stun-drop"]}
    assert rec.to_dict()["judgement"]["verdict"] == "pass"


# ------------------------------------------------------------------ the emulator's own lateness

def late(missed: bool, link: str = "caller→cgnat") -> list[LinkFidelity]:
    over = 400 if missed else 0
    return [LinkFidelity(link=link, packets=1000, p99_late_us=9000 if missed else 80,
                         max_late_us=12_000, tolerance_us=2000, over_tolerance=over,
                         steal_pct=9.5, missed=missed)]


def test_a_fail_on_a_late_emulator_is_an_error_not_the_censors_doing() -> None:
    lossy = record(peer("caller", loss=30.0), peer("callee", loss=30.0), CONNECTS,
                   link_fidelity=late(True))
    assert lossy.outcome == "degraded"
    assert lossy.verdict == "error"
    reasons = lossy.judgement["reasons"]
    assert "link emulator missed its tolerance" in reasons[0]
    assert "caller→cgnat: 400 of 1000 packets later than 2000 us" in reasons[0]
    assert lossy.link_fidelity[0]["missed"] is True


def test_the_same_fail_on_an_emulator_on_time_stays_a_fail() -> None:
    lossy = record(peer("caller", loss=30.0), peer("callee", loss=30.0), CONNECTS,
                   link_fidelity=late(False))
    assert lossy.verdict == "fail"
    assert lossy.link_fidelity[0]["missed"] is False


def test_a_pass_on_a_late_emulator_stands_and_says_so() -> None:
    clean = record(link_fidelity=late(True))
    assert clean.verdict == "pass"
    assert any("link emulator missed its tolerance" in r for r in clean.judgement["reasons"])
