"""Deterministic speech-like reference audio (mono, 16-bit PCM WAV), stdlib only.

The signal is a sequence of "words" made of "syllables" separated by short and
long pauses. Each syllable is a harmonic "vowel": a glottal-like harmonic series
on a gliding fundamental (male/female range), shaped by the formants of one of
five vowels, with a syllable-rate amplitude envelope and an optional short
noise burst ("consonant") at its onset. The same (duration, rate, seed) always
gives the same samples.

CLI: ``python -m harness.measure.refsignal --out ref.wav --seconds 10 [--rate 48000] [--seed 1]``
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_RATES = (16000, 48000)
TABLE_SIZE = 2048
PEAK = 0.7  # of full scale
MAX_HARMONIC_HZ = 4000.0
FORMANT_BANDWIDTH_HZ = 90.0

# (F1, F2, F3) in Hz of five vowels, roughly /a e i o u/.
VOWELS: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
)


@dataclass(frozen=True)
class Syllable:
    start: int  # sample index
    length: int  # samples
    f0_start: float
    f0_end: float
    vowel: int
    level: float  # 0..1
    burst: int  # samples of onset noise (0 = none)


def _formant_gain(freq: float, formants: tuple[float, float, float]) -> float:
    gain = 0.0
    for index, centre in enumerate(formants):
        ratio = (freq - centre) / FORMANT_BANDWIDTH_HZ
        gain += (0.5**index) / (1.0 + ratio * ratio)
    return gain


def _vowel_table(f0: float, formants: tuple[float, float, float], nyquist: float) -> list[float]:
    """One period of the vowel at fundamental *f0*, normalised to peak 1."""
    top = min(MAX_HARMONIC_HZ, 0.9 * nyquist)
    weights = [
        _formant_gain(k * f0, formants) / k
        for k in range(1, int(top // f0) + 1)
    ]
    table = []
    for i in range(TABLE_SIZE):
        phase = 2.0 * math.pi * i / TABLE_SIZE
        table.append(sum(w * math.sin((k + 1) * phase) for k, w in enumerate(weights)))
    peak = max(abs(v) for v in table) or 1.0
    return [v / peak for v in table]


def _envelope(i: int, length: int) -> float:
    """Syllable amplitude: smooth rise and fall (raised-sine)."""
    return math.sin(math.pi * (i + 0.5) / length) ** 0.8


def _plan(duration_s: float, rate: int, rng: random.Random) -> list[Syllable]:
    total = int(duration_s * rate)
    syllables: list[Syllable] = []
    pos = int(rng.uniform(0.05, 0.15) * rate)
    base_f0 = rng.uniform(100.0, 210.0)
    while pos < total:
        for _ in range(rng.randint(1, 4)):
            syl = _syllable(pos, rate, base_f0, rng)
            if syl.start + syl.length > total:
                return syllables
            syllables.append(syl)
            pos = syl.start + syl.length + int(rng.uniform(0.02, 0.06) * rate)
        pause = rng.uniform(0.5, 0.9) if rng.random() < 0.25 else rng.uniform(0.12, 0.3)
        pos += int(pause * rate)
    return syllables


def _syllable(pos: int, rate: int, base_f0: float, rng: random.Random) -> Syllable:
    f0 = base_f0 * rng.uniform(0.85, 1.2)
    burst = int(rng.uniform(0.015, 0.04) * rate) if rng.random() < 0.5 else 0
    return Syllable(
        start=pos,
        length=int(rng.uniform(0.12, 0.28) * rate),
        f0_start=f0,
        f0_end=f0 * rng.uniform(0.88, 1.08),
        vowel=rng.randrange(len(VOWELS)),
        level=rng.uniform(0.55, 1.0),
        burst=burst,
    )


def _render_syllable(out: list[float], syl: Syllable, rate: int, rng: random.Random) -> None:
    mean_f0 = 0.5 * (syl.f0_start + syl.f0_end)
    table = _vowel_table(mean_f0, VOWELS[syl.vowel], rate / 2.0)
    phase = 0.0
    for i in range(syl.length):
        f0 = syl.f0_start + (syl.f0_end - syl.f0_start) * i / syl.length
        phase = (phase + f0 * TABLE_SIZE / rate) % TABLE_SIZE
        index = int(phase)
        frac = phase - index
        a, b = table[index], table[(index + 1) % TABLE_SIZE]
        out[syl.start + i] += syl.level * _envelope(i, syl.length) * (a + (b - a) * frac)
    for i in range(min(syl.burst, syl.length)):
        decay = 1.0 - i / syl.burst
        out[syl.start + i] += 0.25 * syl.level * decay * rng.uniform(-1.0, 1.0)


def reference_samples(duration_s: float, sample_rate: int = 48000, seed: int = 1) -> array:
    """16-bit signed samples (``array('h')``) of the reference signal."""
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"sample_rate must be one of {SUPPORTED_RATES}")
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    rng = random.Random(seed)
    signal = [0.0] * int(duration_s * sample_rate)
    for syl in _plan(duration_s, sample_rate, rng):
        _render_syllable(signal, syl, sample_rate, rng)
    peak = max((abs(v) for v in signal), default=0.0) or 1.0
    scale = PEAK * 32767.0 / peak
    return array("h", (int(round(v * scale)) for v in signal))


def write_wav(path: Path, samples: array, sample_rate: int) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        data = samples if sys.byteorder == "little" else _swapped(samples)
        handle.writeframes(data.tobytes())
    return path


def _swapped(samples: array) -> array:
    copy = array("h", samples)
    copy.byteswap()
    return copy


def generate_reference_wav(
    path: Path, duration_s: float, sample_rate: int = 48000, seed: int = 1
) -> Path:
    """Write the reference signal as a mono 16-bit WAV at *path* and return it."""
    return write_wav(path, reference_samples(duration_s, sample_rate, seed), sample_rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write a speech-like reference WAV")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=48000, choices=SUPPORTED_RATES)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    generate_reference_wav(args.out, args.seconds, args.rate, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
