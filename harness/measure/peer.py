"""What one side of a call reported, read back by the harness as typed values.

Every call client (the aiortc peer, the app-like clients, and any client
added behind harness.calls.base.CallClient) writes its result as JSON; the
harness reads it once, here, into a :class:`PeerReport`, and nothing above
this module handles the raw dict. A peer that wrote nothing gets a report
that says so (``wrote_result`` False), never a guess.

:class:`PeerTimeline` is what the harness itself saw of the peer's process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

# The fields a PeerReport takes from the JSON; everything else stays in `extra`.
_NUMBERS = ("setup_s", "loss_pct", "jitter_ms", "rtt_ms", "relay_rtt_ms",
            "received_bitrate_kbps", "max_frame_gap_ms", "failed_at_s", "frame_ms")
_INTS = ("packets_sent", "packets_received", "packets_lost", "own_ssrc_dropped",
         "text_sent", "text_received")
_TEXTS = ("error", "failure_stage", "detail", "path", "profile", "strategy", "codec")


@dataclass(frozen=True)
class PeerTimeline:
    """What the harness saw of one peer process, in seconds from the call's start
    (the moment the harness started the peers): when the peer began its attempt,
    decoded its first audio frame and declared a failure (from its ``--events``),
    when the process ended, and whether an injected fault killed it or the call's
    hard budget ran out first."""

    role: str
    wrote_result: bool
    attempt_s: float | None = None
    media_s: float | None = None
    failed_s: float | None = None
    exited_s: float | None = None
    killed_s: float | None = None
    stopped_at_budget: bool = False

    def shifted(self, offset_s: float) -> PeerTimeline:
        """The same timeline on a clock that started `offset_s` earlier."""
        def later(value: float | None) -> float | None:
            return None if value is None else round(value + offset_s, 3)

        return replace(self, attempt_s=later(self.attempt_s), media_s=later(self.media_s),
                       failed_s=later(self.failed_s), exited_s=later(self.exited_s),
                       killed_s=later(self.killed_s))


# The receiver's time-scaling counters (W3C webrtc-stats, RTCInboundRtpStreamStats)
# count samples at the decoder's output rate: 48 kHz for Opus in Chromium (a
# 6.1 s window reported 292,800 totalSamplesReceived).
TIME_SCALING_COUNTERS = ("removedSamplesForAcceleration", "insertedSamplesForDeceleration")
PLAYOUT_SAMPLE_RATE_HZ = 48_000


@dataclass(frozen=True)
class PeerReport:
    """One side's result. Times are seconds from the start of its call attempt;
    ``window_s`` is how much of the media window it covered (``media_seconds``
    in the JSON); ``frame_ms`` the audio frame duration it sent (for the
    E-model and for frames expected); ``extra`` holds every other field the
    client reported, unchanged."""

    role: str
    wrote_result: bool = True
    connected: bool = False
    setup_s: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    relay_rtt_ms: float | None = None
    received_bitrate_kbps: float | None = None
    packets_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    own_ssrc_dropped: int | None = None
    # Text messages over the app's chat server (harness.calls.app.text): sent,
    # the other side's that arrived, and whether all of them did (None: this
    # client exchanges no text).
    text_sent: int | None = None
    text_received: int | None = None
    text_ok: bool | None = None
    frames_received: int = 0
    frame_ms: float | None = None
    window_s: float | None = None
    max_frame_gap_ms: float | None = None
    error: str | None = None
    failure_stage: str | None = None
    detail: str | None = None
    failed_at_s: float | None = None
    path: str | None = None
    profile: str | None = None
    strategy: str | None = None
    codec: str | None = None
    selected_pair: Mapping[str, Any] | None = None
    path_changes: tuple[Mapping[str, Any], ...] = ()
    timeline: tuple[Mapping[str, Any], ...] = ()
    # Each change of the audio bitrate the client made (the app-like clients
    # adapt to the loss the other side reports): when (``at_s``), to what
    # (``bitrate`` in bit/s, ``fec``), why, and the loss that decided it.
    bitrate_changes: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], role: str) -> PeerReport:
        """Read a client's JSON; a field of the wrong type is dropped (None),
        never trusted."""
        known = {*_NUMBERS, *_INTS, *_TEXTS, "role", "connected", "frames_received",
                 "media_seconds", "selected_pair", "path_changes", "timeline", "wrote_result",
                 "bitrate_changes",
                 "text_ok"}
        values: dict[str, Any] = {name: _number(raw.get(name)) for name in _NUMBERS}
        values.update({name: _int(raw.get(name)) for name in _INTS})
        values.update({name: _text(raw.get(name)) for name in _TEXTS})
        pair = raw.get("selected_pair")
        return cls(role=role, wrote_result=raw.get("wrote_result", True) is not False,
                   connected=raw.get("connected") is True,
                   text_ok=raw["text_ok"] if isinstance(raw.get("text_ok"), bool) else None,
                   frames_received=_int(raw.get("frames_received")) or 0,
                   window_s=_number(raw.get("media_seconds")),
                   selected_pair=MappingProxyType(dict(pair)) if isinstance(pair, Mapping)
                   else None,
                   path_changes=_rows(raw.get("path_changes")),
                   timeline=_rows(raw.get("timeline")),
                   bitrate_changes=_rows(raw.get("bitrate_changes")),
                   extra=MappingProxyType({k: v for k, v in raw.items() if k not in known}),
                   **values)

    @classmethod
    def read(cls, path: Path, role: str) -> PeerReport | None:
        """The report a client wrote to `path`, or None when there is none (or
        it is not a JSON object)."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls.from_dict(raw, role) if isinstance(raw, dict) else None

    @classmethod
    def absent(cls, role: str, error: str, detail: str = "", *,
               strategy: str | None = None, failed_at_s: float | None = None) -> PeerReport:
        """A side that reported nothing: the harness says why."""
        return cls(role=role, wrote_result=False, error=error, failure_stage="process",
                   detail=detail or None, strategy=strategy, failed_at_s=failed_at_s)

    @property
    def time_scaled_ms(self) -> float | None:
        """Audio the receiver's jitter buffer stretched or compressed in time
        (WebRTC's removedSamplesForAcceleration plus
        insertedSamplesForDeceleration, from the ``playout`` counters a
        browser side reports), in ms at PLAYOUT_SAMPLE_RATE_HZ; None for a
        client that reports no such counters."""
        playout = self.extra.get("playout")
        if not isinstance(playout, Mapping):
            return None
        samples = [_number(playout.get(name)) for name in TIME_SCALING_COUNTERS]
        if any(n is None for n in samples):
            return None
        return 1000.0 * sum(n for n in samples if n is not None) / PLAYOUT_SAMPLE_RATE_HZ

    def frames_expected(self, window_s: float) -> int | None:
        """How many audio frames a full window of `window_s` carries at this
        side's frame duration (None when the duration is unknown)."""
        if self.frame_ms is None or self.frame_ms <= 0:
            return None
        return int(window_s * 1000.0 / self.frame_ms)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape clients write (``media_seconds`` for the window)."""
        out: dict[str, Any] = {"role": self.role, "wrote_result": self.wrote_result,
                               "connected": self.connected, "text_ok": self.text_ok,
                               "frames_received": self.frames_received,
                               "media_seconds": self.window_s,
                               "selected_pair": dict(self.selected_pair)
                               if self.selected_pair is not None else None,
                               "path_changes": [dict(c) for c in self.path_changes],
                               "timeline": [dict(r) for r in self.timeline],
                               "bitrate_changes": [dict(c) for c in self.bitrate_changes]}
        for name in (*_NUMBERS, *_INTS, *_TEXTS):
            out[name] = getattr(self, name)
        out.update(self.extra)
        return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _rows(value: Any) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(MappingProxyType(dict(row)) for row in value if isinstance(row, Mapping))
