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
  and both relay legs) or ``relay-legs-sum`` (whatsapp-like, whose RTCP is
  not used for it: this side's relay RTT plus the peer's, which the peer sends over the
  signalling server every second). Null when no end-to-end sample was taken
  (never the one-leg value instead).
* ``relay_rtt_ms``: the round trip from this side to its relay or reflector
  only (one leg; pings on the path the call ended on), null on P2P. Before
  this field existed, relayed paths reported this value as ``rtt_ms``.
* ``own_ssrc_dropped``: RTP packets that arrived carrying this side's own SSRC
  (its own media, e.g. echoed by a relay); dropped, never decoded or counted
  as received. ``own_rtcp_dropped``: the same for RTCP reports, never used to
  adapt the bitrate or measure RTT.

Before the path: the chat server's name is resolved (harness.calls.app.resolve;
``dns-failed`` at stage ``dns``), the side joins the call's room on its app's
chat server (its ports in order, the next after CHAT_PORT_TRY_S, the last
for CHAT_CONNECT_TIMEOUT_S; ``signalling-unreachable`` at stage
``signalling``), waits for the other side
and the caller offers the call, which the callee accepts (``setup-timeout``
at stage ``signalling`` when either never comes). From when both sides are
in the room, they exchange ``--text-messages`` text messages over the same
connection (harness.calls.app.text), whatever then happens to the media: the
result's ``text_*`` fields count them, also for a call that fails later, and
say ``text_ok`` false when the chat server could not be reached at all. Then
the relay's and STUN server's names are resolved (``dns-failed`` again).
``resolved`` maps each name to the address used (an address given as such
maps to itself), ``signalling`` is the chat server endpoint that answered.

Timeouts: ``--setup-timeout`` from process start to the first decoded frame;
the media window lasts ``--media-seconds`` from the first frame, ends early
with ``media-stalled`` when nothing arrives for ``--stall-timeout``; the
sender goes on for ``--linger`` seconds after it so the other side can finish
its own window; the process then waits for the text exchange to end (at most
its own deadline)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.calls.app.media import OpusReceiver, OpusSender, Timeline, cancel
from harness.calls.app.opus import OpusSettings
from harness.calls.app.resolve import ResolveError, resolve
from harness.calls.app.signal_channel import SignalChannel, SignalError, shared_channels
from harness.calls.app.text import TextExchange, no_text
from harness.calls.events import EventLog
from harness.calls.result_file import write_json_atomically

# How long a chat server port may take to accept before the next is tried
# (WhatsApp: 5222, then 443), and the last one before the call fails with
# signalling-unreachable (so a side whose server is blocked fails before the
# other side's setup timeout runs out waiting for it). [S] the apps' own
# timeouts are not reported.
CHAT_PORT_TRY_S = 3.0
CHAT_CONNECT_TIMEOUT_S = 8.0


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
    # The app's chat server, its ports in the order tried (empty: `signal`
    # alone); until resolved, relay_ip, signal, stun and these may be names.
    signal_endpoints: tuple[tuple[str, int], ...] = ()
    # Where names are resolved: a resolver's address, and/or names given.
    resolver: str | None = None
    names: tuple[tuple[str, str], ...] = ()
    # Text messages each side sends during the call (0: no text exchange).
    text_messages: int = 0

    @property
    def chat_endpoints(self) -> tuple[tuple[str, int], ...]:
        if self.signal_endpoints:
            return self.signal_endpoints
        return (self.signal,) if self.signal is not None else ()


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
    # The text exchange over the chat server, once both sides were present.
    text: TextExchange | None = None
    text_task: asyncio.Task[None] | None = None

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
    timeline = Timeline(on_row=lambda row: _emit_stats(session, opus, row))
    tasks: list[asyncio.Task[None]] = []
    error: CallFailed | None = None
    t_window_end: float | None = None
    session.t_attempt = time.monotonic()
    session.events.emit("attempt", at=session.t_attempt)
    async with shared_channels():
        try:
            deadline = session.t_process + cfg.setup_timeout
            await _within(deadline, _resolve_chat_server(session), "dns")
            await _signalling(session, deadline)
            await _within(deadline, _resolve_media_servers(session), "dns")
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
            await _finish_text(session)
            with contextlib.suppress(Exception):
                await transport.close()
            session.receiver.close()
    timeline.add(session.sender, session.receiver)
    return build_result(session, timeline, error, t_window_end)


