"""Reference speech for PESQ: real (synthetic-voice) sentences from espeak-ng.

The peers send a 48 kHz mono 16-bit WAV; PESQ-WB compares at 16 kHz. This
module makes both from a few sentences spoken by espeak-ng (Debian package
``espeak-ng``), joined with pauses so that PESQ finds separate utterances:

    0.5 s silence, sentence 1, 0.8 s, sentence 2, 0.8 s, sentence 3, 0.5 s silence

(about 9 s in all, after ITU-T P.862.3 clause 7's advice on the length, speech
activity and leading and trailing silence of PESQ reference signals).
espeak-ng writes 22050 Hz; the sentences are trimmed of their own leading and
trailing silence, joined, set to an active-speech level of -26 dBFS (peaks held
under -1 dBFS) and resampled with libsoxr (PyPI ``soxr``) to 48 kHz; the 16 kHz
copy is made from the 48 kHz file by the same resampler that
:mod:`harness.measure.pesq_score` uses for the received audio.

The result is cached in a directory the caller names, under a key that hashes
everything the samples depend on (the espeak-ng version, voice, rate, text,
pauses, level and this recipe's version), so the same espeak-ng gives the same
files and a new one gives new files rather than stale ones.

The sentences are from the "Harvard sentences" (IEEE Recommended Practice for
Speech Quality Measurements, 1969, list 1), the usual material for speech
quality tests.

The small WAV helpers (:func:`read_wav`, :func:`write_wav`, :func:`resample`)
are shared with :mod:`harness.measure.pesq_score`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

Samples = npt.NDArray[np.float32]

SENTENCES: tuple[str, ...] = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
)
VOICE = "en-us"
WORDS_PER_MINUTE = 160
LEAD_S = 0.5
GAP_S = 0.8
TAIL_S = 0.5
SEND_RATE = 48000
PESQ_RATE = 16000
ACTIVE_LEVEL_DBFS = -26.0
PEAK_LIMIT_DBFS = -1.0
# |sample| below this (about -60 dBFS) counts as silence when trimming a sentence.
TRIM_THRESHOLD = 1e-3
# 20 ms frames whose RMS is within this many dB of the loudest frame count as active speech.
ACTIVE_RANGE_DB = 40.0
RESAMPLE_QUALITY = "VHQ"
ESPEAK_TIMEOUT_S = 60.0
# Bump when the recipe changes in a way the key would not otherwise see.
RECIPE_VERSION = 1


class SpeechSynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class ReferenceSpeech:
    wav_48k: Path  # what the peers send
    wav_16k: Path  # the same, for PESQ-WB
    seconds: float
    key: str  # content hash naming both files


def reference_speech(cache_dir: Path, sentences: tuple[str, ...] = SENTENCES) -> ReferenceSpeech:
    """The reference speech WAVs (48 kHz and 16 kHz, mono 16-bit) in *cache_dir*,
    made with espeak-ng unless already cached under the same key."""
    key = _cache_key(espeak_version(), sentences)
    wav_48k = cache_dir / f"speech-{key}-48k.wav"
    wav_16k = cache_dir / f"speech-{key}-16k.wav"
    if not (wav_48k.is_file() and wav_16k.is_file()):
        cache_dir.mkdir(parents=True, exist_ok=True)
        send = _compose(sentences)
        _write_atomic(wav_48k, send, SEND_RATE)
        sent, _ = read_wav(wav_48k)  # resample exactly the 16-bit samples that are sent
        _write_atomic(wav_16k, resample(sent, SEND_RATE, PESQ_RATE), PESQ_RATE)
    return ReferenceSpeech(wav_48k, wav_16k, _duration_s(wav_48k), key)


def espeak_version() -> str:
    """espeak-ng's version, e.g. ``1.51``; SpeechSynthesisError if it is missing."""
    out = _run_espeak(["--version"]).decode("utf-8", "replace")
    match = re.search(r"text-to-speech:\s*(\S+)", out)
    return match.group(1) if match else out.strip()


