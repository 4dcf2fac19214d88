"""The browser's received audio: WebM chunks (as MediaRecorder hands them
over) appended and decoded with PyAV into the 16-bit mono WAV that PESQ
reads (harness.calls.browser.recording)."""

from __future__ import annotations

import math
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from harness.calls.browser.recording import Recording, decode_to_wav


def _webm(path: Path, seconds: float, codec: str = "libopus") -> bytes:
    """A WebM file of a 440 Hz tone, stereo at 48 kHz as Chromium records it."""
    rate = 48000
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        frame_samples = 960
        for index in range(int(seconds * rate / frame_samples)):
            t = (np.arange(frame_samples) + index * frame_samples) / rate
            tone = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
            planes = np.stack([tone, tone])
            frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = index * frame_samples
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 48000)
        return wav.getnframes() / wav.getframerate()


def test_chunks_appended_in_order_decode_to_the_wav(tmp_path: Path) -> None:
    data = _webm(tmp_path / "source.webm", 2.0)
    recording = Recording(tmp_path / "callee-received.wav")
    for start in range(0, len(data), 4096):  # as the page's 250 ms slices arrive
        recording.append(data[start:start + 4096])
    seconds = recording.to_wav()
    assert seconds is not None and abs(seconds - 2.0) < 0.05
    assert abs(_wav_seconds(tmp_path / "callee-received.wav") - seconds) < 1e-6
    assert not recording.raw.exists()  # decoded: the raw WebM is gone


def test_nothing_recorded_writes_no_wav(tmp_path: Path) -> None:
    recording = Recording(tmp_path / "rx.wav")
    assert recording.to_wav() is None
    assert not (tmp_path / "rx.wav").exists()


def test_a_recording_cut_short_keeps_what_decoded(tmp_path: Path) -> None:
    data = _webm(tmp_path / "source.webm", 2.0)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) * 3 // 4])
    written = decode_to_wav(cut, tmp_path / "cut.wav")
    assert 0.8 < written / 48000 < 2.0
