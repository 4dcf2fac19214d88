"""The media of an app-like call, independent of the wire: a paced Opus sender
and a receiver that tracks what arrived (RFC 3550 loss and interarrival
jitter, bytes, frame gaps), decodes it and records it as WAV."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.calls.app.opus import (
    DECODED_RATE,
    OpusDecoder,
    OpusEncoder,
    OpusSettings,
    WavRecorder,
    load_reference,
    looped_frames,
)
from harness.wire.rtp import RtpPacket

SendFrame = Callable[[int, int, bytes], None]  # (sequence, timestamp, opus payload)


@dataclass
class SenderStats:
    packets_sent: int = 0
    bytes_sent: int = 0
    last_timestamp: int = 0  # RTP timestamp of the last frame sent (for RTCP SRs)


def change_bitrate(sender: OpusSender, changes: list[dict[str, Any]], origin_s: float,
                   target: OpusSettings, reason: str, **fields: float | int | None) -> None:
    """Reopen `sender`'s encoder with `target` and note it in `changes` (the
    result's ``bitrate_changes``: when, on the monotonic clock and in seconds
    from `origin_s`, the new bitrate and FEC, why, and the loss figures that
    decided it)."""
    sender.encoder.reconfigure(target)
    now = time.monotonic()
    changes.append({"monotonic": round(now, 3), "at_s": round(now - origin_s, 3),
                    "bitrate": target.bitrate, "fec": target.fec, "reason": reason, **fields})


class OpusSender:
    """Encodes the reference, one frame every frame_ms on an absolute schedule
    (so slow iterations do not stretch the call), and hands each packet to
    `send`, which the profile points at whatever path the call is on. `ssrc`
    is the stream's RTP SSRC, random per call (RFC 3550 §8.1): the profile
    stamps it on the packets, and this side's receiver drops packets carrying it."""

    def __init__(self, audio: Path, settings: OpusSettings, rtp_clock: int) -> None:
        self.ssrc: int = struct.unpack("!I", os.urandom(4))[0]
        self.encoder = OpusEncoder(settings)
        self._frames = looped_frames(load_reference(audio, settings.sample_rate),
                                     settings.frame_samples)
        self._ticks_per_frame = rtp_clock * settings.frame_ms // 1000
        self.stats = SenderStats()
        self.send: SendFrame | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.encoder.settings.frame_ms / 1000.0
        start, sequence = loop.time(), 0
        while True:
            payload = self.encoder.encode(next(self._frames))
            if self.send is not None:
                timestamp = sequence * self._ticks_per_frame
                self.send(sequence, timestamp, payload)
                self.stats.packets_sent += 1
                self.stats.bytes_sent += len(payload)
                self.stats.last_timestamp = timestamp
            sequence += 1
            await asyncio.sleep(max(0.0, start + sequence * period - loop.time()))


@dataclass
class ReceiverStats:
    packets_received: int = 0
    duplicates: int = 0
    bytes_received: int = 0
    first_seq: int | None = None
    highest_seq: int | None = None
    jitter_s: float = 0.0
    frames_decoded: int = 0
    t_first: float | None = None
    t_last: float | None = None
    max_gap_s: float = 0.0
    own_ssrc_dropped: int = 0  # RTP packets carrying this side's own SSRC (its media echoed)
    own_rtcp_dropped: int = 0  # RTCP reports carrying it (counted by the transport)
    # Frames decoded and bytes received when the media window closed: what the
    # window itself carried (the sender lingers after it, and so do its packets).
    frames_at_window_end: int | None = None
    bytes_at_window_end: int | None = None

    def close_window(self) -> None:
        if self.frames_at_window_end is None:
            self.frames_at_window_end = self.frames_decoded
            self.bytes_at_window_end = self.bytes_received

    @property
    def window_frames(self) -> int:
        return self.frames_decoded if self.frames_at_window_end is None \
            else self.frames_at_window_end

    @property
    def window_bytes(self) -> int:
        return self.bytes_received if self.bytes_at_window_end is None \
            else self.bytes_at_window_end

    @property
    def expected(self) -> int:
        if self.first_seq is None or self.highest_seq is None:
            return 0
        return self.highest_seq - self.first_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets_received)

    @property
    def loss_pct(self) -> float | None:
        total = self.expected
        return None if total == 0 else 100.0 * self.lost / total


