"""One side of an app-like call, as a process: the path-independent part.

Each profile (harness.calls.app.whatsapp_client, harness.calls.app.telegram_client)
provides a :class:`Transport` that establishes its path (and may change it),
points the Opus sender at it and feeds received RTP to the receiver. This
module runs the call like the aiortc peer does (same timeouts, same events,
same result fields, see harness.calls.peer.result.PeerResult), so
harness.measure.record scores it the same way; it adds ``profile``, ``path``
(where the call ended: udp-relay, p2p, udp-reflector, tcp-relay),
``path_changes``, ``bitrate_changes`` and ``detail`` (why it failed).

Fields the E-model takes from here:

* ``frame_ms``: the audio frame (= packet) duration this side sent, from its
  OpusSettings (60 for both app profiles).
* ``rtt_ms``: the end-to-end round trip between the two peers on the path the
  call ended on (samples from earlier paths are discarded), median of the
  samples; ``rtt_method`` says how it was measured:
  ``stun-p2p`` (P2P: STUN Binding round trips to the peer itself),
  ``rtcp-sr-rr`` (relayed telegram-like: RFC 3550 §6.4.1, RTT = arrival of a
  report block − its LSR − its DLSR, for the peer's report about this side's
  sender reports, so the round trip runs through the reflector or TCP relay
  and both relay legs) or ``relay-legs-sum`` (whatsapp-like, which sends no
  RTCP: this side's relay RTT plus the peer's, which the peer sends over the
  signalling server every second). Null when no end-to-end sample was taken
  (never the one-leg value instead).
* ``relay_rtt_ms``: the round trip from this side to its relay or reflector
  only (one leg; pings on the path the call ended on), null on P2P. Before
  this field existed, relayed paths reported this value as ``rtt_ms``.
* ``own_ssrc_dropped``: RTP packets that arrived carrying this side's own SSRC
  (its own media, e.g. echoed by a relay); dropped, never decoded or counted
  as received. ``own_rtcp_dropped``: the same for RTCP reports (telegram-like;
  whatsapp-like sends none), never used to adapt the bitrate or measure RTT.

Timeouts: ``--setup-timeout`` from process start to the first decoded frame;
the media window lasts ``--media-seconds`` from the first frame, ends early
with ``media-stalled`` when nothing arrives for ``--stall-timeout``; the
sender goes on for ``--linger`` seconds after it so the other side can finish
its own window."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.calls.app.media import OpusReceiver, OpusSender, Timeline, cancel
from harness.calls.app.opus import OpusSettings
from harness.calls.events import EventLog


class CallFailed(Exception):
    def __init__(self, error: str, stage: str, detail: str = "") -> None:
        super().__init__(f"{error} ({stage}): {detail}")
        self.error, self.stage, self.detail = error, stage, detail


@dataclass(frozen=True)
class ClientConfig:
    role: str
    profile: str
    call_id: str
    relay_ip: str
    audio: Path
    out: Path
    media_seconds: float = 6.0
    setup_timeout: float = 15.0
    stall_timeout: float = 3.0
    linger: float = 2.0
    record: Path | None = None
    events: Path | None = None
    signal: tuple[str, int] | None = None
    stun: tuple[str, int] | None = None
    p2p: bool = True


@dataclass
class Session:
    """What a call has seen so far, shared by the runner and the transport."""

    cfg: ClientConfig
    sender: OpusSender
    receiver: OpusReceiver
    events: EventLog
    t_process: float = field(default_factory=time.monotonic)
    t_attempt: float | None = None
    path: str | None = None
    path_changes: list[dict[str, Any]] = field(default_factory=list)
    bitrate_changes: list[dict[str, Any]] = field(default_factory=list)
    # End-to-end round trips (peer to peer) on the current path, and how they
    # were measured; round trips to the relay only (one leg); the peer's own
    # relay leg in ms, when it told us (see the module docstring).
    rtt_samples_s: list[float] = field(default_factory=list)
    rtt_method: str | None = None
    relay_rtt_samples_s: list[float] = field(default_factory=list)
    peer_relay_rtt_ms: float | None = None
    failure: asyncio.Future[CallFailed] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # What arrives with this side's own SSRC is its own media coming back.
        if self.receiver.own_ssrc is None:
            self.receiver.own_ssrc = self.sender.ssrc

    def set_path(self, path: str, reason: str) -> None:
        """Move to `path`; round trips measured on the old path are discarded."""
        if path == self.path:
            return
        self.path = path
        self.rtt_samples_s.clear()
        self.relay_rtt_samples_s.clear()
        now = time.monotonic()
        self.path_changes.append({"path": path, "monotonic": round(now, 3),
                                  "at_s": round(now - (self.t_attempt or self.t_process), 3),
                                  "reason": reason})
        self.events.emit("path", at=now, path=path, reason=reason)

    def fail(self, failure: CallFailed) -> None:
        """A transport's failure in the background (e.g. its last fallback died)."""
        if self.failure is not None and not self.failure.done():
            self.failure.set_result(failure)


