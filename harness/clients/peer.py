"""Voice-call endpoint (aiortc), run as one process per side of a call.

Usage::

    python -m harness.clients.peer --role caller|callee --signal IP:PORT --room ROOM \\
        --strategy direct|turn-udp|turn-tcp|turn-tls-443 --stun IP:PORT \\
        --turn IP [--turn-port 3478] [--turns-port 443] --turn-user U --turn-pass P \\
        --audio ref.wav --media-seconds 8 --setup-timeout 20 --out result.json \\
        [--record received.wav] [--total-timeout S] [--linger S] [--host-ip IP ...] \\
        [--ca-file ca.pem]

Both sides send the reference WAV (looped, Opus only) and decode what they
receive. Signalling goes through :mod:`harness.services.signalling`: both sides
join the room, the callee announces ``{"ready": true}``, and the caller makes the
(non-trickle) offer as soon as it knows that the other side is in the room
(``joined.peers == 2``, ``peer_joined`` or ``ready``), so start order does not
matter.

Timeouts: ``--setup-timeout`` counts from process start and bounds everything
up to the first decoded audio frame (signalling, waiting for the peer,
gathering, ICE, DTLS, first media). ``--total-timeout`` bounds the whole run
(default: setup + media + linger + 10 s). Whatever happens, the result JSON
(:class:`PeerResult`) is written to ``--out``; the exit status is 0 when the
call worked or failed for a network reason, 1 when a result was written with
``error="internal-error: ..."`` (a bug), 2 for bad arguments.

TLS (``turn-tls-443``): aioice opens the ``turns:`` connection with Python's
default SSL context, which verifies the relay's certificate against
``SSL_CERT_FILE``. The process that starts the peer must therefore set
``SSL_CERT_FILE=<per-run ca.pem>`` in the peer's environment, or pass
``--ca-file ca.pem`` (which sets that variable inside the process before any
TLS connection). The relay's certificate must carry the relay IP as an IP SAN
(see :mod:`harness.services.certs`).

``--host-ip`` restricts the host candidates to the given local addresses (by
default aioice uses every address except 127.0.0.1). It is needed for loopback
tests and can pin a lab host to its data-plane interface.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import wave
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aioice.ice
import aioice.turn
import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from harness.clients.strategies import (
    STRATEGIES,
    Endpoint,
    TurnCredentials,
    TurnServer,
    build_rtc_configuration,
    uses_relay,
)
from harness.services.signalling import SignallingClient, SignallingError

logger = logging.getLogger("harness.clients.peer")

ROLES = ("caller", "callee")
STATS_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 5.0
EXIT_WATCHDOG_S = 20.0
TOTAL_MARGIN_S = 10.0
DEFAULT_CLOCKRATE = 48000
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_ARGS = 2

_T = TypeVar("_T")


# --------------------------------------------------------------------------- result


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
    outbound-rtp, ``rtt_ms`` from remote-inbound-rtp (RTCP; null if unknown).
    ``received_bitrate_kbps`` counts SRTP/SRTCP bytes received by the DTLS
    transport over the window (no IP/UDP/TURN overhead). ``frames_received`` and
    ``max_frame_gap_ms`` describe decoded 20 ms audio frames in the window.

    ``error`` (null on success) / ``failure_stage`` (signalling, gathering, ice,
    dtls, media):
    signalling-unreachable, signalling-closed, room-full, peer-left (the callee
    left the room before answering), bad-sdp, bad-audio-file, setup-timeout (stage says where
    it got stuck; "media" = transport up but no audio decoded),
    no-local-candidates (no usable candidate, e.g. TURN blocked/unreachable or
    its certificate not trusted), ice-failed, dtls-failed, call-dropped
    (ICE/DTLS failed after media flowed), peer-hung-up (the remote closed the
    connection), total-timeout, terminated (SIGTERM/SIGINT), and
    "internal-error: ..." (a bug; exit status 1).
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
    received_bitrate_kbps: float | None = None
    frames_received: int = 0
    max_frame_gap_ms: float | None = None
    media_seconds: float | None = None
    error: str | None = None
    failure_stage: str | None = None
    started_at: float = 0.0
    duration_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def write(self, path: Path) -> None:
        """Write atomically (temporary file + rename) and fsync."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(self.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PeerConfig:
    role: str
    signal: Endpoint
    room: str
    strategy: str
    stun: Endpoint | None
    turn: TurnServer | None
    credentials: TurnCredentials | None
    audio: Path
    media_seconds: float
    setup_timeout: float
    total_timeout: float
    linger: float
    out: Path
    record: Path | None
    host_ips: tuple[str, ...]
    ca_file: Path | None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="callwall call endpoint")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--signal", required=True, help="signalling server IP:PORT")
    p.add_argument("--room", required=True)
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--stun", help="STUN server IP:PORT (used by 'direct')")
    p.add_argument("--turn", help="TURN server IP (used by the turn-* strategies)")
    p.add_argument("--turn-port", type=int, default=3478, help="TURN UDP/TCP port")
    p.add_argument("--turns-port", type=int, default=443, help="TURN TLS port")
    p.add_argument("--turn-user")
    p.add_argument("--turn-pass")
    p.add_argument("--audio", required=True, type=Path, help="reference WAV to send")
    p.add_argument("--media-seconds", type=float, default=8.0)
    p.add_argument("--setup-timeout", type=float, default=20.0)
    p.add_argument("--total-timeout", type=float, default=None)
    p.add_argument("--linger", type=float, default=2.0,
                   help="keep the call up this long after the media window")
    p.add_argument("--out", required=True, type=Path, help="result JSON path")
    p.add_argument("--record", type=Path, help="write the received audio to this WAV")
    p.add_argument("--host-ip", action="append", default=[],
                   help="restrict host candidates to this address (repeatable)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for turns: (sets SSL_CERT_FILE)")
    p.add_argument("--log-level", default="WARNING")
    return p


