"""Orchestration of one call: timeouts, signals, writing the result, teardown, exit status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
import wave
from collections.abc import Sequence
from pathlib import Path

from harness.calls.peer.config import PeerConfig, apply_environment, parse_config
from harness.calls.peer.media import end_window, media_window, wait_first_media
from harness.calls.peer.negotiation import callee_flow, caller_flow, connect_signalling
from harness.calls.peer.result import PeerResult
from harness.calls.peer.state import (
    AudioSink,
    CallFailed,
    CallState,
    EventLog,
    current_stage,
)
from harness.calls.peer.stats import DEFAULT_CLOCKRATE, safe_build_result, sample_stats

CLOSE_TIMEOUT_S = 5.0
EXIT_WATCHDOG_S = 20.0
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_ARGS = 2


async def run_call(state: CallState) -> None:
    """The call itself; failures end up in ``state`` (never raised)."""
    try:
        client = await connect_signalling(state)
        flow = caller_flow if state.cfg.role == "caller" else callee_flow
        await flow(state, client)
        await wait_first_media(state)
        await media_window(state)
    except CallFailed as exc:
        state.fail(exc.error, exc.stage)
    except Exception as exc:  # a bug or an unexpected library error: still report it
        traceback.print_exc(file=sys.stderr)
        state.fail(f"internal-error: {type(exc).__name__}: {exc}"[:200], current_stage(state))


async def supervise(state: CallState) -> None:
    """Run the call with the total timeout; SIGTERM/SIGINT end it early."""
    loop = asyncio.get_running_loop()
    terminate = state.terminate
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, terminate.set)
    call = asyncio.create_task(run_call(state))
    stop = asyncio.create_task(terminate.wait())
    await asyncio.wait({call, stop}, timeout=state.cfg.total_timeout,
                       return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not call.done():
        state.fail("terminated" if terminate.is_set() else "total-timeout", current_stage(state))
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(call, CLOSE_TIMEOUT_S)


async def finish(state: CallState) -> PeerResult:
    """Sample what is left, write the result, then tear everything down."""
    end_window(state)
    if state.stats is None and state.pc is not None:
        state.stats = await sample_stats(state.pc)
    result = safe_build_result(state)
    result.write(state.cfg.out)
    start_exit_watchdog(exit_code(result), state.cfg.linger + EXIT_WATCHDOG_S)
    if state.error is None and state.cfg.linger > 0:
        # Let the other side finish its own media window; SIGTERM cuts this short.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.terminate.wait(), state.cfg.linger)
    await teardown(state)
    return result


async def teardown(state: CallState) -> None:
    state.closing = True
    if state.pc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(state.pc.close(), CLOSE_TIMEOUT_S)
    if state.player is not None and state.player.audio is not None:
        with contextlib.suppress(Exception):
            state.player.audio.stop()
    await state.sink.stop()
    if state.signalling is not None:
        await state.signalling.close()


def exit_code(result: PeerResult) -> int:
    return EXIT_INTERNAL if (result.error or "").startswith("internal-error") else EXIT_OK


def start_exit_watchdog(code: int, after_s: float) -> None:
    """The result is on disk: never let a stuck teardown keep the process alive."""
    timer = threading.Timer(after_s, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


def _wav_rate(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getframerate()
    except (OSError, wave.Error, EOFError):
        return DEFAULT_CLOCKRATE


async def run_peer(cfg: PeerConfig) -> PeerResult:
    state = CallState(
        cfg=cfg,
        t_process=time.monotonic(),
        started_at=time.time(),
        sink=AudioSink(cfg.record, _wav_rate(cfg.audio)),
        events=EventLog(cfg.events),
    )
    await supervise(state)
    return await finish(state)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    apply_environment(cfg)
    return exit_code(asyncio.run(run_peer(cfg)))
