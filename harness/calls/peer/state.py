"""Per-call state shared by the phases of a call, and the sink for the remote audio."""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import av
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

from harness.calls.events import EventLog
from harness.calls.peer.config import PeerConfig
from harness.services.signalling import SignallingClient

_T = TypeVar("_T")


class CallFailed(Exception):
    def __init__(self, error: str, stage: str) -> None:
        super().__init__(f"{error} ({stage})")
        self.error = error
        self.stage = stage


@dataclass
class StatsSample:
    packets_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    jitter_units: int | None = None
    rtt_s: float | None = None
    bytes_received: int | None = None


class AudioSink:
    """Consumes the remote audio track: first-frame event, counters, optional WAV."""

    def __init__(self, record: Path | None, record_rate: int) -> None:
        self.first_frame = asyncio.Event()
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.frames = 0
        self.max_gap_s = 0.0
        # Samples written to the WAV so far (live stats map call time to audio by it).
        self.recorded_samples = 0
        self._record = record
        self._rate = record_rate
        self._wav: wave.Wave_write | None = None
        self._resampler: av.AudioResampler | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, track: MediaStreamTrack) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self._on_frame(frame)

    def _on_frame(self, frame: Any) -> None:
        now = time.monotonic()
        if self.t_last is not None:
            self.max_gap_s = max(self.max_gap_s, now - self.t_last)
        else:
            self.t_first = now
            self.first_frame.set()
        self.t_last = now
        self.frames += 1
        if self._record is not None and isinstance(frame, av.AudioFrame):
            self._write(frame)

    def _write(self, frame: av.AudioFrame) -> None:
        if self._wav is None:
            self._open_wav()
        assert self._resampler is not None and self._wav is not None
        for out in self._resampler.resample(frame):
            self._wav.writeframes(bytes(out.planes[0])[: out.samples * 2])
            self.recorded_samples += out.samples

    @property
    def recorded_s(self) -> float:
        """Seconds of audio in the WAV so far (0 without --record)."""
        return round(self.recorded_samples / self._rate, 3)

    def _open_wav(self) -> None:
        assert self._record is not None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self._rate)
        self._wav = wave.open(str(self._record), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(self._rate)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._wav is not None:
            self._wav.close()
            self._wav = None


@dataclass
class CallState:
    cfg: PeerConfig
    t_process: float
    started_at: float
    sink: AudioSink
    stage: str = "signalling"
    error: str | None = None
    failure_stage: str | None = None
    t_attempt: float | None = None
    t_ice: float | None = None
    dtls_connected: bool = False
    closing: bool = False
    t_window_end: float | None = None
    window_frames: int | None = None
    window_max_gap_s: float | None = None
    window_bytes_start: int | None = None
    pc: RTCPeerConnection | None = None
    player: MediaPlayer | None = None
    signalling: SignallingClient | None = None
    transport_failure: str | None = None
    transport_failed: asyncio.Event = field(default_factory=asyncio.Event)
    terminate: asyncio.Event = field(default_factory=asyncio.Event)
    stats: StatsSample | None = None
    t_failed: float | None = None
    # Cumulative stats sampled about once a second during the media window.
    timeline: list[dict[str, float | int | None]] = field(default_factory=list)
    # When the inbound RTP packet count last grew (the sampler's view of liveness).
    t_last_rtp: float | None = None
    events: EventLog = field(default_factory=lambda: EventLog(None))

    def fail(self, error: str, stage: str) -> None:
        if self.error is None:
            self.error = error
            self.failure_stage = stage
            self.t_failed = time.monotonic()
            self.events.emit("failed", at=self.t_failed, error=error, stage=stage)

    def start_attempt(self) -> None:
        """The call attempt starts (the origin of setup_s, ice_s and failed_at_s)."""
        self.t_attempt = time.monotonic()
        self.events.emit("attempt", at=self.t_attempt)

    def remaining_setup(self) -> float:
        return self.t_process + self.cfg.setup_timeout - time.monotonic()


def current_stage(state: CallState) -> str:
    """Refine the "ice" stage with what the transports reached (sticky flags)."""
    if state.stage != "ice":
        return state.stage
    if state.dtls_connected:
        return "media"
    return "dtls" if state.t_ice is not None else "ice"


async def within_setup(state: CallState, awaitable: Awaitable[_T]) -> _T:
    """Await with the remaining setup time; CallFailed("setup-timeout") when it runs out."""
    try:
        return await asyncio.wait_for(awaitable, max(state.remaining_setup(), 0.0))
    except TimeoutError as exc:
        raise CallFailed("setup-timeout", current_stage(state)) from exc
