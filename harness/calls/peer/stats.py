"""Stats sampling (aiortc getStats) and building the :class:`PeerResult` of a call:
selected candidate pair, candidate counts, negotiated codec, RTP and window numbers."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import traceback
from collections import Counter
from typing import Any

import aioice.turn
from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription

from harness.calls.peer.result import PeerResult, SelectedPair
from harness.calls.peer.state import CallState, StatsSample

# The logger the single-module peer used; it is also the package's own name.
logger = logging.getLogger("harness.calls.peer")

STATS_TIMEOUT_S = 2.0
DEFAULT_CLOCKRATE = 48000


# --------------------------------------------------------------------------- sampling


def _stat_values(report: dict[str, Any], kind: str) -> list[Any]:
    return [s for s in report.values() if getattr(s, "type", None) == kind]


def stats_from_report(report: dict[str, Any]) -> StatsSample:
    sample = StatsSample()
    for s in _stat_values(report, "outbound-rtp"):
        sample.packets_sent = (sample.packets_sent or 0) + s.packetsSent
    for s in _stat_values(report, "inbound-rtp"):
        sample.packets_received = (sample.packets_received or 0) + s.packetsReceived
        sample.packets_lost = (sample.packets_lost or 0) + s.packetsLost
        sample.jitter_units = max(sample.jitter_units or 0, s.jitter)
    for s in _stat_values(report, "remote-inbound-rtp"):
        if s.roundTripTime is not None:
            sample.rtt_s = s.roundTripTime
    transports = _stat_values(report, "transport")
    if transports:
        sample.bytes_received = sum(s.bytesReceived for s in transports)
    return sample


async def sample_stats(pc: RTCPeerConnection) -> StatsSample:
    try:
        report = await asyncio.wait_for(pc.getStats(), STATS_TIMEOUT_S)
    except Exception:  # stats are best effort: never let them break the result
        logger.exception("getStats failed")
        return StatsSample()
    return stats_from_report(report)


# --------------------------------------------------------------------------- connection facts


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def selected_pair(pc: RTCPeerConnection) -> SelectedPair | None:
    """Read the nominated pair from aioice (private API: best effort)."""
    try:
        connection = pc.getTransceivers()[0].receiver.transport.transport._connection
        pair = connection._nominated.get(1)
    except (IndexError, AttributeError):
        return None
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    relay_protocol = relay_transport(pair, connection) if local.type == "relay" else None
    return SelectedPair(
        local_type=local.type,
        local_protocol=local.transport.lower(),
        local_address=_address(local.host, local.port),
        remote_type=remote.type,
        remote_protocol=remote.transport.lower(),
        remote_address=_address(remote.host, remote.port),
        local_relay_protocol=relay_protocol,
    )


def relay_transport(pair: Any, connection: Any) -> str:
    """How the local relay candidate talks to the TURN server: udp, tcp or tls.

    Observed on aioice's (private) inner TURN protocol when possible; otherwise
    taken from the configuration (aioice supports a single TURN server).
    """
    inner = getattr(pair.protocol.transport, "_TurnTransport__inner_protocol", None)
    if isinstance(inner, aioice.turn.TurnClientTcpProtocol):
        return "tls" if inner.transport.get_extra_info("ssl_object") is not None else "tcp"
    if isinstance(inner, aioice.turn.TurnClientUdpProtocol):
        return "udp"
    return "tls" if connection.turn_ssl else str(connection.turn_transport)


def candidate_counts(pc: RTCPeerConnection) -> tuple[dict[str, int], dict[str, int]]:
    try:
        ice = pc.getTransceivers()[0].receiver.transport.transport
    except (IndexError, AttributeError):
        return {}, {}
    local = Counter(c.type for c in ice.iceGatherer.getLocalCandidates())
    remote = Counter(c.type for c in ice.getRemoteCandidates())
    return dict(local), dict(remote)


def negotiated_codec(pc: RTCPeerConnection) -> tuple[str | None, int]:
    if pc.remoteDescription is None:
        return None, DEFAULT_CLOCKRATE
    try:
        media = SessionDescription.parse(pc.remoteDescription.sdp).media
        codec = media[0].rtp.codecs[0]
    except (IndexError, ValueError):
        return None, DEFAULT_CLOCKRATE
    return codec.mimeType, codec.clockRate or DEFAULT_CLOCKRATE


# --------------------------------------------------------------------------- result building


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def apply_stats(result: PeerResult, state: CallState, clockrate: int) -> None:
    s = state.stats or StatsSample()
    result.packets_sent = s.packets_sent
    result.packets_received = s.packets_received
    result.packets_lost = s.packets_lost
    if s.packets_received is not None and s.packets_lost is not None:
        lost = max(s.packets_lost, 0)
        total = s.packets_received + lost
        result.loss_pct = _rounded(100.0 * lost / total) if total else None
    if s.jitter_units is not None:
        # aiortc reports interarrival jitter in RTP timestamp units (RFC 3550).
        result.jitter_ms = _rounded(1000.0 * s.jitter_units / clockrate)
    result.rtt_ms = _rounded(None if s.rtt_s is None else 1000.0 * s.rtt_s)
    result.rtt_method = "rtcp-sr-rr" if result.rtt_ms is not None else None
    apply_window(result, state, s)


def apply_window(result: PeerResult, state: CallState, s: StatsSample) -> None:
    t_first, t_end = state.sink.t_first, state.t_window_end
    if t_first is None or t_end is None:
        return
    window = t_end - t_first
    result.media_seconds = _rounded(window)
    start, end = state.window_bytes_start, s.bytes_received
    if start is not None and end is not None and window > 0:
        result.received_bitrate_kbps = _rounded(8.0 * (end - start) / window / 1000.0)


def apply_connection(result: PeerResult, pc: RTCPeerConnection) -> int:
    result.ice_state_final = pc.iceConnectionState
    result.connection_state_final = pc.connectionState
    result.selected_pair = selected_pair(pc)
    result.local_candidates, result.remote_candidates = candidate_counts(pc)
    result.codec, clockrate = negotiated_codec(pc)
    return clockrate


def build_result(state: CallState) -> PeerResult:
    cfg, sink = state.cfg, state.sink
    result = PeerResult(role=cfg.role, strategy=cfg.strategy, room=cfg.room)
    result.started_at = round(state.started_at, 3)
    result.duration_s = round(time.monotonic() - state.t_process, 3)
    result.error, result.failure_stage = state.error, state.failure_stage
    result.connected = sink.t_first is not None
    frames, max_gap = state.window_frames, state.window_max_gap_s
    result.frames_received = sink.frames if frames is None else frames
    if sink.t_first is not None and state.t_attempt is not None:
        result.setup_s = _rounded(sink.t_first - state.t_attempt)
        gap = sink.max_gap_s if max_gap is None else max_gap
        result.max_frame_gap_ms = _rounded(1000.0 * gap, 1)
    if state.t_ice is not None and state.t_attempt is not None:
        result.ice_s = _rounded(state.t_ice - state.t_attempt)
    result.failed_at_s = failed_at(state)
    result.timeline = list(state.timeline)
    clockrate = DEFAULT_CLOCKRATE
    if state.pc is not None:
        clockrate = apply_connection(result, state.pc)
    apply_stats(result, state, clockrate)
    return result


def failed_at(state: CallState) -> float | None:
    """Seconds from the attempt's start (or from process start, before it) to the failure."""
    if state.t_failed is None:
        return None
    origin = state.t_attempt if state.t_attempt is not None else state.t_process
    return _rounded(max(state.t_failed - origin, 0.0))


def safe_build_result(state: CallState) -> PeerResult:
    try:
        return build_result(state)
    except Exception as exc:  # a bug in result building must not lose the result
        traceback.print_exc(file=sys.stderr)
        cfg = state.cfg
        if state.t_failed is None:
            state.t_failed = time.monotonic()
        return PeerResult(
            role=cfg.role, strategy=cfg.strategy, room=cfg.room,
            connected=state.sink.t_first is not None,
            error=f"internal-error: {type(exc).__name__}: {exc}"[:200],
            failure_stage=state.failure_stage or state.stage,
            failed_at_s=failed_at(state),
        )