def synthesize(sentence: str) -> tuple[Samples, int]:
    """One sentence spoken by espeak-ng: float samples in [-1, 1] and their rate."""
    with tempfile.TemporaryDirectory(prefix="callwall-espeak-") as tmp:
        out = Path(tmp) / "sentence.wav"
        _run_espeak(["-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(out), sentence])
        return read_wav(out)


def _run_espeak(args: list[str]) -> bytes:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechSynthesisError(
            "espeak-ng is not installed: install the Debian package 'espeak-ng' "
            "(apt-get install espeak-ng)")
    try:
        done = subprocess.run([exe, *args], capture_output=True, check=True,
                              timeout=ESPEAK_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode("utf-8", "replace").strip()
        raise SpeechSynthesisError(f"espeak-ng failed ({exc.returncode}): {stderr}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SpeechSynthesisError(f"espeak-ng took over {ESPEAK_TIMEOUT_S:.0f} s") from exc
    return done.stdout


def _cache_key(version: str, sentences: tuple[str, ...]) -> str:
    recipe = {
        "recipe": RECIPE_VERSION, "espeak_ng": version, "voice": VOICE,
        "wpm": WORDS_PER_MINUTE, "sentences": list(sentences),
        "pauses_s": [LEAD_S, GAP_S, TAIL_S], "level_dbfs": ACTIVE_LEVEL_DBFS,
        "peak_dbfs": PEAK_LIMIT_DBFS, "rates": [SEND_RATE, PESQ_RATE],
        "resampler": f"soxr-{soxr.__version__}-{RESAMPLE_QUALITY}",
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _compose(sentences: tuple[str, ...]) -> Samples:
    """The sentences with their pauses, levelled, at SEND_RATE."""
    if not sentences:
        raise ValueError("no sentences to speak")
    parts: list[Samples] = []
    rate = SEND_RATE
    for index, sentence in enumerate(sentences):
        spoken, rate = synthesize(sentence)
        parts.append(_silence(LEAD_S if index == 0 else GAP_S, rate))
        parts.append(_trim(spoken))
    parts.append(_silence(TAIL_S, rate))
    joined = np.concatenate(parts)
    return _level(resample(joined, rate, SEND_RATE), SEND_RATE)


def _silence(seconds: float, rate: int) -> Samples:
    return np.zeros(int(round(seconds * rate)), dtype=np.float32)


def _trim(samples: Samples) -> Samples:
    loud = np.flatnonzero(np.abs(samples) >= TRIM_THRESHOLD)
    if loud.size == 0:
        raise SpeechSynthesisError("espeak-ng produced silence")
    return samples[loud[0]: loud[-1] + 1]


def _level(samples: Samples, rate: int) -> Samples:
    """Scale to ACTIVE_LEVEL_DBFS over the active 20 ms frames, peaks under PEAK_LIMIT_DBFS."""
    frame = rate // 50
    usable = samples[: samples.size - samples.size % frame].astype(np.float64)
    rms = np.sqrt(np.mean(usable.reshape(-1, frame) ** 2, axis=1))
    active = rms[rms >= rms.max() * 10 ** (-ACTIVE_RANGE_DB / 20)]
    level = float(np.sqrt(np.mean(active**2)))
    gain = 10 ** (ACTIVE_LEVEL_DBFS / 20) / level
    peak = float(np.max(np.abs(samples))) * gain
    limit = 10 ** (PEAK_LIMIT_DBFS / 20)
    if peak > limit:
        gain *= limit / peak
    return (samples * gain).astype(np.float32)


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """Band-limited resampling with libsoxr (deterministic for one soxr build)."""
    if from_rate == to_rate:
        return samples.astype(np.float32, copy=False)
    out = soxr.resample(samples.astype(np.float32, copy=False), from_rate, to_rate,
                        quality=RESAMPLE_QUALITY)
    return np.asarray(out, dtype=np.float32)


def read_wav(path: Path) -> tuple[Samples, int]:
    """A 16-bit PCM WAV as mono float32 samples in [-1, 1] (channels averaged) and its rate."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels, rate = handle.getnchannels(), handle.getframerate()
        raw = handle.readframes(handle.getnframes())
    data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        data = data[: data.size - data.size % channels].reshape(-1, channels).mean(axis=1)
    return data.astype(np.float32, copy=False), rate


def write_wav(path: Path, samples: Samples, rate: int) -> Path:
    """Write float samples in [-1, 1] as a mono 16-bit PCM WAV (clipped, rounded)."""
    pcm = np.clip(np.round(samples.astype(np.float64) * 32768.0), -32768, 32767)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.astype("<i2").tobytes())
    return path


def _write_atomic(path: Path, samples: Samples, rate: int) -> None:
    """Write via a temporary file in the same directory, then rename: a concurrent
    reader sees the old file, no file, or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write_wav(Path(tmp), samples, rate)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _duration_s(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()