@dataclass
class _Transit:
    last_transit: float | None = None
    seen: set[int] = field(default_factory=set)


class OpusReceiver:
    """What one side received. Sequence numbers are the frame index (no wrap in
    a call of minutes: 16 bits of 60 ms frames last over an hour).

    A packet carrying `own_ssrc` (this side's own stream, e.g. echoed by a relay)
    is dropped before anything counts it, and counted in ``own_ssrc_dropped``:
    decoding it would make a side that hears nothing from its peer look connected."""

    def __init__(self, record: Path | None, rtp_clock: int, frame_ms: int,
                 own_ssrc: int | None = None) -> None:
        self.own_ssrc = own_ssrc
        self.stats = ReceiverStats()
        self.first_frame = asyncio.Event()
        self._clock = rtp_clock
        self._decoder = OpusDecoder()
        self._wav = WavRecorder(record)
        self._frame_samples = DECODED_RATE * frame_ms // 1000
        self._next_seq: int | None = None
        self._transit = _Transit()

    def on_rtp(self, packet: RtpPacket, wire_bytes: int) -> None:
        now = time.monotonic()
        s = self.stats
        if self.own_ssrc is not None and packet.ssrc == self.own_ssrc:
            s.own_ssrc_dropped += 1
            return
        if packet.sequence in self._transit.seen:
            s.duplicates += 1  # e.g. the same frame over two relay endpoints
            return
        self._transit.seen.add(packet.sequence)
        s.packets_received += 1
        s.bytes_received += wire_bytes
        s.first_seq = packet.sequence if s.first_seq is None else min(s.first_seq,
                                                                         packet.sequence)
        s.highest_seq = max(s.highest_seq or 0, packet.sequence)
        self._update_jitter(now, packet.timestamp)
        if s.t_last is not None:
            s.max_gap_s = max(s.max_gap_s, now - s.t_last)
        s.t_last = now
        self._play(packet)
        if s.t_first is None and s.frames_decoded:
            s.t_first = now
            self.first_frame.set()

    def _update_jitter(self, now: float, timestamp: int) -> None:
        transit = now - timestamp / self._clock
        last = self._transit.last_transit
        if last is not None:
            self.stats.jitter_s += (abs(transit - last) - self.stats.jitter_s) / 16.0
        self._transit.last_transit = transit

    def _play(self, packet: RtpPacket) -> None:
        """Decode in order: a late frame is counted but not played; frames that
        never came before this one are played as silence."""
        if self._next_seq is not None and packet.sequence < self._next_seq:
            return
        if self._next_seq is not None:
            missing = packet.sequence - self._next_seq
            if missing:
                self._wav.add_silence(missing * self._frame_samples)
        pcm = self._decoder.decode(packet.payload)
        if pcm.size:
            self.stats.frames_decoded += 1
            self._wav.add(pcm)
        self._next_seq = packet.sequence + 1

    @property
    def recorded_s(self) -> float:
        """Seconds of audio recorded so far (gaps included, as silence)."""
        return self._wav.recorded_s

    def close(self) -> None:
        self._wav.close()


Row = dict[str, float | int | None]


@dataclass
class Timeline:
    """Cumulative counters about once a second (the rows the aiortc peer writes)
    and the bitrate this side's encoder was set to then;
    ``on_row`` sees each row as it is taken (the live ``stats`` event)."""

    rows: list[Row] = field(default_factory=list)
    on_row: Callable[[Row], None] | None = None

    async def sample(self, sender: OpusSender, receiver: OpusReceiver,
                     period_s: float = 1.0) -> None:
        while True:
            self.add(sender, receiver)
            await asyncio.sleep(period_s)

    def add(self, sender: OpusSender, receiver: OpusReceiver) -> None:
        r = receiver.stats
        row: Row = {"monotonic": round(time.monotonic(), 3),
                    "sent": sender.stats.packets_sent, "received": r.packets_received,
                    "lost": r.lost, "jitter_ms": round(1000.0 * r.jitter_s, 3),
                    "bytes_received": r.bytes_received,
                    "bitrate": sender.encoder.settings.bitrate}
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
