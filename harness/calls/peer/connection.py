"""The RTCPeerConnection: creation, transport state callbacks, media source, gathering,
local candidate check and the remote description."""

from __future__ import annotations

import time
from typing import Any

import aioice.turn
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer

from harness.calls.peer import gather_all
from harness.calls.peer.state import CallFailed, CallState, within_setup
from harness.calls.strategies import GATHER_ALL, build_rtc_configuration


def prefer_opus(transceiver: RTCRtpTransceiver) -> None:
    capabilities = RTCRtpSender.getCapabilities("audio")
    opus = [c for c in capabilities.codecs if c.mimeType.lower() == "audio/opus"]
    transceiver.setCodecPreferences(opus)


def create_peer_connection(state: CallState) -> RTCPeerConnection:
    cfg = state.cfg
    configuration = build_rtc_configuration(cfg.strategy, cfg.stun, cfg.turn, cfg.credentials)
    if cfg.strategy == GATHER_ALL:
        gather_all.install(configuration)  # every TURN URL, not the first only
    pc = RTCPeerConnection(configuration)
    state.pc = pc

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            state.sink.start(track)

    @pc.on("iceconnectionstatechange")
    def on_ice_state() -> None:
        _on_ice_state(state, pc)

    @pc.on("connectionstatechange")
    def on_connection_state() -> None:
        _on_connection_state(state, pc)

    return pc


def _on_connection_state(state: CallState, pc: RTCPeerConnection) -> None:
    if pc.connectionState == "connected":
        state.dtls_connected = True
    elif pc.connectionState == "closed" and not state.closing:
        # aiortc closes the connection itself when the remote side closes DTLS, and
        # also when the TCP/TLS connection to the relay that carries the call is lost.
        _transport_failed(state, "relay-lost" if relay_connection_lost(pc) else "peer-hung-up")
    elif pc.connectionState == "failed":
        ice_failed = pc.iceConnectionState == "failed" or state.t_ice is None
        _transport_failed(state, "ice-failed" if ice_failed else "dtls-failed")


def _on_ice_state(state: CallState, pc: RTCPeerConnection) -> None:
    if pc.iceConnectionState == "completed" and state.t_ice is None:
        state.t_ice = time.monotonic()
    elif pc.iceConnectionState == "failed":
        _transport_failed(state, "ice-failed")


def relay_connection_lost(pc: RTCPeerConnection) -> bool:
    """Whether the nominated pair goes through a TURN TCP/TLS connection that has
    closed (the relay died or reset it). Reads aioice's private state: best effort."""
    try:
        connection = pc.getTransceivers()[0].receiver.transport.transport._connection
        pair = connection._nominated.get(1)
    except (IndexError, AttributeError):
        return False
    if pair is None or pair.local_candidate.type != "relay":
        return False
    inner = getattr(pair.protocol.transport, "_TurnTransport__inner_protocol", None)
    if not isinstance(inner, aioice.turn.TurnClientTcpProtocol):
        return False
    transport = getattr(inner, "transport", None)
    return transport is None or bool(transport.is_closing())


def _transport_failed(state: CallState, reason: str) -> None:
    if state.transport_failure is None:
        state.transport_failure = reason
    state.transport_failed.set()


def open_player(state: CallState) -> MediaStreamTrack:
    player = MediaPlayer(str(state.cfg.audio), loop=True)
    state.player = player
    if player.audio is None:
        raise CallFailed("bad-audio-file", "signalling")
    return player.audio


def local_candidate_count(pc: RTCPeerConnection) -> int:
    sdp = pc.localDescription.sdp if pc.localDescription else ""
    return sum(1 for line in sdp.splitlines() if line.startswith("a=candidate:"))


async def gather(state: CallState, pc: RTCPeerConnection, desc: RTCSessionDescription) -> None:
    """setLocalDescription (gathers all candidates: non-trickle)."""
    state.stage = "gathering"
    await within_setup(state, pc.setLocalDescription(desc))


def check_local_candidates(state: CallState, pc: RTCPeerConnection) -> None:
    # aiortc never starts ICE without local candidates: fail now instead of waiting.
    if local_candidate_count(pc) == 0:
        raise CallFailed("no-local-candidates", "gathering")


async def set_remote(state: CallState, pc: RTCPeerConnection, msg: dict[str, Any]) -> None:
    try:
        await within_setup(
            state, pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type=msg["type"]))
        )
    except (ValueError, KeyError) as exc:
        raise CallFailed("bad-sdp", "signalling") from exc