async def _address(session: Session, name: str) -> str:
    """`name` resolved (harness.calls.app.resolve), or CallFailed dns-failed;
    every name looked up is kept in the result's ``resolved``."""
    resolved: dict[str, str] = session.extra.setdefault("resolved", {})
    session.extra["resolver"] = session.cfg.resolver
    if name not in resolved:
        try:
            resolved[name] = await resolve(name, session.cfg.resolver, dict(session.cfg.names))
        except ResolveError as exc:
            raise CallFailed("dns-failed", "dns", str(exc)) from None
    return resolved[name]


async def _resolve_chat_server(session: Session) -> None:
    """The chat server's name first: the app reaches it before anything else."""
    cfg = session.cfg
    chat = tuple([(await _address(session, host), port) for host, port in cfg.chat_endpoints])
    session.cfg = dataclasses.replace(cfg, signal_endpoints=chat,
                                      signal=chat[0] if chat else None)


async def _resolve_media_servers(session: Session) -> None:
    """The relay's and the STUN server's names, once the call is set up."""
    cfg = session.cfg
    relay = await _address(session, cfg.relay_ip)
    stun = (await _address(session, cfg.stun[0]), cfg.stun[1]) if cfg.stun is not None else None
    session.cfg = dataclasses.replace(cfg, relay_ip=relay, stun=stun)


async def _signalling(session: Session, deadline: float) -> None:
    """Join the call's room on the chat server (its ports in order), wait
    for the other side, start the text exchange, and set the call up (the
    caller offers, the callee accepts)."""
    cfg = session.cfg
    endpoints = cfg.chat_endpoints
    if not endpoints:
        return
    channel: SignalChannel | None = None
    tried = []
    for index, (host, port) in enumerate(endpoints):
        remaining = deadline - time.monotonic()
        last = index == len(endpoints) - 1
        budget = min(CHAT_CONNECT_TIMEOUT_S if last else CHAT_PORT_TRY_S, remaining)
        try:
            channel = await SignalChannel.join(host, port, cfg.call_id, max(budget, 0.0))
            break
        except SignalError as exc:
            tried.append(str(exc))
    if channel is None:
        raise CallFailed("signalling-unreachable", "signalling", "; ".join(tried)[:400])
    session.cfg = dataclasses.replace(cfg, signal=(host, port))
    session.extra["signalling"] = f"{host}:{port}"
    try:
        await channel.wait_peer(deadline - time.monotonic())
    except SignalError as exc:
        raise CallFailed("setup-timeout", "signalling",
                         f"the other side never joined the call at {host}:{port}: {exc}"
                         ) from None
    if cfg.text_messages > 0:
        session.text = TextExchange(channel, cfg.role, cfg.text_messages)
        session.text_task = asyncio.create_task(session.text.run())
    mine, theirs = ("call_offer", "call_accept") if cfg.role == "caller" \
        else ("call_accept", "call_offer")
    try:
        if cfg.role == "caller":
            channel.send({mine: cfg.call_id})
        await channel.receive(theirs, deadline - time.monotonic())
        if cfg.role != "caller":
            channel.send({mine: cfg.call_id})
    except SignalError as exc:
        raise CallFailed("setup-timeout", "signalling",
                         f"no {theirs.replace('_', ' ')} from the other side: {exc}") from None


async def _finish_text(session: Session) -> None:
    """Let the text exchange end by itself (it has its own deadline), unless
    the call is being cancelled."""
    task = session.text_task
    if task is None or task.done():
        return
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        await cancel(task)
        return
    with contextlib.suppress(Exception):
        await task


def text_fields(session: Session, error: CallFailed | None) -> dict[str, Any]:
    """The result's text_* fields (harness.calls.app.text)."""
    expected = session.cfg.text_messages
    if session.text is not None:
        return session.text.counts.result()
    if expected <= 0:
        return {"text_sent": None, "text_received": None, "text_ok": None}
    why = f"{error.error} at {error.stage}: {error.detail}" if error else "no text exchanged"
    return no_text(expected, why[:300])


def _emit_stats(session: Session, opus: OpusSettings,
                dict_row: dict[str, float | int | None]) -> None:
    """A timeline row as a live ``stats`` event, with this side's frame
    duration and the seconds of received audio recorded so far."""
    fields = {k: v for k, v in dict_row.items() if k != "monotonic"}
    session.events.emit("stats", at=dict_row["monotonic"], frame_ms=opus.frame_ms,
                        recorded_s=session.receiver.recorded_s, **fields)


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
        "timeline": timeline.rows, **text_fields(session, error), **session.extra,
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
    """Atomically (harness.calls.result_file), like every call endpoint."""
    write_json_atomically(path, result)


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