def _turn_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[TurnServer | None, TurnCredentials | None]:
    if not uses_relay(args.strategy):
        return None, None
    if not args.turn or not args.turn_user or not args.turn_pass:
        parser.error(f"--strategy {args.strategy} needs --turn, --turn-user and --turn-pass")
    server = TurnServer(args.turn, args.turn_port, args.turns_port)
    return server, TurnCredentials(args.turn_user, args.turn_pass)


def _check_numbers(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.media_seconds <= 0 or args.setup_timeout <= 0 or args.linger < 0:
        parser.error("--media-seconds and --setup-timeout must be > 0, --linger >= 0")
    if not _has_audio(args.audio):
        parser.error(f"--audio {args.audio} is not a readable audio file")
    if args.ca_file is not None and not args.ca_file.is_file():
        parser.error(f"--ca-file {args.ca_file} is not a file")


def _has_audio(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (OSError, av.FFmpegError):
        return False


def parse_config(argv: Sequence[str] | None = None) -> PeerConfig:
    """Parse the command line; exits with status 2 on bad arguments."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _check_numbers(args, parser)
    try:
        signal_ep = Endpoint.parse(args.signal)
        stun = Endpoint.parse(args.stun) if args.stun else None
    except ValueError as exc:
        parser.error(str(exc))
    turn, credentials = _turn_settings(args, parser)
    total = args.total_timeout
    if total is None:
        total = args.setup_timeout + args.media_seconds + args.linger + TOTAL_MARGIN_S
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    return PeerConfig(
        role=args.role, signal=signal_ep, room=args.room, strategy=args.strategy,
        stun=stun, turn=turn, credentials=credentials, audio=args.audio,
        media_seconds=args.media_seconds, setup_timeout=args.setup_timeout,
        total_timeout=total, linger=args.linger, out=args.out, record=args.record,
        host_ips=tuple(args.host_ip), ca_file=args.ca_file,
    )


def apply_environment(cfg: PeerConfig) -> None:
    """Process-wide settings: trusted CA for turns:, host candidate addresses."""
    if cfg.ca_file is not None:
        os.environ["SSL_CERT_FILE"] = str(cfg.ca_file)
    if cfg.host_ips:
        addresses = list(cfg.host_ips)

        def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return list(addresses)

        aioice.ice.get_host_addresses = host_addresses


# --------------------------------------------------------------------------- state


class CallFailed(Exception):
    def __init__(self, error: str, stage: str) -> None:
        super().__init__(f"{error} ({stage})")
        self.error = error
        self.stage = stage


@dataclass
class StatsSample:
    packets_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    jitter_units: int | None = None
    rtt_s: float | None = None
    bytes_received: int | None = None


class AudioSink:
    """Consumes the remote audio track: first-frame event, counters, optional WAV."""

    def __init__(self, record: Path | None, record_rate: int) -> None:
        self.first_frame = asyncio.Event()
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.frames = 0
        self.max_gap_s = 0.0
        self._record = record
        self._rate = record_rate
        self._wav: wave.Wave_write | None = None
        self._resampler: av.AudioResampler | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, track: MediaStreamTrack) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self._on_frame(frame)

    def _on_frame(self, frame: Any) -> None:
        now = time.monotonic()
        if self.t_last is not None:
            self.max_gap_s = max(self.max_gap_s, now - self.t_last)
        else:
            self.t_first = now
            self.first_frame.set()
        self.t_last = now
        self.frames += 1
        if self._record is not None and isinstance(frame, av.AudioFrame):
            self._write(frame)

    def _write(self, frame: av.AudioFrame) -> None:
        if self._wav is None:
            self._open_wav()
        assert self._resampler is not None and self._wav is not None
        for out in self._resampler.resample(frame):
            self._wav.writeframes(bytes(out.planes[0])[: out.samples * 2])

    def _open_wav(self) -> None:
        assert self._record is not None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self._rate)
        self._wav = wave.open(str(self._record), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(self._rate)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._wav is not None:
            self._wav.close()
            self._wav = None


@dataclass
class CallState:
    cfg: PeerConfig
    t_process: float
    started_at: float
    sink: AudioSink
    stage: str = "signalling"
    error: str | None = None
    failure_stage: str | None = None
    t_attempt: float | None = None
    t_ice: float | None = None
    dtls_connected: bool = False
    closing: bool = False
    t_window_end: float | None = None
    window_frames: int | None = None
    window_max_gap_s: float | None = None
    window_bytes_start: int | None = None
    pc: RTCPeerConnection | None = None
    player: MediaPlayer | None = None
    signalling: SignallingClient | None = None
    transport_failure: str | None = None
    transport_failed: asyncio.Event = field(default_factory=asyncio.Event)
    terminate: asyncio.Event = field(default_factory=asyncio.Event)
    stats: StatsSample | None = None

    def fail(self, error: str, stage: str) -> None:
        if self.error is None:
            self.error = error
            self.failure_stage = stage

    def remaining_setup(self) -> float:
        return self.t_process + self.cfg.setup_timeout - time.monotonic()


def current_stage(state: CallState) -> str:
    """Refine the "ice" stage with what the transports reached (sticky flags)."""
    if state.stage != "ice":
        return state.stage
    if state.dtls_connected:
        return "media"
    return "dtls" if state.t_ice is not None else "ice"


async def within_setup(state: CallState, awaitable: Awaitable[_T]) -> _T:
    """Await with the remaining setup time; CallFailed("setup-timeout") when it runs out."""
    try:
        return await asyncio.wait_for(awaitable, max(state.remaining_setup(), 0.0))
    except TimeoutError as exc:
        raise CallFailed("setup-timeout", current_stage(state)) from exc


# --------------------------------------------------------------------------- signalling


async def connect_signalling(state: CallState) -> SignallingClient:
    ep = state.cfg.signal
    try:
        client = await SignallingClient.connect(ep.host, ep.port, max(state.remaining_setup(), 0.1))
    except SignallingError as exc:
        raise CallFailed("signalling-unreachable", "signalling") from exc
    state.signalling = client
    return client


async def join_room(state: CallState, client: SignallingClient) -> dict[str, Any]:
    try:
        return await within_setup(state, client.join(state.cfg.room, timeout=3600))
    except SignallingError as exc:
        error = "room-full" if "room-full" in str(exc) else "signalling-closed"
        raise CallFailed(error, "signalling") from exc


async def next_message(state: CallState, client: SignallingClient) -> dict[str, Any]:
    try:
        return await within_setup(state, client.recv(timeout=3600))
    except SignallingError as exc:
        raise CallFailed("signalling-closed", "signalling") from exc


async def send_message(state: CallState, client: SignallingClient, obj: dict[str, Any]) -> None:
    try:
        await client.send(obj)
    except SignallingError as exc:
        raise CallFailed("signalling-closed", "signalling") from exc


async def wait_for_peer(state: CallState, client: SignallingClient, joined: dict[str, Any]) -> None:
    """Caller: return once the other side is known to be in the room."""
    if int(joined.get("peers", 1)) >= 2:
        return
    while True:
        msg = await next_message(state, client)
        if msg.get("peer_joined") or msg.get("ready"):
            return


async def wait_for_offer(state: CallState, client: SignallingClient) -> dict[str, Any]:
    """Callee: announce readiness and wait for the caller's offer."""
    await send_message(state, client, {"ready": True})
    while True:
        msg = await next_message(state, client)
        if msg.get("type") == "offer" and isinstance(msg.get("sdp"), str):
            return msg
        if msg.get("peer_joined"):
            await send_message(state, client, {"ready": True})


async def wait_for_answer(state: CallState, client: SignallingClient) -> dict[str, Any]:
    while True:
        msg = await next_message(state, client)
        if msg.get("type") == "answer" and isinstance(msg.get("sdp"), str):
            return msg
        if msg.get("peer_left"):
            raise CallFailed("peer-left", "signalling")


# --------------------------------------------------------------------------- peer connection


def prefer_opus(transceiver: RTCRtpTransceiver) -> None:
    capabilities = RTCRtpSender.getCapabilities("audio")
    opus = [c for c in capabilities.codecs if c.mimeType.lower() == "audio/opus"]
    transceiver.setCodecPreferences(opus)


def create_peer_connection(state: CallState) -> RTCPeerConnection:
    cfg = state.cfg
    configuration = build_rtc_configuration(cfg.strategy, cfg.stun, cfg.turn, cfg.credentials)
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
        # aiortc closes the connection itself when the remote side closes DTLS.
        _transport_failed(state, "peer-hung-up")
    elif pc.connectionState == "failed":
        ice_failed = pc.iceConnectionState == "failed" or state.t_ice is None
        _transport_failed(state, "ice-failed" if ice_failed else "dtls-failed")


def _on_ice_state(state: CallState, pc: RTCPeerConnection) -> None:
    if pc.iceConnectionState == "completed" and state.t_ice is None:
        state.t_ice = time.monotonic()
    elif pc.iceConnectionState == "failed":
        _transport_failed(state, "ice-failed")


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


async def caller_flow(state: CallState, client: SignallingClient) -> None:
    joined = await join_room(state, client)
    await wait_for_peer(state, client, joined)
    state.t_attempt = time.monotonic()
    track = open_player(state)
    pc = create_peer_connection(state)
    prefer_opus(pc.addTransceiver(track, direction="sendrecv"))
    await gather(state, pc, await pc.createOffer())
    await send_message(state, client, {"type": "offer", "sdp": pc.localDescription.sdp})
    check_local_candidates(state, pc)
    state.stage = "signalling"
    answer = await wait_for_answer(state, client)
    state.stage = "ice"
    await set_remote(state, pc, answer)


async def callee_flow(state: CallState, client: SignallingClient) -> None:
    await join_room(state, client)
    offer = await wait_for_offer(state, client)
    state.t_attempt = time.monotonic()
    track = open_player(state)
    pc = create_peer_connection(state)
    await set_remote(state, pc, offer)
    pc.addTrack(track)
    for transceiver in pc.getTransceivers():
        prefer_opus(transceiver)
    await gather(state, pc, await pc.createAnswer())
    state.stage = "ice"
    await send_message(state, client, {"type": "answer", "sdp": pc.localDescription.sdp})
    check_local_candidates(state, pc)


# --------------------------------------------------------------------------- media & stats


async def wait_first_media(state: CallState) -> None:
    first = asyncio.create_task(state.sink.first_frame.wait())
    failed = asyncio.create_task(state.transport_failed.wait())
    try:
        await within_setup(
            state, asyncio.wait({first, failed}, return_when=asyncio.FIRST_COMPLETED)
        )
    finally:
        first.cancel()
        failed.cancel()
    if not state.sink.first_frame.is_set():
        raise CallFailed(state.transport_failure or "ice-failed", current_stage(state))
    state.stage = "media"


async def media_window(state: CallState) -> None:
    """Keep the call up for --media-seconds after the first frame (or until it drops)."""
    assert state.pc is not None and state.sink.t_first is not None
    state.window_bytes_start = (await sample_stats(state.pc)).bytes_received
    end = state.sink.t_first + state.cfg.media_seconds
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.transport_failed.wait(), max(end - time.monotonic(), 0))
    end_window(state)
    if state.transport_failed.is_set():
        reason = state.transport_failure
        state.fail("peer-hung-up" if reason == "peer-hung-up" else "call-dropped", "media")
    state.stats = await sample_stats(state.pc)


def end_window(state: CallState) -> None:
    """Mark the end of the media window (normal end, drop or termination)."""
    if state.t_window_end is None and state.sink.t_first is not None:
        state.t_window_end = time.monotonic()
        state.window_frames, state.window_max_gap_s = state.sink.frames, state.sink.max_gap_s


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


# --------------------------------------------------------------------------- result building


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
    clockrate = DEFAULT_CLOCKRATE
    if state.pc is not None:
        clockrate = apply_connection(result, state.pc)
    apply_stats(result, state, clockrate)
    return result


def safe_build_result(state: CallState) -> PeerResult:
    try:
        return build_result(state)
    except Exception as exc:  # a bug in result building must not lose the result
        traceback.print_exc(file=sys.stderr)
        cfg = state.cfg
        return PeerResult(
            role=cfg.role, strategy=cfg.strategy, room=cfg.room,
            connected=state.sink.t_first is not None,
            error=f"internal-error: {type(exc).__name__}: {exc}"[:200],
            failure_stage=state.failure_stage or state.stage,
        )


# --------------------------------------------------------------------------- orchestration


async def run_call(state: CallState) -> None:
    """The call itself; failures end up in ``state`` (never raised)."""
    try:
        client = await connect_signalling(state)
        flow = caller_flow if state.cfg.role == "caller" else callee_flow
        await flow(state, client)
        await wait_first_media(state)
        await media_window(state)
    except CallFailed as exc:
        state.fail(exc.error, exc.stage)
    except Exception as exc:  # a bug or an unexpected library error: still report it
        traceback.print_exc(file=sys.stderr)
        state.fail(f"internal-error: {type(exc).__name__}: {exc}"[:200], current_stage(state))


async def supervise(state: CallState) -> None:
    """Run the call with the total timeout; SIGTERM/SIGINT end it early."""
    loop = asyncio.get_running_loop()
    terminate = state.terminate
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, terminate.set)
    call = asyncio.create_task(run_call(state))
    stop = asyncio.create_task(terminate.wait())
    await asyncio.wait({call, stop}, timeout=state.cfg.total_timeout,
                       return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not call.done():
        state.fail("terminated" if terminate.is_set() else "total-timeout", current_stage(state))
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(call, CLOSE_TIMEOUT_S)


async def finish(state: CallState) -> PeerResult:
    """Sample what is left, write the result, then tear everything down."""
    end_window(state)
    if state.stats is None and state.pc is not None:
        state.stats = await sample_stats(state.pc)
    result = safe_build_result(state)
    result.write(state.cfg.out)
    start_exit_watchdog(exit_code(result), state.cfg.linger + EXIT_WATCHDOG_S)
    if state.error is None and state.cfg.linger > 0:
        # Let the other side finish its own media window; SIGTERM cuts this short.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.terminate.wait(), state.cfg.linger)
    await teardown(state)
    return result


async def teardown(state: CallState) -> None:
    state.closing = True
    if state.pc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(state.pc.close(), CLOSE_TIMEOUT_S)
    if state.player is not None and state.player.audio is not None:
        with contextlib.suppress(Exception):
            state.player.audio.stop()
    await state.sink.stop()
    if state.signalling is not None:
        await state.signalling.close()


def exit_code(result: PeerResult) -> int:
    return EXIT_INTERNAL if (result.error or "").startswith("internal-error") else EXIT_OK


def start_exit_watchdog(code: int, after_s: float) -> None:
    """The result is on disk: never let a stuck teardown keep the process alive."""
    timer = threading.Timer(after_s, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


def _wav_rate(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getframerate()
    except (OSError, wave.Error, EOFError):
        return DEFAULT_CLOCKRATE


async def run_peer(cfg: PeerConfig) -> PeerResult:
    state = CallState(
        cfg=cfg,
        t_process=time.monotonic(),
        started_at=time.time(),
        sink=AudioSink(cfg.record, _wav_rate(cfg.audio)),
    )
    await supervise(state)
    return await finish(state)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    apply_environment(cfg)
    return exit_code(asyncio.run(run_peer(cfg)))


if __name__ == "__main__":
    sys.exit(main())
