"""The Opus wrapper of the app-like profiles: real libopus through PyAV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.calls.app.media import OpusSender, change_bitrate
from harness.calls.app.opus import (
    DECODED_RATE,
    OpusDecoder,
    OpusEncoder,
    OpusError,
    OpusSettings,
    WavRecorder,
    load_reference,
    looped_frames,
)
from harness.measure.pesq_score import read_wav
from harness.measure.refsignal import generate_reference_wav


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("opus") / "ref.wav"
    generate_reference_wav(path, 3.0)
    return path


def _mean_packet_bytes(encoder: OpusEncoder, frames: list[np.ndarray]) -> float:
    return float(np.mean([len(encoder.encode(f)) for f in frames]))


def test_sixty_ms_frames_decode_to_sixty_ms(reference: Path) -> None:
    settings = OpusSettings(sample_rate=16000, frame_ms=60, bitrate=16000)
    pcm = load_reference(reference, 16000)
    assert pcm.size == pytest.approx(3.0 * 16000, abs=200)
    encoder, decoder = OpusEncoder(settings), OpusDecoder()
    frames = looped_frames(pcm, settings.frame_samples)
    decoded = [decoder.decode(encoder.encode(next(frames))) for _ in range(10)]
    assert all(d.size == DECODED_RATE * 60 // 1000 for d in decoded)
    assert np.abs(np.concatenate(decoded[3:])).mean() > 100  # speech-like, not silence


def test_bitrate_follows_reconfiguration(reference: Path) -> None:
    pcm = load_reference(reference, 48000)
    high = OpusSettings(sample_rate=48000, frame_ms=60, bitrate=20000)
    low = OpusSettings(sample_rate=48000, frame_ms=60, bitrate=8000, fec=True,
                       expected_loss_pct=20)
    frames = [f.copy() for f, _ in zip(looped_frames(pcm, high.frame_samples), range(30),
                                       strict=False)]
    encoder = OpusEncoder(high)
    at_high = _mean_packet_bytes(encoder, frames)
    encoder.reconfigure(low)
    at_low = _mean_packet_bytes(encoder, frames)
    # 60 ms at 20 kbit/s is 150 bytes, at 8 kbit/s 60 bytes (Opus is VBR: loosely).
    assert 100 < at_high < 200
    assert 40 < at_low < 80


def test_whatsapp_like_range_24_to_6_kbit_decodes_at_every_step(reference: Path) -> None:
    """The whatsapp-like controller's range on 16 kHz speech: each bitrate it
    can step to gives packets of about its size and decodable 60 ms frames,
    and the encoder follows the changes mid-stream."""
    pcm = load_reference(reference, 16000)
    frames = [f.copy() for f, _ in zip(looped_frames(pcm, 960), range(20), strict=False)]
    sender, decoder = OpusSender(reference, OpusSettings(16000, 60, 24000), 16000), OpusDecoder()
    encoder, changes = sender.encoder, list[dict[str, Any]]()
    sizes = {}
    for bitrate in (24000, 16100, 10800, 6000):
        change_bitrate(sender, changes, 0.0, OpusSettings(16000, 60, bitrate), "test")
        packets = [encoder.encode(f) for f in frames]
        assert all(decoder.decode(p).size == DECODED_RATE * 60 // 1000 for p in packets)
        sizes[bitrate] = float(np.mean([len(p) for p in packets]))
    # A 60 ms packet at b bit/s is b * 0.06 / 8 bytes (180 at 24 kbit/s, 45 at 6):
    # libopus's VBR stays under it on this signal (at 16 kHz, far under at the
    # top), and the size falls with every step down.
    assert all(size <= 1.2 * bitrate * 0.06 / 8 for bitrate, size in sizes.items())
    assert sizes[24000] > sizes[16100] > sizes[10800] > sizes[6000] > 20
    assert [c["bitrate"] for c in changes] == [24000, 16100, 10800, 6000]


def test_looped_frames_wrap_around() -> None:
    pcm = np.arange(10, dtype=np.int16)
    frames = looped_frames(pcm, 4)
    got = [next(frames).tolist() for _ in range(3)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]


@pytest.mark.parametrize("kwargs, field", [
    ({"sample_rate": 44100}, "sample_rate"),
    ({"frame_ms": 30}, "frame_ms"),
    ({"bitrate": 1000}, "bitrate"),
    ({"expected_loss_pct": 101}, "expected_loss_pct"),
])
def test_bad_settings_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(OpusError, match=field):
        OpusSettings(**kwargs)  # type: ignore[arg-type]


def test_encoder_refuses_a_wrong_frame_length() -> None:
    with pytest.raises(OpusError, match="expected 960"):
        OpusEncoder(OpusSettings()).encode(np.zeros(100, dtype=np.int16))


def test_recorder_keeps_gaps_as_silence(tmp_path: Path) -> None:
    out = tmp_path / "rx.wav"
    recorder = WavRecorder(out)
    recorder.add(np.full(480, 1000, dtype=np.int16))
    recorder.add_silence(960)
    recorder.add(np.full(480, -1000, dtype=np.int16))
    recorder.close()
    samples, rate = read_wav(out)
    assert rate == DECODED_RATE and len(samples) == 1920
