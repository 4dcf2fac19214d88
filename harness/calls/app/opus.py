"""Opus for the app-like profiles, through PyAV's libopus (installed with aiortc):
the reference signal cut into fixed-length frames, an encoder whose bitrate and
in-band FEC can change mid-call, a decoder, and a WAV writer for what arrived.

The profiles send 60 ms frames (WhatsApp: 16 kHz [wacrg, docs/sources.md S19, S20];
Telegram/libtgvoip: 60 ms, 8-20 kbit/s [docs/sources.md S16, S24, S26])."""

from __future__ import annotations

import fractions
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
FRAME_MS_CHOICES = (20, 40, 60)
DECODED_RATE = 48000  # libopus in PyAV decodes at 48 kHz whatever the stream's rate


class OpusError(ValueError):
    pass


@dataclass(frozen=True)
class OpusSettings:
    """How a profile encodes: sample rate, frame length, bitrate, in-band FEC and
    the loss percentage the encoder plans its FEC for."""

    sample_rate: int = 16000
    frame_ms: int = 60
    bitrate: int = 16000
    fec: bool = False
    expected_loss_pct: int = 0

    def __post_init__(self) -> None:
        if self.sample_rate not in OPUS_RATES:
            raise OpusError(f"sample_rate: {self.sample_rate} is not an Opus rate {OPUS_RATES}")
        if self.frame_ms not in FRAME_MS_CHOICES:
            raise OpusError(f"frame_ms: {self.frame_ms} not in {FRAME_MS_CHOICES}")
        if not 6000 <= self.bitrate <= 510000:
            raise OpusError(f"bitrate: {self.bitrate} outside 6000..510000 bit/s")
        if not 0 <= self.expected_loss_pct <= 100:
            raise OpusError(f"expected_loss_pct: {self.expected_loss_pct} outside 0..100")

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000


def load_reference(path: Path, sample_rate: int) -> Pcm:
    """The reference WAV as mono 16-bit samples at `sample_rate`."""
    chunks: list[Pcm] = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
    if not chunks:
        raise OpusError(f"{path}: no audio samples")
    return np.concatenate(chunks)


def looped_frames(pcm: Pcm, frame_samples: int) -> Iterator[Pcm]:
    """Frames of `pcm`, looping forever (both sides send the reference looped)."""
    if pcm.size < frame_samples:
        raise OpusError(f"reference has {pcm.size} samples, under one frame ({frame_samples})")
    position = 0
    while True:
        end = position + frame_samples
        if end <= pcm.size:
            yield pcm[position:end]
            position = end % pcm.size
        else:
            yield np.concatenate([pcm[position:], pcm[: end - pcm.size]])
            position = end - pcm.size


class OpusEncoder:
    """libopus through PyAV. `reconfigure` reopens the encoder with new settings:
    PyAV cannot change bitrate or FEC on an open context, and Opus decoders
    follow such a change between packets without resynchronisation."""

    def __init__(self, settings: OpusSettings) -> None:
        self.settings = settings
        self._pts = 0
        self._ctx = self._open(settings)

    @staticmethod
    def _open(settings: OpusSettings) -> av.AudioCodecContext:
        ctx = av.CodecContext.create("libopus", "w")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = settings.sample_rate
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = settings.bitrate
        ctx.time_base = fractions.Fraction(1, settings.sample_rate)
        ctx.options = {"frame_duration": str(settings.frame_ms), "application": "voip",
                       "fec": "1" if settings.fec else "0",
                       "packet_loss": str(settings.expected_loss_pct)}
        ctx.open()
        return ctx

    def reconfigure(self, settings: OpusSettings) -> None:
        if settings.sample_rate != self.settings.sample_rate:
            raise OpusError("sample_rate: cannot change mid-stream")
        if settings != self.settings:
            self._ctx = self._open(settings)
            self.settings = settings

    def encode(self, pcm: Pcm) -> bytes:
        """One frame of exactly frame_samples samples → one Opus packet."""
        if pcm.size != self.settings.frame_samples:
            raise OpusError(f"frame has {pcm.size} samples, expected "
                            f"{self.settings.frame_samples}")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.settings.sample_rate
        frame.pts = self._pts
        self._pts += pcm.size
        packets = self._ctx.encode(frame)
        if len(packets) != 1:
            raise OpusError(f"libopus returned {len(packets)} packets for one frame")
        return bytes(packets[0])


class OpusDecoder:
    """Decodes Opus packets to 16-bit mono at DECODED_RATE."""

    def __init__(self) -> None:
        ctx = av.CodecContext.create("libopus", "r")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.layout = "mono"
        self._ctx = ctx

    def decode(self, payload: bytes) -> Pcm:
        frames = self._ctx.decode(av.Packet(payload))
        if not frames:
            return np.zeros(0, dtype=np.int16)
        arrays = [f.to_ndarray().reshape(-1).astype(np.int16) for f in frames]
        return np.concatenate(arrays)


class WavRecorder:
    """What a receiver heard, at DECODED_RATE: decoded frames in order, silence
    in place of frames that never arrived (so later audio stays time-aligned).
    Written as it comes (the WAV header is brought up to date with every
    write), so the audio of a running call can be read; no file when nothing
    arrived."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._wav: wave.Wave_write | None = None
        self.samples = 0  # written so far

    def add(self, pcm: Pcm) -> None:
        self._write(pcm)

    def add_silence(self, samples: int) -> None:
        self._write(np.zeros(samples, dtype=np.int16))

    @property
    def recorded_s(self) -> float:
        return round(self.samples / DECODED_RATE, 3)

    def _write(self, pcm: Pcm) -> None:
        self.samples += int(pcm.size)
        if self._path is None:
            return
        if self._wav is None:
            self._wav = wave.open(str(self._path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(DECODED_RATE)
        self._wav.writeframes(pcm.astype("<i2").tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
