"""PESQ-WB against espeak-ng reference speech: alignment, loss, silence, short files."""

from __future__ import annotations

import random
import shutil
import wave
from pathlib import Path

import pytest

pytest.importorskip("numpy", reason="needs the PyPI package numpy")
pytest.importorskip("soxr", reason="needs the PyPI package soxr")
pytest.importorskip("pesq", reason="needs the PyPI package pesq")

import numpy as np  # noqa: E402

from harness.measure import speech  # noqa: E402
from harness.measure.pesq_score import PESQ_WB_FLOOR, pesq_wb  # noqa: E402
from harness.measure.speech import (  # noqa: E402
    ReferenceSpeech,
    Samples,
    SpeechSynthesisError,
    read_wav,
    reference_speech,
    write_wav,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="needs the Debian package espeak-ng")


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> ReferenceSpeech:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs the Debian package espeak-ng")
    return reference_speech(tmp_path_factory.mktemp("speech-cache"))


@pytest.fixture(scope="module")
def sent(ref: ReferenceSpeech) -> Samples:
    samples, rate = read_wav(ref.wav_48k)
    assert rate == 48000
    return samples


def received(tmp_path: Path, samples: Samples) -> Path:
    return write_wav(tmp_path / "received.wav", samples, 48000)


@needs_espeak
def test_reference_is_48k_mono_16bit_speech_of_about_nine_seconds(ref: ReferenceSpeech) -> None:
    with wave.open(str(ref.wav_48k)) as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (1, 2,
                                                                                          48000)
    with wave.open(str(ref.wav_16k)) as handle:
        assert handle.getframerate() == 16000
    assert 8.0 <= ref.seconds <= 10.0


@needs_espeak
def test_reference_is_cached_under_its_key(ref: ReferenceSpeech) -> None:
    before = ref.wav_48k.stat().st_mtime_ns, ref.wav_48k.read_bytes()
    again = reference_speech(ref.wav_48k.parent)
    assert again == ref
    assert (again.wav_48k.stat().st_mtime_ns, again.wav_48k.read_bytes()) == before


@needs_espeak
def test_reference_is_deterministic(ref: ReferenceSpeech, tmp_path: Path) -> None:
    fresh = reference_speech(tmp_path)
    assert fresh.key == ref.key
    assert fresh.wav_48k.read_bytes() == ref.wav_48k.read_bytes()
    assert fresh.wav_16k.read_bytes() == ref.wav_16k.read_bytes()


