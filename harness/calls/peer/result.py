"""What one side of a call saw (:class:`PeerResult`), written as JSON to ``--out``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiortc.mediastreams import AUDIO_PTIME

from harness.calls.result_file import write_json_atomically

# The audio frame (= packet) duration aiortc sends, in ms (20).
AUDIO_FRAME_MS = round(1000.0 * AUDIO_PTIME, 3)


@dataclass
class SelectedPair:
    """The nominated ICE candidate pair (aioice ``Connection._nominated``)."""

    local_type: str
    local_protocol: str
    local_address: str
    remote_type: str
    remote_protocol: str
    remote_address: str
    # For a local relay candidate: how we reach the TURN server ("udp", "tcp", "tls").
    local_relay_protocol: str | None = None


@dataclass
class PeerResult:
    """What one side of a call saw; written as JSON to ``--out``.

    Times are seconds from the start of the call attempt (caller: creating the
    offer; callee: receiving the offer): ``setup_s`` to the first decoded audio
    frame, ``ice_s`` to ICE completion. ``connected`` means at least one audio
    frame was decoded. The media window runs for ``--media-seconds`` from the
    first frame; ``media_seconds`` is its actual length (shorter when the call
    dropped or was terminated) and the RTP numbers are sampled at its end
    (or at the failure). ``packets_*``, ``loss_pct`` = lost / (received + lost),
    ``jitter_ms`` come from aiortc's inbound-rtp stats (jitter converted from RTP
    timestamp units with the codec clock rate), ``packets_sent`` from
    outbound-rtp. ``received_bitrate_kbps`` counts SRTP/SRTCP bytes received by
    the DTLS transport over the window (no IP/UDP/TURN overhead).
    ``frames_received`` and ``max_frame_gap_ms`` describe decoded audio frames
    in the window; ``frame_ms`` is the frame (= packet) duration this peer
    sends: 20, aiortc's packetisation for every audio codec
    (aiortc.mediastreams.AUDIO_PTIME; its Opus and G.711 encoders frame at it).

    ``rtt_ms`` is the end-to-end round trip between the two peers: aiortc's
    remote-inbound-rtp ``roundTripTime`` (smoothed), which it computes from the
    LSR/DLSR of the peer's RTCP reports about this side's sender reports
    (RFC 3550 §6.4.1: RTT = arrival − LSR − DLSR). The RTCP travels with the
    media, so on a TURN path the round trip includes both legs through the relay
    (``rtt_method`` "rtcp-sr-rr"; null if no report came back).
    ``relay_rtt_ms``, the round trip to the TURN server alone, is not measured by
    this peer and is always null (the app-like clients report theirs).

    ``error`` (null on success) / ``failure_stage`` (signalling, gathering, ice,
    dtls, media):
    signalling-unreachable, signalling-closed, room-full, peer-left (the callee
    left the room before answering), bad-sdp, bad-audio-file, setup-timeout (stage says where
    it got stuck; "media" = transport up but no audio decoded),
    no-local-candidates (no usable candidate, e.g. TURN blocked/unreachable or
    its certificate not trusted), ice-failed, dtls-failed, call-dropped
    (ICE/DTLS failed after media flowed), relay-lost (the TCP/TLS connection
    to the relay that carried the call closed: the relay died or reset it),
    media-stalled (no audio frame decoded for ``--stall-timeout`` seconds during
    the media window),
    peer-hung-up (the remote closed the connection), total-timeout, terminated
    (SIGTERM/SIGINT), and "internal-error: ..." (a bug; exit status 1).

    ``failed_at_s`` (null on success) is when the failure was declared, in
    seconds from the start of the call attempt like ``setup_s``; for a failure
    before the attempt started (e.g. signalling-unreachable), from process
    start. A stall is declared ``--stall-timeout`` after the last decoded frame;
    its open gap counts in ``max_frame_gap_ms``.
    """

    role: str
    strategy: str
    room: str
    connected: bool = False
    setup_s: float | None = None
    ice_s: float | None = None
    ice_state_final: str | None = None
    connection_state_final: str | None = None
    selected_pair: SelectedPair | None = None
    local_candidates: dict[str, int] = field(default_factory=dict)
    remote_candidates: dict[str, int] = field(default_factory=dict)
    codec: str | None = None
    packets_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    rtt_method: str | None = None
    relay_rtt_ms: float | None = None
    received_bitrate_kbps: float | None = None
    frames_received: int = 0
    frame_ms: float = AUDIO_FRAME_MS
    max_frame_gap_ms: float | None = None
    media_seconds: float | None = None
    error: str | None = None
    failure_stage: str | None = None
    started_at: float = 0.0
    duration_s: float = 0.0
    failed_at_s: float | None = None
    # Cumulative RTP counters sampled about once a second during the media window:
    # {"monotonic", "sent", "received", "lost", "jitter_ms", "bytes_received"}; the
    # system-wide monotonic clock lets the harness place them on the call's clock.
    timeline: list[dict[str, float | int | None]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def write(self, path: Path) -> None:
        """Write atomically (harness.calls.result_file)."""
        write_json_atomically(path, asdict(self))
