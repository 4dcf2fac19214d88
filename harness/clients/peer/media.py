"""The media phase of a call: waiting for the first decoded frame, then the media window."""

from __future__ import annotations

import asyncio
import contextlib
import time

from harness.clients.peer.state import CallFailed, CallState, current_stage, within_setup
from harness.clients.peer.stats import sample_stats


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


async def media_window(state: CallState) -> None:
    """Keep the call up for --media-seconds after the first frame (or until it drops)."""
    assert state.pc is not None and state.sink.t_first is not None
    state.window_bytes_start = (await sample_stats(state.pc)).bytes_received
    end = state.sink.t_first + state.cfg.media_seconds
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.transport_failed.wait(), max(end - time.monotonic(), 0))
    end_window(state)
    if state.transport_failed.is_set():
        reason = state.transport_failure
        state.fail("peer-hung-up" if reason == "peer-hung-up" else "call-dropped", "media")
    state.stats = await sample_stats(state.pc)


def end_window(state: CallState) -> None:
    """Mark the end of the media window (normal end, drop or termination)."""
    if state.t_window_end is None and state.sink.t_first is not None:
        state.t_window_end = time.monotonic()
        state.window_frames, state.window_max_gap_s = state.sink.frames, state.sink.max_gap_s