def test_missing_espeak_names_the_debian_package(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(SpeechSynthesisError, match="Debian package 'espeak-ng'"):
        reference_speech(tmp_path)


def test_floor_is_p862_2_mapping_of_the_lowest_raw_score() -> None:
    assert PESQ_WB_FLOOR == pytest.approx(1.0427, abs=1e-4)


def test_identical_signals_score_high(ref: ReferenceSpeech, sent: Samples,
                                      tmp_path: Path) -> None:
    result = pesq_wb(ref.wav_48k, received(tmp_path, sent))
    assert result.status == "ok", result
    assert result.mos_lqo >= 4.0, result
    assert result.aligned_offset_ms == 0.0


def test_the_16k_copy_scores_like_the_48k_reference(ref: ReferenceSpeech, sent: Samples,
                                                    tmp_path: Path) -> None:
    path = received(tmp_path, sent)
    assert pesq_wb(ref.wav_16k, path).mos_lqo == pytest.approx(
        pesq_wb(ref.wav_48k, path).mos_lqo, abs=0.01)


def test_zeroing_a_fifth_of_the_frames_scores_clearly_lower(ref: ReferenceSpeech,
                                                            sent: Samples,
                                                            tmp_path: Path) -> None:
    clean = pesq_wb(ref.wav_48k, received(tmp_path, sent))
    frame = 48000 // 50
    frames = sent.size // frame
    lossy = sent.copy()
    for index in random.Random(7).sample(range(frames), frames // 5):
        lossy[index * frame: (index + 1) * frame] = 0.0
    result = pesq_wb(ref.wav_48k, received(tmp_path, lossy))
    assert result.status == "ok", result
    assert result.mos_lqo < 3.0, result
    assert result.mos_lqo < clean.mos_lqo - 1.0


def test_silence_scores_the_floor(ref: ReferenceSpeech, sent: Samples, tmp_path: Path) -> None:
    result = pesq_wb(ref.wav_48k, received(tmp_path, np.zeros_like(sent)))
    assert result.status == "silence-floor", result
    assert result.mos_lqo == PESQ_WB_FLOOR


def test_near_silence_scores_the_floor(ref: ReferenceSpeech, sent: Samples,
                                       tmp_path: Path) -> None:
    result = pesq_wb(ref.wav_48k, received(tmp_path, sent * 1e-4))
    assert (result.status, result.mos_lqo) == ("silence-floor", PESQ_WB_FLOOR)


def test_no_received_file_is_total_loss(ref: ReferenceSpeech, tmp_path: Path) -> None:
    result = pesq_wb(ref.wav_48k, tmp_path / "never-written.wav")
    assert (result.status, result.mos_lqo) == ("silence-floor", PESQ_WB_FLOOR)


def test_delayed_copy_is_aligned_and_scores_high(ref: ReferenceSpeech, sent: Samples,
                                                 tmp_path: Path) -> None:
    delay = np.zeros(int(0.120 * 48000), dtype=np.float32)
    result = pesq_wb(ref.wav_48k, received(tmp_path, np.concatenate([delay, sent])))
    assert result.status == "ok", result
    assert result.mos_lqo >= 4.0, result
    assert result.aligned_offset_ms == pytest.approx(120.0, abs=1.0)


def test_receiver_starting_late_into_a_looped_sender_scores_high(
        ref: ReferenceSpeech, sent: Samples, tmp_path: Path) -> None:
    late = int(0.300 * 48000)
    looped = np.concatenate([sent[late:], sent, sent])  # joined the call 300 ms in
    result = pesq_wb(ref.wav_48k, received(tmp_path, looped))
    assert result.status == "ok", result
    assert result.mos_lqo >= 4.0, result
    assert result.aligned_offset_ms == pytest.approx(-300.0, abs=1.0)


def test_missing_audio_counts_when_the_expected_length_is_given(
        ref: ReferenceSpeech, sent: Samples, tmp_path: Path) -> None:
    half = received(tmp_path, sent[: sent.size // 2])
    assert pesq_wb(ref.wav_48k, half).mos_lqo >= 4.0
    result = pesq_wb(ref.wav_48k, half, expected_s=ref.seconds)
    assert result.status == "ok", result
    assert result.mos_lqo < 3.0, result


def test_too_short_file_gives_a_status(ref: ReferenceSpeech, sent: Samples,
                                       tmp_path: Path) -> None:
    snippet = sent[int(0.5 * 48000): int(0.8 * 48000)]
    result = pesq_wb(ref.wav_48k, received(tmp_path, snippet))
    assert result.status == "too-short", result
    assert result.mos_lqo == PESQ_WB_FLOOR


def test_no_utterance_gives_a_status(sent: Samples, tmp_path: Path) -> None:
    silent_ref = write_wav(tmp_path / "silent-reference.wav", np.zeros_like(sent), 48000)
    result = pesq_wb(silent_ref, received(tmp_path, sent))
    assert result.status == "no-utterance", result
    assert result.mos_lqo == PESQ_WB_FLOOR


@needs_espeak
def test_an_unreadable_received_file_scores_the_floor_and_says_why(
        ref: ReferenceSpeech, tmp_path: Path) -> None:
    reference = ref.wav_48k
    truncated = tmp_path / "received.wav"
    truncated.write_bytes(b"")  # a recorder killed before its header
    result = pesq_wb(reference, truncated)
    assert result.status == "unreadable" and result.mos_lqo == PESQ_WB_FLOOR
    assert "not a readable WAV" in result.detail
