"""The received audio of a phase: cut from the whole call's WAV, and scored
with PESQ-WB (harness.measure.pesq_score) against the reference it carries.

A cut starts somewhere in the looped reference, not at its first sample, and
pesq_wb lines a received file up with the reference only within +-1 s of the
reference's start. So the reference is first turned (rotated) to where the
cut begins: the position of greatest normalised cross-correlation of the
cut's first active ALIGN_S against the whole looped reference; pesq_wb then
does its own fine alignment and scoring on the turned reference.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from harness.measure.pesq_score import PesqResult, first_active, load_16k, pesq_wb
from harness.measure.speech import PESQ_RATE, write_wav

ALIGN_S = 2.0


def cut_wav(source: Path, start_s: float, end_s: float, target: Path) -> float | None:
    """Write the part [start_s, end_s) of `source` (seconds of its audio) to
    `target`; the seconds written, or None when there is nothing to cut."""
    try:
        with wave.open(str(source), "rb") as handle:
            rate, width, channels = (handle.getframerate(), handle.getsampwidth(),
                                     handle.getnchannels())
            total = handle.getnframes()
            first = max(0, min(total, int(start_s * rate)))
            last = max(first, min(total, int(end_s * rate)))
            handle.setpos(first)
            frames = handle.readframes(last - first)
    except (OSError, EOFError, wave.Error):
        return None
    count = len(frames) // (width * channels)
    if count == 0:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames)
    return round(count / rate, 3)


def wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getnframes() / handle.getframerate()
    except (OSError, EOFError, wave.Error):
        return None


def loop_offset(reference: np.ndarray, received: np.ndarray) -> int:
    """Where in the looped `reference` (samples) `received` starts: the
    circular lag of greatest normalised correlation of its first active
    ALIGN_S."""
    period = reference.size
    start = first_active(received)
    segment = received[start: start + min(period, int(ALIGN_S * PESQ_RATE))].astype(np.float64)
    if segment.size == 0 or not np.any(segment):
        return 0
    ref = reference.astype(np.float64)
    padded = np.zeros(period)
    padded[: segment.size] = segment
    # corr[k] = sum_n segment[n] * ref[(n + k) mod period]
    corr = np.fft.irfft(np.fft.rfft(ref) * np.conj(np.fft.rfft(padded)), period)
    looped = np.concatenate((ref, ref[: segment.size]))
    energy = np.concatenate(([0.0], np.cumsum(looped ** 2)))
    window = energy[segment.size: segment.size + period] - energy[:period]
    norm = np.sqrt(np.maximum(window, 0.0) * float(np.sum(segment ** 2)))
    score = np.divide(corr, norm, out=np.zeros_like(corr), where=norm > 0)
    best = int(np.argmax(score))
    return (best - start) % period


def phase_pesq(reference_wav: Path, segment_wav: Path, expected_s: float | None,
               scratch: Path) -> PesqResult:
    """PESQ-WB of a cut of the received audio against the reference turned to
    where the cut begins (`scratch`: where the turned reference is written)."""
    if not segment_wav.exists():
        return pesq_wb(reference_wav, segment_wav, expected_s=expected_s)
    reference = load_16k(reference_wav)
    offset = loop_offset(reference, load_16k(segment_wav))
    turned = write_wav(scratch, np.roll(reference, -offset), PESQ_RATE)
    return pesq_wb(turned, segment_wav, expected_s=expected_s)
