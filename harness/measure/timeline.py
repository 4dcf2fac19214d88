"""Per-second timelines of a call, from the peers' cumulative RTP samples:
what the sender sent, what the receiver got and lost, jitter, bitrate and an
E-model MOS for each second; and the call's events on the same clock
(seconds since the harness started the peers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.measure.emodel import estimate_call_quality

Sample = dict[str, Any]


def per_second(sender: Sequence[Sample], receiver: Sequence[Sample], t0: float,
               rtt_ms: float | None, frame_ms: float = 20.0) -> list[dict[str, Any]]:
    """One row per interval between the receiver's consecutive samples."""
    rows = []
    for before, after in zip(receiver, receiver[1:], strict=False):
        received = _delta(before, after, "received")
        lost = _delta(before, after, "lost")
        span = after["monotonic"] - before["monotonic"]
        rows.append({
            "t": round(after["monotonic"] - t0, 3),
            "sent": _sent_between(sender, before["monotonic"], after["monotonic"]),
            "received": received, "lost": lost,
            "jitter_ms": after.get("jitter_ms"),
            "bitrate_kbps": _bitrate(before, after, span),
            "mos": _mos(received, lost, after.get("jitter_ms"), rtt_ms, frame_ms),
        })
    return rows


def _delta(before: Sample, after: Sample, key: str) -> int | None:
    if before.get(key) is None or after.get(key) is None:
        return None
    return max(0, int(after[key]) - int(before[key]))


def _sent_between(sender: Sequence[Sample], start: float, end: float) -> int | None:
    """Packets the sender sent in [start, end], from its nearest samples."""
    inside = [s for s in sender if s.get("sent") is not None]
    if len(inside) < 2:
        return None
    first = min(inside, key=lambda s: abs(s["monotonic"] - start))
    last = min(inside, key=lambda s: abs(s["monotonic"] - end))
    return max(0, int(last["sent"]) - int(first["sent"]))


def _bitrate(before: Sample, after: Sample, span: float) -> float | None:
    received = _delta(before, after, "bytes_received")
    if received is None or span <= 0:
        return None
    return round(received * 8 / span / 1000, 2)


def _mos(received: int | None, lost: int | None, jitter_ms: float | None,
         rtt_ms: float | None, frame_ms: float) -> float | None:
    if received is None or lost is None or received + lost == 0:
        return None
    loss_pct = 100.0 * lost / (received + lost)
    quality = estimate_call_quality(loss_pct=loss_pct, jitter_ms=jitter_ms, rtt_ms=rtt_ms,
                                    frame_ms=frame_ms)
    return round(quality.mos, 2)


def call_events(timelines: Sequence[Any], faults: Sequence[dict[str, Any]],
                failure_kind: str | None, failed_at_s: float | None) -> list[dict[str, Any]]:
    """Connected, fault, policy-swap and failed events, sorted by time."""
    events = []
    for timeline in timelines:
        if getattr(timeline, "media_s", None) is not None:
            events.append({"t": timeline.media_s, "kind": "connected",
                           "detail": f"{timeline.role} decoded its first audio frame"})
    for fault in faults:
        kind = "policy-swap" if fault.get("kind") == "swap-policy" else "fault"
        when = fault.get("started_s")
        if when is not None:
            events.append({"t": when, "kind": kind,
                           "detail": f"{fault.get('kind')}: {fault.get('detail', '')}".strip()})
    if failure_kind is not None and failed_at_s is not None:
        events.append({"t": failed_at_s, "kind": "failed", "detail": failure_kind})
    return sorted(events, key=lambda e: e["t"])
