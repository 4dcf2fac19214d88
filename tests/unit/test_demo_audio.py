"""A phase's received audio: cut from the call's WAV at the right samples, and
scored by PESQ-WB against the reference turned to where the cut begins."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from harness.calls.app.opus import WavRecorder
from harness.demo.audio import cut_wav, loop_offset, phase_pesq, wav_seconds
from harness.measure.pesq_score import load_16k
from harness.measure.refsignal import generate_reference_wav
from harness.measure.speech import PESQ_RATE, read_wav, write_wav


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_reference_wav(tmp_path_factory.mktemp("ref") / "ref.wav", 6.0)


def _looped(reference: Path, start_s: float, seconds: float, target: Path) -> Path:
    """What a receiver records of the looped reference from `start_s` on."""
    samples, rate = read_wav(reference)
    index = (np.arange(int(seconds * rate)) + int(start_s * rate)) % samples.size
    return write_wav(target, samples[index], rate)


def test_cut_takes_exactly_the_asked_samples(tmp_path: Path) -> None:
    source = write_wav(tmp_path / "in.wav", np.linspace(-0.5, 0.5, 48000 * 3,
                                                        dtype=np.float32), 48000)
    seconds = cut_wav(source, 1.0, 2.5, tmp_path / "out.wav")
    assert seconds == 1.5
    cut, rate = read_wav(tmp_path / "out.wav")
    whole, _ = read_wav(source)
    assert rate == 48000 and np.array_equal(cut, whole[48000:120000])
    assert cut_wav(source, 5.0, 6.0, tmp_path / "none.wav") is None
    assert cut_wav(tmp_path / "missing.wav", 0, 1, tmp_path / "x.wav") is None


def test_the_loop_offset_is_found_anywhere_in_the_reference(reference: Path,
                                                            tmp_path: Path) -> None:
    ref = load_16k(reference)
    for start_s in (0.0, 1.3, 4.75):
        received = load_16k(_looped(reference, start_s, 4.0, tmp_path / "rx.wav"))
        offset = loop_offset(ref, received)
        assert abs(offset - int(start_s * PESQ_RATE)) <= PESQ_RATE // 100  # within 10 ms


def test_a_clean_cut_from_mid_call_scores_high(reference: Path, tmp_path: Path) -> None:
    cut = _looped(reference, 3.2, 5.0, tmp_path / "cut.wav")
    score = phase_pesq(reference, cut, 5.0, tmp_path / "turned.wav")
    assert score.status == "ok" and score.mos_lqo > 4.0


def test_a_cut_with_lost_frames_scores_low(reference: Path, tmp_path: Path) -> None:
    cut = _looped(reference, 2.0, 5.0, tmp_path / "cut.wav")
    samples, rate = read_wav(cut)
    frame = rate * 60 // 1000
    rng = np.random.default_rng(7)
    for index in range(samples.size // frame):
        if rng.random() < 0.3:  # 30 % of 60 ms frames lost, kept as silence
            samples[index * frame:(index + 1) * frame] = 0.0
    lossy = write_wav(tmp_path / "lossy.wav", samples, rate)
    assert phase_pesq(reference, lossy, 5.0, tmp_path / "turned.wav").mos_lqo < 3.0


def test_the_recorder_can_be_read_while_it_writes(tmp_path: Path) -> None:
    path = tmp_path / "rx.wav"
    recorder = WavRecorder(path)
    recorder.add(np.full(960, 1000, dtype=np.int16))
    recorder.add_silence(960)
    assert recorder.recorded_s == pytest.approx(0.04)
    assert wav_seconds(path) == pytest.approx(0.04)  # the header is already up to date
    recorder.add(np.full(480, -1000, dtype=np.int16))
    recorder.close()
    with wave.open(str(path), "rb") as handle:
        assert handle.getnframes() == 2400
    assert not (tmp_path / "none.wav").exists()
    WavRecorder(tmp_path / "none.wav").close()
    assert not (tmp_path / "none.wav").exists()