class Transport(Protocol):
    async def start(self, session: Session) -> None:
        """Establish the first path, or raise CallFailed."""

    async def close(self) -> None: ...


async def run_call(cfg: ClientConfig, transport: Transport, opus: OpusSettings,
                   rtp_clock: int) -> dict[str, Any]:
    session = Session(cfg, OpusSender(cfg.audio, opus, rtp_clock),
                      OpusReceiver(cfg.record, rtp_clock, opus.frame_ms), EventLog(cfg.events))
    session.failure = asyncio.get_running_loop().create_future()
    timeline = Timeline()
    tasks: list[asyncio.Task[None]] = []
    error: CallFailed | None = None
    t_window_end: float | None = None
    session.t_attempt = time.monotonic()
    session.events.emit("attempt", at=session.t_attempt)
    try:
        deadline = session.t_process + cfg.setup_timeout
        await _within(deadline, transport.start(session), "path")
        tasks.append(asyncio.create_task(session.sender.run()))
        await _first_media(session, deadline)
        tasks.append(asyncio.create_task(timeline.sample(session.sender, session.receiver)))
        try:
            await _window(session)
        finally:
            t_window_end = time.monotonic()
            session.receiver.stats.close_window()
        await asyncio.sleep(cfg.linger)
    except CallFailed as failed:
        error = failed
        t_window_end = t_window_end or time.monotonic()
        session.receiver.stats.close_window()
        session.events.emit("failed", error=failed.error, stage=failed.stage)
    finally:
        for task in tasks:
            await cancel(task)
        with contextlib.suppress(Exception):
            await transport.close()
        session.receiver.close()
    timeline.add(session.sender, session.receiver)
    return build_result(session, timeline, error, t_window_end)


