"""The media phase of a call: waiting for the first decoded frame, then the media window."""

from __future__ import annotations

import asyncio
import contextlib
import time

from harness.calls.peer.state import CallFailed, CallState, current_stage, within_setup
from harness.calls.peer.stats import DEFAULT_CLOCKRATE, sample_stats

TIMELINE_PERIOD_S = 1.0


async def wait_first_media(state: CallState) -> None:
    first = asyncio.create_task(state.sink.first_frame.wait())
    failed = asyncio.create_task(state.transport_failed.wait())
    try:
        await within_setup(
            state, asyncio.wait({first, failed}, return_when=asyncio.FIRST_COMPLETED)
        )
    finally:
        first.cancel()
        failed.cancel()
    if not state.sink.first_frame.is_set():
        raise CallFailed(state.transport_failure or "ice-failed", current_stage(state))
    state.stage = "media"
    state.events.emit("media", at=state.sink.t_first)


async def media_window(state: CallState) -> None:
    """Keep the call up for --media-seconds after the first frame, or until it drops
    (the transport fails) or stalls (no frame decoded for --stall-timeout)."""
    assert state.pc is not None and state.sink.t_first is not None
    state.window_bytes_start = (await sample_stats(state.pc)).bytes_received
    end = state.sink.t_first + state.cfg.media_seconds
    sampler = asyncio.create_task(sample_timeline(state))
    try:
        stalled = await watch_window(state, end)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    end_window(state)
    if stalled:
        state.fail("media-stalled", "media")
        _count_open_gap(state)
    elif state.transport_failed.is_set():
        reason = state.transport_failure
        state.fail(reason if reason in ("peer-hung-up", "relay-lost") else "call-dropped",
                   "media")
    state.stats = await sample_stats(state.pc)


async def watch_window(state: CallState, end: float) -> bool:
    """Wait until `end` or the transport fails (False), or until for --stall-timeout
    neither an audio frame was decoded nor an RTP packet arrived (True). Packets
    count too: under heavy loss the jitter buffer can hold frames back for
    seconds while the path still carries media."""
    sink = state.sink
    while not state.transport_failed.is_set():
        now = time.monotonic()
        last = sink.t_last if sink.t_last is not None else sink.t_first
        assert last is not None
        last = max(last, state.t_last_rtp or last)
        stall_at = last + state.cfg.stall_timeout
        if now >= end:
            return False
        if now >= stall_at:
            return True
        # New frames move stall_at later: wake at the earlier deadline and look again.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.transport_failed.wait(), min(end, stall_at) - now)
    return False


async def sample_timeline(state: CallState) -> None:
    """Append cumulative RTP counters to the timeline every TIMELINE_PERIOD_S."""
    assert state.pc is not None
    while True:
        sample = await sample_stats(state.pc)
        _note_rtp_progress(state, sample.packets_received)
        row: dict[str, float | int | None] = {
            "monotonic": round(time.monotonic(), 3), "sent": sample.packets_sent,
            "received": sample.packets_received, "lost": sample.packets_lost,
            "jitter_ms": _jitter_ms(sample.jitter_units), "bytes_received": sample.bytes_received,
        }
        state.timeline.append(row)
        emit_stats(state, row)
        await asyncio.sleep(TIMELINE_PERIOD_S)


def emit_stats(state: CallState, row: dict[str, float | int | None]) -> None:
    """The same row as a live ``stats`` event (``--events``), with the seconds of
    received audio recorded so far, for whoever watches the call while it runs."""
    fields = {k: v for k, v in row.items() if k != "monotonic"}
    state.events.emit("stats", at=row["monotonic"], recorded_s=state.sink.recorded_s,
                      **fields)


def _note_rtp_progress(state: CallState, received: int | None) -> None:
    previous = state.timeline[-1]["received"] if state.timeline else None
    if received is not None and (previous is None or received > int(previous)):
        state.t_last_rtp = time.monotonic()


def _jitter_ms(units: int | None) -> float | None:
    return None if units is None else round(1000.0 * units / DEFAULT_CLOCKRATE, 3)


def _count_open_gap(state: CallState) -> None:
    """A stall is a gap that never closed: count it in the window's max frame gap."""
    last, end = state.sink.t_last, state.t_window_end
    if last is not None and end is not None:
        state.window_max_gap_s = max(state.window_max_gap_s or 0.0, end - last)


def end_window(state: CallState) -> None:
    """Mark the end of the media window (normal end, drop or termination)."""
    if state.t_window_end is None and state.sink.t_first is not None:
        state.t_window_end = time.monotonic()
        state.window_frames, state.window_max_gap_s = state.sink.frames, state.sink.max_gap_s
