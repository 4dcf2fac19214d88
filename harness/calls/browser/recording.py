"""The received audio: what the page's MediaRecorder hands over (WebM,
uncompressed PCM where Chromium offers it, else Opus) is appended to a file
as it comes, and decoded with PyAV into the 16-bit mono WAV the aiortc peer
writes, so PESQ reads either the same way."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import BinaryIO

import av

WAV_RATE = 48000


class Recording:
    """The recorder's chunks, in order, in one file next to the WAV."""

    def __init__(self, wav: Path) -> None:
        self.wav = wav
        self.raw = wav.with_suffix(".webm")
        self.bytes = 0
        self.mime_type: str | None = None
        self._file: BinaryIO | None = None

    def append(self, data: bytes) -> None:
        if self._file is None:
            self._file = self.raw.open("wb")
        self._file.write(data)
        self.bytes += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def to_wav(self, rate: int = WAV_RATE) -> float | None:
        """Decode what was recorded into the WAV; its length in seconds (None
        when nothing was recorded). The raw file is removed once decoded."""
        self.close()
        if not self.bytes:
            return None
        samples = decode_to_wav(self.raw, self.wav, rate)
        self.raw.unlink(missing_ok=True)
        return samples / rate


def decode_to_wav(source: Path, target: Path, rate: int = WAV_RATE) -> int:
    """Every audio frame of `source` as 16-bit mono PCM at `rate` into the
    WAV `target`; the number of samples written. A recording cut short (the
    browser stopped mid-chunk) keeps what decoded before the cut."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    written = 0
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)

        def write(frames: list[av.AudioFrame]) -> None:
            nonlocal written
            for frame in frames:
                out.writeframes(bytes(frame.planes[0])[: frame.samples * 2])
                written += frame.samples

        try:
            with av.open(str(source)) as container:
                for frame in container.decode(audio=0):
                    write(resampler.resample(frame))
        except (av.FFmpegError, EOFError):
            pass  # a truncated last chunk: keep what decoded
        write(resampler.resample(None))
    return written