async def _within(deadline: float, work: Any, stage: str) -> None:
    try:
        await asyncio.wait_for(work, max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise CallFailed("setup-timeout", stage, "the setup timeout ran out") from None


async def _first_media(session: Session, deadline: float) -> None:
    assert session.failure is not None
    first: asyncio.Future[Any] = asyncio.ensure_future(session.receiver.first_frame.wait())
    waiting: set[asyncio.Future[Any]] = {first, session.failure}
    try:
        await asyncio.wait(waiting,
                                     timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        first.cancel()
    if session.failure.done():
        raise session.failure.result()
    if not session.receiver.first_frame.is_set():
        raise CallFailed("setup-timeout", "media",
                         f"path {session.path} is up but no audio arrived")
    session.events.emit("media", at=session.receiver.stats.t_first)


async def _window(session: Session) -> None:
    assert session.failure is not None
    stats, cfg = session.receiver.stats, session.cfg
    t_first = stats.t_first
    assert t_first is not None
    end = t_first + cfg.media_seconds
    while True:
        now = time.monotonic()
        if session.failure.done():
            raise session.failure.result()
        if now >= end:
            return
        last = stats.t_last or t_first
        if now - last >= cfg.stall_timeout:
            raise CallFailed("media-stalled", "media",
                             f"nothing arrived for {cfg.stall_timeout:g} s on path {session.path}")
        await asyncio.sleep(min(0.05, end - now))


def build_result(session: Session, timeline: Timeline, error: CallFailed | None,
                 t_window_end: float | None) -> dict[str, Any]:
    cfg, r = session.cfg, session.receiver.stats
    origin = session.t_attempt or session.t_process
    connected = r.t_first is not None
    window = (t_window_end - r.t_first) if r.t_first is not None and t_window_end else None
    return {
        "role": cfg.role, "strategy": "direct", "profile": cfg.profile, "room": cfg.call_id,
        "connected": connected,
        "setup_s": _round(r.t_first - origin) if r.t_first is not None else None,
        "codec": f"audio/opus ({session.sender.encoder.settings.sample_rate} Hz coded)",
        "packets_sent": session.sender.stats.packets_sent,
        "packets_received": r.packets_received, "packets_lost": r.lost,
        "loss_pct": _round(r.loss_pct) if r.loss_pct is not None else None,
        "jitter_ms": _round(1000.0 * r.jitter_s) if r.packets_received else None,
        **round_trips(session),
        "frame_ms": session.sender.encoder.settings.frame_ms,
        "own_ssrc_dropped": r.own_ssrc_dropped, "own_rtcp_dropped": r.own_rtcp_dropped,
        "received_bitrate_kbps": _round(8.0 * r.window_bytes / window / 1000.0)
        if window else None,
        "frames_received": r.window_frames,
        "max_frame_gap_ms": _round(1000.0 * r.max_gap_s, 1) if connected else None,
        "media_seconds": _round(window) if window is not None else None,
        "error": error.error if error else None,
        "failure_stage": error.stage if error else None,
        "detail": error.detail if error else None,
        "started_at": round(session.t_process, 3),
        "duration_s": _round(time.monotonic() - session.t_process),
        "failed_at_s": _round(time.monotonic() - origin) if error else None,
        "path": session.path, "path_changes": session.path_changes,
        "bitrate_changes": session.bitrate_changes, "duplicates": r.duplicates,
        "timeline": timeline.rows, **session.extra,
    }


def round_trips(session: Session) -> dict[str, Any]:
    """``rtt_ms`` (end to end), ``rtt_method`` and ``relay_rtt_ms`` (one leg),
    as the module docstring defines them."""
    relay = _median_ms(session.relay_rtt_samples_s)
    rtt, method = _median_ms(session.rtt_samples_s), session.rtt_method
    if rtt is None:
        method = None
        if relay is not None and session.peer_relay_rtt_ms is not None:
            rtt, method = relay + session.peer_relay_rtt_ms, "relay-legs-sum"
    return {"rtt_ms": _round(rtt), "rtt_method": method, "relay_rtt_ms": _round(relay)}


def _median_ms(samples_s: list[float]) -> float | None:
    return 1000.0 * statistics.median(samples_s) if samples_s else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Atomically (temporary file + rename), like the aiortc peer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(result, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


async def run_until_terminated(cfg: ClientConfig, transport: Transport, opus: OpusSettings,
                               rtp_clock: int) -> dict[str, Any]:
    """run_call, but SIGTERM/SIGINT end the call with error "terminated" and a result."""
    loop = asyncio.get_running_loop()
    call = asyncio.ensure_future(run_call(cfg, transport, opus, rtp_clock))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, call.cancel)
    try:
        return await call
    except asyncio.CancelledError:
        return {"role": cfg.role, "strategy": "direct", "profile": cfg.profile,
                "room": cfg.call_id, "connected": False, "error": "terminated",
                "failure_stage": "process", "detail": "SIGTERM", "frame_ms": opus.frame_ms,
                "path": None,
                "path_changes": [], "timeline": []}
