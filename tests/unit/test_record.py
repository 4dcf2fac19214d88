"""Call records: both directions scored, the worse one counts, verdicts
follow the policy's declared expectation."""

from __future__ import annotations

from typing import Any

import pytest

from harness.measure.record import build_record, judge, observed_outcome
from harness.spec.policy import Expectation


def _peer(role: str, connected: bool = True, loss: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"role": role, "connected": connected, "loss_pct": loss, "jitter_ms": 1.0,
            "rtt_ms": 2.0, "setup_s": 0.5, "packets_received": 300, "packets_lost": 0,
            **extra}


def test_worse_direction_sets_the_call_quality() -> None:
    record = build_record(topology="t", policy="p", strategy="direct",
                          caller=_peer("caller", loss=1.0), callee=_peer("callee", loss=40.0),
                          expectation=None)
    assert record.connected and record.loss_pct == 40.0
    caller_mos, callee_mos = (d.mos for d in record.directions)
    assert caller_mos is not None and callee_mos is not None
    assert record.mos == callee_mos < caller_mos
    assert record.verdict == "no-expectation"


def test_one_way_media_is_not_connected() -> None:
    record = build_record(topology="t", policy="p", strategy="direct",
                          caller=_peer("caller"), callee=_peer("callee", connected=False),
                          expectation=Expectation(outcome="connects", min_mos=4.0))
    assert not record.connected and record.mos is None and record.verdict == "fail"


@pytest.mark.parametrize("connected, mos, expectation, verdict", [
    (True, 4.4, Expectation("connects", min_mos=4.0), "pass"),
    (True, 3.9, Expectation("connects", min_mos=4.0), "fail"),
    (False, None, Expectation("connects"), "fail"),
    (False, None, Expectation("fails"), "pass"),
    (True, 4.4, Expectation("fails"), "fail"),
    (True, 1.2, Expectation("degraded", max_mos=3.0), "pass"),
    (True, 3.2, Expectation("degraded", max_mos=3.0), "fail"),
    (False, None, Expectation("degraded", max_mos=3.0), "fail"),
])
def test_judge(connected: bool, mos: float | None, expectation: Expectation,
               verdict: str) -> None:
    assert judge(connected, mos, expectation) == verdict


def test_observed_outcome_labels() -> None:
    assert observed_outcome(False, None) == "fails"
    assert observed_outcome(True, 4.3) == "connects"
    assert observed_outcome(True, 2.0) == "degraded"
