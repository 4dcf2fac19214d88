"""PESQ-WB (ITU-T P.862.2, 16 kHz) of the audio a peer received against the
reference speech that was sent, with the PyPI ``pesq`` package.

What the receiver's file holds (measured on real lab calls): the peer's
recorder writes each decoded frame as it comes and nothing for a lost packet;
aiortc's Opus path does no concealment, and its audio jitter buffer also holds
back or discards packets around a loss. So a lossy call leaves a *shorter* file
(time-compressed, no silence inserted): a call policed to ~8% packet loss
recorded 7.3 s where a clean one recorded 10.0 s. Total loss leaves no file.

How the received file is lined up with the reference:

* Both are read as mono and brought to 16 kHz with the same resampler
  (:func:`harness.measure.speech.resample`).
* The sender starts the reference at its first sample when the media path
  comes up and loops it for as long as the call lasts, so what was sent is the
  reference repeated. The receiver's file starts at the first decoded frame.
* The delay is the lag within +-MAX_LAG_S at the peak of the normalised
  cross-correlation of ALIGN_WINDOW_S of received audio, from its first active
  10 ms, against the looped reference. Only the start is measured: later,
  dropped frames make the received audio drift, and PESQ's own time alignment
  (P.862 clause 10.1, per utterance) follows that drift. ``aligned_offset_ms``
  is the delay: positive when the received file has that much audio before the
  reference's first sample (codec and buffering delay: +6.5 ms on a clean lab
  call, Opus's look-ahead), which is dropped; negative when the receiver
  started that far into the reference (its first frames were lost), which is
  met by starting the reference there. A peak under MIN_CORRELATION is not
  trusted: the delay is taken as 0 (the expectation for a call) and the detail
  says so.
* One reference period is scored: the first reference-length span of the
  aligned received audio against the same span of the looped reference (which
  wraps around the reference's end when the receiver started late). Audio past
  that span (the next loop; the recorder runs on past --media-seconds until
  the peer stops) is not scored: PESQ is meant for samples of a few
  sentences (ITU-T P.862.3 clause 7.1).
* The span is as long as the received audio, so lost audio does not count
  unless the caller passes ``expected_s`` (the media window): then the received
  audio is padded with silence to that length and the missing audio scores as
  silence.

What is not a score: a degraded file that is missing or (near-)silent, more
than SILENCE_BELOW_DB under the reference, is total loss and scores the floor
with status "silence-floor"; PESQ finding no utterance scores the floor with
"no-utterance"; under MIN_SCORED_S of audio to compare (or PESQ's own "below
1/4 second") scores the floor with "too-short". None of these raise.

The floor, PESQ_WB_FLOOR = 1.0427: ITU-T P.862 (02/2001) gives the raw PESQ
score a range of -0.5 to 4.5, and ITU-T P.862.2's mapping function (also in
the pesq package's C source, pesqmain.h) takes a raw score x to the wideband
MOS-LQO 0.999 + 4 / (1 + exp(-1.3669 x + 3.8224)); at x = -0.5 that is 1.0427
(and at 4.5, 4.6443, the score of identical signals). The reference
implementation does not clamp the raw score, so a very bad but real signal can
map slightly below 1.0427; such scores are raised to the floor so that no real
signal scores under total loss.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pesq

from harness.measure.speech import PESQ_RATE, Samples, read_wav, resample

PesqStatus = Literal["ok", "silence-floor", "no-utterance", "too-short", "unreadable"]


def p862_2_mos_lqo(raw: float) -> float:
    """ITU-T P.862.2 mapping: raw P.862 score -> wideband MOS-LQO."""
    return 0.999 + 4.0 / (1.0 + math.exp(-1.3669 * raw + 3.8224))


PESQ_WB_FLOOR = p862_2_mos_lqo(-0.5)  # 1.0427
PESQ_WB_CEILING = p862_2_mos_lqo(4.5)  # 4.6443
MAX_LAG_S = 1.0
ALIGN_WINDOW_S = 1.0
ACTIVE_RANGE_DB = 40.0
MIN_SCORED_S = 1.0
SILENCE_BELOW_DB = 50.0
MIN_CORRELATION = 0.3


@dataclass(frozen=True)
class PesqResult:
    mos_lqo: float
    status: PesqStatus
    detail: str
    aligned_offset_ms: float  # > 0: received audio late (lead dropped); < 0: receiver started late


@dataclass(frozen=True)
class Alignment:
    delay: int  # samples at PESQ_RATE, sign as PesqResult.aligned_offset_ms
    correlation: float  # normalised peak, 0..1
    trusted: bool


def pesq_wb(reference_wav: Path, degraded_wav: Path,
            expected_s: float | None = None) -> PesqResult:
    """PESQ-WB MOS-LQO of *degraded_wav* (what a peer received) against
    *reference_wav* (what was sent, looped).

    *expected_s*: how much audio the receiver should have heard (the call's media
    window). The recorder drops lost frames, so a lossy call leaves a short file;
    given *expected_s*, the received audio is padded with silence to that length
    (at most one reference period) and the missing audio counts against the
    score. Without it only the audio that arrived is compared, and a file too
    short to compare scores the floor as "too-short".

    A missing reference raises; a missing degraded file is total loss (the
    recorder writes none when no frame arrives) and scores the floor; so does
    an unreadable one (status "unreadable": the recorder was killed)."""
    ref = load_16k(reference_wav)
    if ref.size < MIN_SCORED_S * PESQ_RATE:
        return _floor("too-short", f"reference is {ref.size / PESQ_RATE:.2f} s, "
                      f"under {MIN_SCORED_S:.1f} s")
    if not degraded_wav.exists():
        return _floor("silence-floor", f"no degraded file {degraded_wav.name}: nothing received")
    try:
        deg = load_16k(degraded_wav)
    except (EOFError, wave.Error, ValueError) as exc:
        # A recorder killed before it wrote its header (e.g. its peer crashed).
        return _floor("unreadable", f"{degraded_wav.name} is not a readable WAV "
                      f"({type(exc).__name__}: {exc}); nothing to score")
    if is_silent(deg, ref):
        return _floor("silence-floor", f"received audio is {_level_below_db(deg, ref):.0f} dB "
                      "under the reference: total loss")
    alignment = align(ref, deg)
    expected = 0 if expected_s is None else int(expected_s * PESQ_RATE)
    ref_span, deg_span = aligned_spans(ref, deg, alignment.delay, expected)
    offset_ms = 1000.0 * alignment.delay / PESQ_RATE
    about = _describe(alignment, ref, deg, deg_span.size, expected)
    if deg_span.size < MIN_SCORED_S * PESQ_RATE:
        return _floor("too-short", f"{deg_span.size / PESQ_RATE:.2f} s to compare, under "
                      f"{MIN_SCORED_S:.1f} s; {about}", offset_ms)
    if is_silent(deg_span, ref_span):
        return _floor("silence-floor", "aligned received audio is silent; " + about, offset_ms)
    return _score(ref_span, deg_span, about, offset_ms)


def load_16k(path: Path) -> Samples:
    """A 16-bit WAV as mono float32 at PESQ_RATE."""
    samples, rate = read_wav(path)
    return resample(samples, rate, PESQ_RATE)


def is_silent(deg: Samples, ref: Samples) -> bool:
    """True when *deg* is more than SILENCE_BELOW_DB under *ref* (or all zero)."""
    return _level_below_db(deg, ref) > SILENCE_BELOW_DB


def align(ref: Samples, deg: Samples) -> Alignment:
    """The delay of *deg* against the looped *ref*, within +-MAX_LAG_S (and under
    half the reference): the peak of the normalised cross-correlation of
    ALIGN_WINDOW_S of *deg* from its first active 10 ms against the looped *ref*.
    A short window at the start measures where the received audio starts, before
    lost (dropped) frames make it drift; PESQ follows the drift per utterance."""
    period = ref.size
    max_lag = min(int(MAX_LAG_S * PESQ_RATE), period // 2)
    start = first_active(deg)
    seg = deg[start: start + min(period, int(ALIGN_WINDOW_S * PESQ_RATE))].astype(np.float64)
    # looped[i] = ref[(start + i - max_lag) mod period], i in [0, seg.size + 2 max_lag)
    looped = np.take(ref.astype(np.float64),
                     np.arange(start - max_lag, start + seg.size + max_lag) % period)
    corr = _xcorr(seg, looped)  # corr[j] = sum_n seg[n] * looped[n + j], j in [0, 2 max_lag]
    energy = np.concatenate(([0.0], np.cumsum(looped**2)))
    window = energy[seg.size: seg.size + corr.size] - energy[: corr.size]
    norm = np.sqrt(np.maximum(window, 0.0) * float(np.sum(seg**2)))
    score = np.divide(corr, norm, out=np.zeros_like(corr), where=norm > 0)
    best = int(np.argmax(score))
    peak = float(score[best])
    if peak < MIN_CORRELATION:
        return Alignment(0, peak, False)
    return Alignment(max_lag - best, peak, True)


def first_active(samples: Samples) -> int:
    """Start of the first 10 ms block within ACTIVE_RANGE_DB of the loudest one (0 if none)."""
    block = PESQ_RATE // 100
    usable = samples[: samples.size - samples.size % block].astype(np.float64)
    if usable.size == 0:
        return 0
    power = np.mean(usable.reshape(-1, block) ** 2, axis=1)
    active = np.flatnonzero(power >= power.max() * 10 ** (-ACTIVE_RANGE_DB / 10))
    return int(active[0]) * block if active.size else 0


def aligned_spans(ref: Samples, deg: Samples, delay: int,
                  expected: int = 0) -> tuple[Samples, Samples]:
    """Equal-length spans of at most one reference period: *deg* without its first
    *delay* samples (delay > 0), against the looped reference from sample -delay
    (delay < 0) or 0. The *deg* span is padded with silence to *expected* samples."""
    deg_start, ref_start = max(delay, 0), max(-delay, 0)
    available = max(deg.size - deg_start, 0)
    length = min(max(available, expected), ref.size)
    ref_span = np.take(ref, np.arange(ref_start, ref_start + length) % ref.size)
    deg_span = np.zeros(length, dtype=np.float32)
    got = min(available, length)
    deg_span[:got] = deg[deg_start: deg_start + got]
    return ref_span, deg_span


def _xcorr(seg: np.ndarray, longer: np.ndarray) -> np.ndarray:
    size = 1 << int(seg.size + longer.size - 1).bit_length()
    spectrum = np.fft.rfft(longer, size) * np.conj(np.fft.rfft(seg, size))
    lags = longer.size - seg.size + 1
    return np.asarray(np.fft.irfft(spectrum, size)[:lags])


def _score(ref: Samples, deg: Samples, about: str, offset_ms: float) -> PesqResult:
    try:
        mos = float(pesq.pesq(PESQ_RATE, ref.astype(np.float64), deg.astype(np.float64), "wb"))
    except pesq.NoUtterancesError as exc:
        return _floor("no-utterance", f"PESQ: {_message(exc)}; {about}", offset_ms)
    except pesq.BufferTooShortError as exc:
        return _floor("too-short", f"PESQ: {_message(exc)}; {about}", offset_ms)
    if not math.isfinite(mos):
        return _floor("no-utterance", f"PESQ gave {mos}; {about}", offset_ms)
    if mos < PESQ_WB_FLOOR:
        return PesqResult(PESQ_WB_FLOOR, "ok", f"raised from {mos:.4f} to the floor; {about}",
                          offset_ms)
    return PesqResult(mos, "ok", about, offset_ms)


def _floor(status: PesqStatus, detail: str, offset_ms: float = 0.0) -> PesqResult:
    return PesqResult(PESQ_WB_FLOOR, status, detail, offset_ms)


def _level_below_db(deg: Samples, ref: Samples) -> float:
    """How far the RMS of *deg* is under that of *ref*, in dB (inf for all-zero)."""
    deg_rms = math.sqrt(float(np.mean(deg.astype(np.float64) ** 2))) if deg.size else 0.0
    ref_rms = math.sqrt(float(np.mean(ref.astype(np.float64) ** 2))) if ref.size else 0.0
    if deg_rms == 0.0:
        return math.inf
    if ref_rms == 0.0:
        return -math.inf
    return 20.0 * math.log10(ref_rms / deg_rms)


def _describe(alignment: Alignment, ref: Samples, deg: Samples, scored: int,
              expected: int) -> str:
    offset = 1000.0 * alignment.delay / PESQ_RATE
    how = (f"aligned {offset:+.0f} ms" if alignment.trusted
           else "no alignment found, offset taken as 0 ms")
    received = max(deg.size - max(alignment.delay, 0), 0)
    padded = f", {(scored - received) / PESQ_RATE:.2f} s of it silence padding" if (
        expected and scored > received) else ""
    return (f"{how} (peak correlation {alignment.correlation:.2f}); scored "
            f"{scored / PESQ_RATE:.2f} s{padded}; {deg.size / PESQ_RATE:.2f} s received, "
            f"reference {ref.size / PESQ_RATE:.2f} s")


def _message(exc: Exception) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).strip()
