"""A call's figures over one phase, from its per-second rows, and the
phase's checks against what the script declares.

Loss over a phase is the lost share of what the receiver should have got:
per second, the packets its RTP sequence numbers say were lost, or, for a
second in which nothing arrived at all, every packet the sender sent (the
receiver's counter only learns of a gap when a later packet comes). Jitter
is the mean of the seconds' interarrival jitter, the bitrate the mean of the
seconds'. MOS is the E-model's (harness.measure.emodel, ITU-T G.107) on the
phase's loss, jitter and the call's round trip, with the sender's frame
duration, for each direction; the call's is the worse direction's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.demo.view import CallFigures, Check, Row
from harness.measure.emodel import estimate_call_quality
from harness.spec.demo import CallExpect
from harness.spec.policy import RareOutcome

# Seconds at a phase's edges whose rows may straddle the change.
EDGE_S = 1.5
# How much of a row's second may lie outside the phase it is counted in.
ROW_SLACK_S = 0.25


@dataclass(frozen=True)
class Direction:
    received: int
    expected: int
    jitter_ms: float | None
    bitrate_kbps: float | None
    seconds: int
    silent_seconds: int  # seconds within the phase in which nothing arrived

    @property
    def loss_pct(self) -> float | None:
        if self.expected <= 0:
            return None
        return round(100.0 * max(0, self.expected - self.received) / self.expected, 2)


def direction_over(rows: Sequence[Row], start_t: float, end_t: float) -> Direction:
    """The rows of the seconds within [start_t, end_t] (a row at t covers the
    second before t; one that lies mostly before the phase is left out)."""
    first, last = start_t + 1.0 - ROW_SLACK_S, end_t + ROW_SLACK_S
    inside = [r for r in rows if first <= float(r["t"]) <= last]
    sending = _sending_span(inside)
    received = expected = silent = 0
    jitters, bitrates = [], []
    for index, row in enumerate(inside):
        got = int(row.get("received") or 0)
        lost = int(row.get("lost") or 0)
        sent = int(row.get("sent") or 0)
        received += got
        expected += got + lost if got > 0 else max(lost, sent)
        edge = index == 0 or float(row["t"]) > end_t - EDGE_S + 1.0
        if got == 0 and not edge and sending[0] <= index <= sending[1]:
            silent += 1
        if got > 0 and isinstance(row.get("jitter_ms"), int | float):
            jitters.append(float(row["jitter_ms"]))
        if isinstance(row.get("bitrate_kbps"), int | float):
            bitrates.append(float(row["bitrate_kbps"]))
    return Direction(received=received, expected=expected,
                     jitter_ms=round(sum(jitters) / len(jitters), 2) if jitters else None,
                     bitrate_kbps=round(sum(bitrates) / len(bitrates), 1) if bitrates else None,
                     seconds=len(inside), silent_seconds=silent)


def _sending_span(rows: Sequence[Row]) -> tuple[int, int]:
    """The first and last of `rows` inside the sender's media window: a row
    in which something arrived, or the sender sent (or did not say). Before
    it and after it are seconds in which the sender had not begun or had
    already stopped (each side's window starts at its own first frame, and a
    side that heard the other first also stops first): nothing was sent to be
    missed, so they are not silent seconds. A second within the span in which
    the sender sent nothing still is one."""
    active = [i for i, row in enumerate(rows)
              if int(row.get("received") or 0) > 0 or row.get("sent") is None
              or int(row["sent"]) > 0]
    return (active[0], active[-1]) if active else (0, -1)


def mos_of(direction: Direction, rtt_ms: float | None, frame_ms: float) -> float | None:
    loss = direction.loss_pct
    if loss is None or direction.received == 0:
        return None
    quality = estimate_call_quality(loss_pct=loss, jitter_ms=direction.jitter_ms,
                                    rtt_ms=rtt_ms, frame_ms=frame_ms)
    return round(quality.mos, 2)


def call_figures(to_callee: Sequence[Row], to_caller: Sequence[Row], start_t: float,
                 end_t: float, rtt_ms: float | None, frame_ms: tuple[float, float],
                 failure: tuple[float, str] | None, covers_phase: bool) -> CallFigures:
    """The figures of one call over [start_t, end_t] (the demo's clock).
    `frame_ms`: the caller's and the callee's frame durations. `covers_phase`:
    the call was meant to carry media for the whole phase (the established
    call), not only from when it connected (an attempt)."""
    down = direction_over(to_callee, start_t, end_t)
    up = direction_over(to_caller, start_t, end_t)
    mos_values = (mos_of(down, rtt_ms, frame_ms[0]), mos_of(up, rtt_ms, frame_ms[1]))
    worse = max((d for d in (down, up)), key=lambda d: d.loss_pct or 0.0)
    failed_inside = failure is not None and failure[0] <= end_t
    heard = down.received > 0 and up.received > 0
    gaps = down.silent_seconds + up.silent_seconds
    covered = (not covers_phase) or (min(down.seconds, up.seconds)
                                     >= max(1, int(end_t - start_t - 2 * EDGE_S)))
    media: bool | None
    if down.received == 0 and up.received == 0:
        media = False
    elif heard and gaps == 0 and covered and not failed_inside:
        media = True
    else:
        media = None  # some media, with gaps or a failure: neither claim holds
    notes = []
    if gaps:
        notes.append(f"{gaps} second(s) without a packet")
    if not covered:
        notes.append("the call's per-second figures do not cover the phase")
    return CallFigures(
        seconds=min(down.seconds, up.seconds), media=media, loss_pct=worse.loss_pct,
        jitter_ms=_max(down.jitter_ms, up.jitter_ms),
        bitrate_kbps=down.bitrate_kbps,
        mos=min((m for m in mos_values if m is not None), default=None) if heard else None,
        failure=failure[1] if failed_inside and failure else None, note="; ".join(notes))


def check(subject: str, expect: CallExpect, figures: CallFigures,
          rare: RareOutcome | None = None, counted: frozenset[str] = frozenset()
          ) -> list[Check]:
    """The script's expectation for one call against its phase figures.

    `rare`: the rare outcome the phase's policy declares for this call's cell
    (its expectation's `rarely:`), and `counted` the censor rules that counted
    packets during the phase. A call expected to carry media that instead
    failed as that rare outcome does (no media at all, a failure kind it
    accepts, one of its deciding rules counted) passes as that outcome,
    marked rare, and its MOS is not bounded: the policy's own mechanism gives
    it to the stated share of calls."""
    if (rare is not None and rare.outcome == "fails" and expect.media is True
            and figures.media is False and _failure_kind(figures) in rare.accepts
            and counted & set(rare.decided_by)):
        rules = ", ".join(sorted(counted & set(rare.decided_by)))
        return [Check(subject, f"{expect.describe()} (or, in about {rare.share_pct:g} % of "
                      "calls, no media)",
                      f"no media; failed: {figures.failure}; {rules} counted: the rare "
                      f"outcome the policy declares ({rare.why})", True, rare=True)]
    checks = []
    if expect.media is not None:
        observed = {True: "media both ways throughout", False: "no media either way",
                    None: "partial media"}[figures.media]
        if figures.failure:
            observed += f"; failed: {figures.failure}"
        checks.append(Check(subject, "media both ways throughout" if expect.media
                            else "no media either way", observed,
                            figures.media is expect.media))
    shown = "no MOS (no media)" if figures.mos is None else f"MOS {figures.mos:.2f}"
    if expect.min_mos is not None:
        ok = figures.mos is not None and figures.mos >= expect.min_mos
        checks.append(Check(subject, f"MOS >= {expect.min_mos:g}", shown, ok))
    if expect.max_mos is not None:
        ok = figures.mos is not None and figures.mos < expect.max_mos
        checks.append(Check(subject, f"MOS < {expect.max_mos:g}", shown, ok))
    return checks


def _failure_kind(figures: CallFigures) -> str | None:
    """The failure kind of "caller: relay-unreachable (allocate)"."""
    if not figures.failure:
        return None
    return figures.failure.split(": ", 1)[-1].split(" (", 1)[0]


def _max(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
