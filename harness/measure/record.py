"""A call's record: what both peers saw, combined into one line of results,
scored with the E-model and judged against the policy's expectation."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.measure.emodel import estimate_call_quality
from harness.spec.policy import Expectation

# Below this MOS a connected call is labelled "degraded" in tables (R ≈ 70,
# where G.107 places "many users dissatisfied"). Verdicts use the policy's
# own bounds, not this label.
DEGRADED_BELOW_MOS = 3.6


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
                 callee: dict[str, Any], expectation: Expectation | None) -> CallRecord:
    """A call is as good as its worse direction: the top-level loss, jitter
    and MOS are those of the worse of the two; connected means media flowed
    both ways."""
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
        mos=mos, expected=_expected_dict(expectation),
        verdict=judge(connected, mos, expectation), outcome=observed_outcome(connected, mos),
        packets_sent=caller.get("packets_sent"),
        packets_received=_sum(caller.get("packets_received"), callee.get("packets_received")),
        packets_lost=_sum(caller.get("packets_lost"), callee.get("packets_lost")),
        bitrate_kbps=worst.bitrate_kbps if worst else None,
        selected_pair=caller.get("selected_pair"),
        error=caller.get("error") or callee.get("error"), directions=directions,
    )
    return record


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
