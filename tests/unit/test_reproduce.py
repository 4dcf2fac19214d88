"""`callwall reproduce`: cells are parsed with clear errors, and the summary
counts what the judged records say (it never re-judges)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.calls import CallError
from harness.measure.peer import PeerReport
from harness.measure.record import CallIdentity, CallRecord, build_record
from harness.measure.verdict import CallEvidence, RuleCount
from harness.reproduce import Cell, CellSummary, Conditions, render
from harness.spec.policy import Expectation, RareOutcome

DEGRADED = Expectation("degraded", basis="report", source="S2", decided_by=["loss"])


def peer(role: str, connected: bool, loss: float) -> PeerReport:
    values: dict[str, Any] = {
        "connected": connected, "loss_pct": loss if connected else None, "jitter_ms": 2.0,
        "rtt_ms": 20.0, "setup_s": 1.5 if connected else None,
        "packets_received": 130 if connected else None, "packets_lost": 20,
        "frames_received": 130 if connected else 0, "frame_ms": 60.0,
        "window_s": 8.0 if connected else None,
        "error": None if connected else "relay-unreachable"}
    return PeerReport(role=role, **values)


def judged(connected: bool, loss: float = 15.0, lost_packets: int = 40) -> CallRecord:
    evidence = CallEvidence(peer("caller", connected, loss), peer("callee", connected, loss),
                            window_s=8.0, counters=[RuleCount("loss", lost_packets, 4000),
                                                    RuleCount("dialect: roll", 3, 300)])
    identity = CallIdentity(topology="t", policy="p", profile="whatsapp-like",
                            strategy="direct")
    return build_record(identity, evidence, DEGRADED)


def test_a_cell_is_profile_colon_strategy() -> None:
    assert Cell.parse("whatsapp-like:direct") == Cell("whatsapp-like", "direct")
    with pytest.raises(ValueError, match="not profile:strategy"):
        Cell.parse("whatsapp-like")
    with pytest.raises(CallError, match="unknown profile"):
        Cell.parse("skype:direct")


def test_the_summary_counts_set_ups_outcomes_and_rules() -> None:
    summary = CellSummary(Cell("whatsapp-like", "direct"))
    for record in (judged(True), judged(True, loss=20.0), judged(False, lost_packets=0)):
        summary.add(record)
    row = summary.row()
    assert (row["calls"], row["set_up"]) == (3, 2)
    assert row["outcomes"] == {"degraded": 2, "fails": 1}
    assert row["failure_kinds"] == {"relay-unreachable": 1}
    assert row["mos"]["n"] == 2 and row["mos"]["max"] < 3.0
    assert row["rules"] == {"loss": 80, "dialect": 9}
    line = summary.markdown()
    assert line.startswith("whatsapp-like direct | 2/3 set up (degraded 2, fails 1) |")
    assert "`dialect` 9, `loss` 80" in line


def test_the_rendered_table_states_its_conditions() -> None:
    summary = CellSummary(Cell("whatsapp-like", "direct"))
    summary.add(judged(True))
    conditions = Conditions(policy="p", topology="t", calls_per_cell=1, media_s=8.0,
                            link_profile="lte", host="vm", cpus=2, load_before=(0.3, 0.2, 0.1),
                            load_after=(0.9, 0.4, 0.2), wall_s=21.0, commit="abc")
    text = render(conditions, [summary])
    assert text.splitlines()[0] == ("policy p on t: 1 calls per cell, 8 s media window, "
                                    "link profile lte; 2 CPUs, load 0.3 before, 0.9 after; "
                                    "21 s")
    assert "whatsapp-like direct | 1/1 set up" in text


def test_the_summary_sets_the_rare_outcomes_it_counted_beside_the_declared_share() -> None:
    rarely = Expectation("degraded", basis="report", source="S2", decided_by=["loss"],
                         rarely=RareOutcome("fails", share_pct=1.8, decided_by=["dialect"],
                                            accepts=["relay-unreachable"], why="0.75^14"))
    identity = CallIdentity(topology="t", policy="p", profile="whatsapp-like",
                            strategy="direct")
    summary = CellSummary(Cell("whatsapp-like", "direct"), rare_declared_pct=1.8)
    for connected in (True, False, True):
        evidence = CallEvidence(peer("caller", connected, 15.0), peer("callee", connected, 15.0),
                                window_s=8.0, counters=[RuleCount("loss", 40, 4000),
                                                        RuleCount("dialect", 3, 300)])
        summary.add(build_record(identity, evidence, rarely))
    row = summary.row()
    assert row["verdicts"] == {"pass": 3} and (row["rare"], row["rare_declared_pct"]) == (1, 1.8)
    assert "(degraded 2, fails 1; rare outcome 1 of 3, declared about 1.8 %)" in summary.markdown()
