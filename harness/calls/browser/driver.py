"""One side of a call in Chromium, run as one process per side inside a lab
host: ``python -m harness.calls.browser [browser options] <aiortc peer
options>``. It takes every option of the aiortc peer (harness.calls.peer:
role, signalling, room, strategy, STUN/TURN, audio, timeouts, --out, --record,
--events, ...) with the same meaning, and writes the same result JSON, so the
harness reads a browser's side as it reads an aiortc peer's, and a browser
can call an aiortc peer.

What runs where:

- this driver starts Chromium (harness.calls.browser.chromium) with the
  DevTools pipe, records it in the lab's registry (--registry-dir), serves the
  call page (harness.calls.browser.server) on the host's loopback and opens
  it;
- the page (page/call.js) holds the RTCPeerConnection; it cannot open a TCP
  connection, so the driver carries the signalling: it speaks the lab's
  signalling protocol (harness.services.signalling) with the aiortc peer's
  own flows (join, ready, offer, answer), asks the page for an offer or an
  answer with Runtime.evaluate, and hears the page's events (states, first
  media, stalls, received audio) through the Runtime.addBinding binding
  ``cwEmit`` (Runtime.bindingCalled). A WebSocket shim in front of the
  signalling server would be a second relay to run and to keep in step with
  the aiortc peer's flows; this way the flows are the same code;
- the received audio comes from the page as 16-bit PCM (an AudioWorklet taps
  the remote track) and is written to --record as a WAV, so PESQ applies.

Times, errors and failure stages are the aiortc peer's (see
harness.calls.peer.result.PeerResult). Where the browser differs:
``frames_received`` counts the RTP audio packets received (one 20 ms Opus
frame each) rather than decoded frames; ``max_frame_gap_ms`` is the longest
pause of the receiver's synchronization source, seen every POLL_MS (20 ms);
a Chromium that crashes or does not start is "internal-error: chromium ...";
``--host-ip`` is taken but not applied (Chromium gathers on every interface:
see harness.calls.browser.chromium).
The result adds ``browser`` (the Chromium version and what it cost: RSS,
PSS, CPU seconds; see chromium.ResourceUse), ``ice_gathering`` (whether
gathering completed or was cut at --gather-cap) and ``candidate_errors``
(the page's icecandidateerror events: a TURN server that did not answer).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.calls.browser.cdp import CdpError, CdpPipe
from harness.calls.browser.chromium import (
    ChromiumError,
    ChromiumSetup,
    Launched,
    ResourceUse,
    chromium_argv,
    chromium_binary,
    launch,
    stop,
)
from harness.calls.browser.recording import WAV_RATE, Recording
from harness.calls.browser.server import PageServer, serve_page
from harness.calls.browser.stats import (
    RtpFigures,
    loss_pct,
    playout,
    rtp_figures,
    sdp_candidate_counts,
    selected_pair,
    timeline_row,
)
from harness.calls.events import EventLog
from harness.calls.peer.config import PeerConfig, parse_config
from harness.calls.peer.negotiation import (
    connect_signalling,
    join_room,
    send_message,
    wait_for_answer,
    wait_for_offer,
    wait_for_peer,
)
from harness.calls.peer.result import PeerResult
from harness.calls.peer.state import AudioSink, CallFailed, CallState, current_stage, within_setup
from harness.calls.result_file import write_json_atomically
from harness.calls.strategies import TURN_SPECS, turn_url
from harness.netns.registry import OwnedProcess, Registry
from harness.services.signalling import SignallingClient

# Gathering is cut after this long, and the description goes out with the
# candidates found so far (see page/call.js, gathered()). Uncapped, Chromium
# 156 took 40 s to give up on a TURN allocation whose packets were dropped
# (dpi-stun-drop, measured in the lab), far past a call's setup timeout.
GATHER_CAP_S = 5.0
# Chromium's Opus encoder sends 20 ms frames unless the far side asks for
# another ptime (libwebrtc's AudioEncoderOpusConfig default frame size).
OPUS_FRAME_MS = 20.0
TIMELINE_PERIOD_S = 1.0
PAGE_READY_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
BINDING = "cwEmit"
EXIT_OK = 0
EXIT_INTERNAL = 1


@dataclass(frozen=True)
class BrowserOptions:
    """The driver's own options (the rest are the aiortc peer's)."""

    chromium: Path
    profile_dir: Path
    chromium_log: Path
    spki_pins: tuple[str, ...] = ()
    resolver_exclude: tuple[str, ...] = ()
    registry_dir: Path | None = None
    lab_host: str = ""
    gather_cap_s: float = GATHER_CAP_S
    keep_profile: bool = False


def _browser_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness.calls.browser", add_help=False)
    p.add_argument("--chromium", type=Path, help="the Chromium program (default: found)")
    p.add_argument("--profile-dir", type=Path, required=True,
                   help="Chromium's user-data-dir for this call (created, then removed)")
    p.add_argument("--chromium-log", type=Path, required=True, help="Chromium's stderr")
    p.add_argument("--spki-pin", action="append", default=[],
                   help="trust a TLS key (base64 SHA-256 of its SPKI) for turns: (repeatable)")
    p.add_argument("--resolver-exclude", action="append", default=[],
                   help="an address the host-resolver rules leave alone (repeatable)")
    p.add_argument("--registry-dir", type=Path,
                   help="the lab run's registry: Chromium is recorded there")
    p.add_argument("--lab-host", default="", help="the lab host this runs in (for the registry)")
    p.add_argument("--gather-cap", type=float, default=GATHER_CAP_S,
                   help="send the description after this many seconds of gathering")
    p.add_argument("--keep-profile", action="store_true",
                   help="keep the user-data-dir after the call")
    return p


def parse_options(argv: Sequence[str] | None = None) -> tuple[BrowserOptions, PeerConfig]:
    """The browser's options and the aiortc peer's; exits with status 2 on bad ones."""
    parser = _browser_parser()
    args, rest = parser.parse_known_args(argv)
    cfg = parse_config(rest)
    binary = args.chromium or chromium_binary()
    if binary is None:
        parser.error("no Chromium found (Debian package chromium); or pass --chromium")
    if args.gather_cap <= 0:
        parser.error("--gather-cap must be > 0")
    return BrowserOptions(
        chromium=binary, profile_dir=args.profile_dir, chromium_log=args.chromium_log,
        spki_pins=tuple(args.spki_pin), resolver_exclude=tuple(args.resolver_exclude),
        registry_dir=args.registry_dir, lab_host=args.lab_host, gather_cap_s=args.gather_cap,
        keep_profile=args.keep_profile), cfg


# ------------------------------------------------------------------ the call's state


@dataclass
class BrowserCall:
    """One browser side of a call. ``call`` is the aiortc peer's own state
    (configuration, setup deadline, stage, error, events, signalling), so the
    signalling flows and their timeouts are the same code."""

    call: CallState
    opts: BrowserOptions
    launched: Launched | None = None
    owned: OwnedProcess | None = None
    cdp: CdpPipe | None = None
    session: str | None = None
    page: PageServer | None = None
    version: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    media: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    broken: str | None = None
    t_first: float | None = None
    t_window_end: float | None = None
    t_sending: float | None = None
    gathering: dict[str, Any] | None = None
    local_sdp: str | None = None
    remote_sdp: str | None = None
    window_start: RtpFigures | None = None
    window_end: RtpFigures | None = None
    window_figures: dict[str, Any] | None = None
    final_stats: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, float | int | None]] = field(default_factory=list)
    candidate_errors: list[dict[str, Any]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    resources: ResourceUse = field(default_factory=ResourceUse)
    recording: Recording | None = None
    recorded_s: float | None = None

    @property
    def cfg(self) -> PeerConfig:
        return self.call.cfg

    def transport_failed(self, reason: str) -> None:
        call = self.call
        if call.transport_failure is None:
            call.transport_failure = reason
        call.transport_failed.set()

    def break_down(self, why: str) -> None:
        """The browser itself failed (exited, crashed, its page died)."""
        if self.broken is None:
            self.broken = why
        self.transport_failed(f"internal-error: {why}")


# ------------------------------------------------------------------ the page's events


def on_page_event(bc: BrowserCall, raw: str) -> None:
    """One cwEmit call of the page."""
    try:
        event = json.loads(raw)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        bc.page_errors.append(f"unreadable page event {raw[:80]!r}")
        return
    kind = event.get("kind")
    now = time.monotonic()
    if kind == "recorded":
        if bc.recording is not None and isinstance(event.get("data"), str):
            bc.recording.append(base64.b64decode(event["data"]))
    elif kind == "ready":
        bc.ready.set()
    elif kind == "media":
        if bc.t_first is None:
            bc.t_first = now
            bc.media.set()
    elif kind == "stalled":
        bc.stalled.set()
    elif kind == "recording":
        if bc.recording is not None:
            bc.recording.mime_type = str(event.get("mime_type"))
    elif kind == "sending":
        bc.t_sending = now
    elif kind == "candidate-error":
        bc.candidate_errors.append({k: event.get(k) for k in
                                    ("url", "code", "text", "address", "port")})
    elif kind == "error":
        bc.page_errors.append(f"{event.get('where')}: {event.get('message')}")
        if event.get("where") == "getUserMedia":
            bc.transport_failed("internal-error: getUserMedia failed: "
                                f"{event.get('message')}")
    elif kind in ("ice", "connection", "dtls", "gathering-state"):
        _on_state(bc, kind, str(event.get("state")), now)


def _on_state(bc: BrowserCall, kind: str, state: str, now: float) -> None:
    call = bc.call
    origin = call.t_attempt if call.t_attempt is not None else call.t_process
    bc.states.append({"what": kind, "state": state, "at_s": round(now - origin, 3)})
    if kind == "ice":
        if state in ("connected", "completed") and call.t_ice is None:
            call.t_ice = now
        elif state == "failed":
            bc.transport_failed("ice-failed")
    elif kind == "connection":
        if state == "connected":
            call.dtls_connected = True
        elif state == "failed":
            bc.transport_failed("ice-failed" if call.t_ice is None else "dtls-failed")
    elif kind == "dtls":
        if state == "closed" and not call.closing:
            bc.transport_failed("peer-hung-up")
        elif state == "failed":
            bc.transport_failed("dtls-failed")


# ------------------------------------------------------------------ browser and page


async def open_page(bc: BrowserCall) -> None:
    """DevTools over the pipe, the page server, one page with the binding."""
    assert bc.launched is not None
    cdp = CdpPipe(bc.launched.read_fd, bc.launched.write_fd)
    bc.cdp = cdp
    cdp.start()
    cdp.on("Runtime.bindingCalled",
           lambda params, _session: on_page_event(bc, str(params.get("payload", "")))
           if params.get("name") == BINDING else None)
    cdp.on("Inspector.targetCrashed", lambda _params, _session: bc.break_down("the page crashed"))
    cdp.on("Target.detachedFromTarget",
           lambda _params, _session: None if bc.call.closing else bc.break_down(
               "the page was detached"))
    version = await cdp.call("Browser.getVersion", timeout_s=bc.call.remaining_setup())
    bc.version = str(version.get("product"))
    bc.page = await serve_page("127.0.0.1")
    target = await cdp.call("Target.createTarget", {"url": "about:blank"})
    attached = await cdp.call("Target.attachToTarget",
                              {"targetId": target["targetId"], "flatten": True})
    bc.session = str(attached["sessionId"])
    for method in ("Runtime.enable", "Inspector.enable"):
        await cdp.call(method, session=bc.session)
    await cdp.call("Runtime.addBinding", {"name": BINDING}, session=bc.session)
    await cdp.call("Page.navigate", {"url": bc.page.url}, session=bc.session)
    try:
        await asyncio.wait_for(bc.ready.wait(),
                               min(PAGE_READY_TIMEOUT_S, max(bc.call.remaining_setup(), 0.1)))
    except TimeoutError as exc:
        raise CdpError(f"the call page {bc.page.url} did not load") from exc


async def page_call(bc: BrowserCall, expression: str, timeout_s: float) -> Any:
    """Evaluate `expression` in the page (awaiting a promise); its value."""
    assert bc.cdp is not None and bc.session is not None
    reply = await bc.cdp.call("Runtime.evaluate", {
        "expression": expression, "awaitPromise": True, "returnByValue": True},
        session=bc.session, timeout_s=timeout_s)
    if "exceptionDetails" in reply:
        details = reply["exceptionDetails"]
        text = details.get("exception", {}).get("description") or details.get("text")
        raise CdpError(f"{expression.split('(')[0]}: {text}")
    return reply.get("result", {}).get("value")


def page_config(bc: BrowserCall) -> dict[str, Any]:
    """The RTCPeerConnection's configuration for the strategy, as the aiortc
    peer builds it (harness.calls.strategies): STUN only for ``direct``; one
    TURN URL and iceTransportPolicy "relay" for the turn-* strategies."""
    cfg = bc.cfg
    servers: list[dict[str, Any]] = []
    if cfg.strategy in TURN_SPECS:
        assert cfg.turn is not None and cfg.credentials is not None
        servers.append({"urls": [turn_url(cfg.strategy, cfg.turn)],
                        "username": cfg.credentials.username,
                        "credential": cfg.credentials.password})
    elif cfg.stun is not None:
        servers.append({"urls": [f"stun:{cfg.stun.host}:{cfg.stun.port}"]})
    return {"iceServers": servers,
            "iceTransportPolicy": "relay" if cfg.strategy in TURN_SPECS else "all",
            "gatherCapMs": round(1000 * bc.opts.gather_cap_s),
            "stallTimeoutMs": round(1000 * cfg.stall_timeout),
            "record": cfg.record is not None}


async def setup_step(bc: BrowserCall, expression: str) -> Any:
    """A page call that belongs to the call's setup: when the setup time runs
    out first, the call fails with setup-timeout at its stage, as the aiortc
    peer's (the DevTools timeout, a little later, is for a hung browser)."""
    state = bc.call
    return await within_setup(state, page_call(bc, expression,
                                               max(state.remaining_setup(), 0.0) + 5.0))


def _described(bc: BrowserCall, reply: Any) -> str:
    if not isinstance(reply, dict) or not isinstance(reply.get("sdp"), str):
        raise CdpError(f"the page returned no description: {reply!r}"[:200])
    gathering = reply.get("gathering") or {}
    bc.gathering = {"complete": bool(gathering.get("complete")),
                    "waited_s": round(float(gathering.get("waited_ms", 0)) / 1000, 3),
                    "cap_s": bc.opts.gather_cap_s}
    bc.local_sdp = reply["sdp"]
    return str(reply["sdp"])


def _check_local_candidates(bc: BrowserCall) -> None:
    if not sdp_candidate_counts(bc.local_sdp):
        raise CallFailed("no-local-candidates", "gathering")


async def caller_flow(bc: BrowserCall, client: SignallingClient) -> None:
    state = bc.call
    joined = await join_room(state, client)
    await wait_for_peer(state, client, joined)
    state.start_attempt()
    state.stage = "gathering"
    sdp = _described(bc, await setup_step(bc, f"cw.offer({json.dumps(page_config(bc))})"))
    await send_message(state, client, {"type": "offer", "sdp": sdp})
    _check_local_candidates(bc)
    state.stage = "signalling"
    answer = await wait_for_answer(state, client)
    state.stage = "ice"
    bc.remote_sdp = str(answer["sdp"])
    await setup_step(bc, f"cw.accept({json.dumps(bc.remote_sdp)})")


async def callee_flow(bc: BrowserCall, client: SignallingClient) -> None:
    state = bc.call
    await join_room(state, client)
    offer = await wait_for_offer(state, client)
    state.start_attempt()
    bc.remote_sdp = str(offer["sdp"])
    state.stage = "gathering"
    sdp = _described(bc, await setup_step(
        bc, f"cw.answer({json.dumps(page_config(bc))}, {json.dumps(bc.remote_sdp)})"))
    state.stage = "ice"
    await send_message(state, client, {"type": "answer", "sdp": sdp})
    _check_local_candidates(bc)


# ------------------------------------------------------------------ media


async def sample(bc: BrowserCall) -> tuple[RtpFigures, list[dict[str, Any]]]:
    stats = await page_call(bc, "cw.stats()", timeout_s=5.0)
    rows = [s for s in stats if isinstance(s, dict)] if isinstance(stats, list) else []
    return rtp_figures(rows), rows


async def wait_first_media(bc: BrowserCall) -> None:
    state = bc.call
    first = asyncio.create_task(bc.media.wait())
    failed = asyncio.create_task(state.transport_failed.wait())
    try:
        await within_setup(state, asyncio.wait({first, failed},
                                               return_when=asyncio.FIRST_COMPLETED))
    finally:
        first.cancel()
        failed.cancel()
    if not bc.media.is_set():
        raise CallFailed(state.transport_failure or "ice-failed", current_stage(state))
    state.stage = "media"
    state.events.emit("media", at=bc.t_first)


async def media_window(bc: BrowserCall) -> None:
    """The call stays up for --media-seconds from the first media, unless the
    transport fails or the page reports a stall (no packet played out for
    --stall-timeout). Cumulative counters go to the timeline every second."""
    state = bc.call
    assert bc.t_first is not None
    bc.window_start, _ = await sample(bc)
    assert bc.launched is not None
    bc.resources.mark_window(bc.launched.process.pid)
    bc.timeline.append(timeline_row(time.monotonic(), bc.window_start))
    end = bc.t_first + state.cfg.media_seconds
    stalled = asyncio.create_task(bc.stalled.wait())
    failed = asyncio.create_task(state.transport_failed.wait())
    try:
        while time.monotonic() < end and not (stalled.done() or failed.done()):
            await asyncio.wait({stalled, failed}, return_when=asyncio.FIRST_COMPLETED,
                               timeout=min(TIMELINE_PERIOD_S, max(end - time.monotonic(), 0)))
            figures, _ = await sample(bc)
            bc.timeline.append(timeline_row(time.monotonic(), figures))
    finally:
        stalled.cancel()
        failed.cancel()
    bc.t_window_end = time.monotonic()
    bc.resources.mark_window(bc.launched.process.pid, end=True)
    bc.window_figures = await page_call(bc, "cw.endWindow()", timeout_s=5.0)
    if bc.stalled.is_set():
        state.fail("media-stalled", "media")
    elif state.transport_failed.is_set():
        reason = state.transport_failure or "call-dropped"
        if not reason.startswith("internal-error"):
            reason = reason if reason == "peer-hung-up" else "call-dropped"
        state.fail(reason, "media")
    bc.window_end, bc.final_stats = await sample(bc)


async def run_call(bc: BrowserCall) -> None:
    """The call itself; failures end up in the state (never raised)."""
    state = bc.call
    try:
        await open_page(bc)
        client = await connect_signalling(state)
        await (caller_flow if state.cfg.role == "caller" else callee_flow)(bc, client)
        await wait_first_media(bc)
        await media_window(bc)
    except CallFailed as exc:
        state.fail(exc.error, exc.stage)
    except CdpError as exc:
        state.fail(f"internal-error: chromium: {bc.broken or exc}"[:200], current_stage(state))
    except Exception as exc:  # a bug: still report it
        traceback.print_exc(file=sys.stderr)
        state.fail(f"internal-error: {type(exc).__name__}: {exc}"[:200], current_stage(state))


async def watch_browser(bc: BrowserCall) -> None:
    """Every second: what the browser uses, and whether it is still there."""
    assert bc.launched is not None
    process = bc.launched.process
    while True:
        bc.resources.sample(process.pid)
        if process.poll() is not None:
            bc.break_down(f"chromium exited with status {process.returncode}")
            return
        if bc.cdp is not None and bc.cdp.closed is not None:
            bc.break_down(bc.cdp.closed)
            return
        await asyncio.sleep(1.0)


async def supervise(bc: BrowserCall) -> None:
    """The call within the total timeout; SIGTERM/SIGINT end it early."""
    state = bc.call
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, state.terminate.set)
    call = asyncio.create_task(run_call(bc))
    stop_task = asyncio.create_task(state.terminate.wait())
    await asyncio.wait({call, stop_task}, timeout=state.cfg.total_timeout,
                       return_when=asyncio.FIRST_COMPLETED)
    stop_task.cancel()
    if not call.done():
        state.fail("terminated" if state.terminate.is_set() else "total-timeout",
                   current_stage(state))
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(call, CLOSE_TIMEOUT_S)


# ------------------------------------------------------------------ the result


@dataclass
class BrowserResult(PeerResult):
    """The aiortc peer's result, and what only a browser reports."""

    client: str = "chromium"
    browser: dict[str, Any] = field(default_factory=dict)
    ice_gathering: dict[str, Any] | None = None
    ice_rtt_ms: float | None = None
    candidate_errors: list[dict[str, Any]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    recorded_s: float | None = None
    recorded_as: str | None = None
    # When the microphone (the fake capture of the reference) started sending,
    # from the start of the attempt: the transport was up by then.
    sending_s: float | None = None
    playout: dict[str, float | int] = field(default_factory=dict)


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def build_result(bc: BrowserCall) -> BrowserResult:
    state, cfg = bc.call, bc.cfg
    result = BrowserResult(role=cfg.role, strategy=cfg.strategy, room=cfg.room,
                           frame_ms=OPUS_FRAME_MS)
    result.started_at = round(state.started_at, 3)
    result.duration_s = round(time.monotonic() - state.t_process, 3)
    result.error, result.failure_stage = state.error, state.failure_stage
    result.connected = bc.t_first is not None
    attempt = state.t_attempt
    if bc.t_first is not None and attempt is not None:
        result.setup_s = _rounded(bc.t_first - attempt)
    if state.t_ice is not None and attempt is not None:
        result.ice_s = _rounded(state.t_ice - attempt)
    if bc.t_sending is not None and attempt is not None:
        result.sending_s = _rounded(bc.t_sending - attempt)
    if state.t_failed is not None:
        origin = attempt if attempt is not None else state.t_process
        result.failed_at_s = _rounded(max(state.t_failed - origin, 0.0))
    result.ice_state_final = _last_state(bc, "ice")
    result.connection_state_final = _last_state(bc, "connection")
    result.local_candidates = sdp_candidate_counts(bc.local_sdp)
    result.remote_candidates = sdp_candidate_counts(bc.remote_sdp)
    _apply_stats(result, bc)
    result.timeline = list(bc.timeline)
    result.ice_gathering = bc.gathering
    result.candidate_errors = list(bc.candidate_errors)
    result.page_errors = list(bc.page_errors)
    result.states = list(bc.states)
    result.recorded_s = _rounded(bc.recorded_s)
    result.recorded_as = bc.recording.mime_type if bc.recording is not None else None
    wall = time.monotonic() - (bc.launched.started_monotonic if bc.launched else state.t_process)
    result.browser = {"version": bc.version, "program": str(bc.opts.chromium),
                      **bc.resources.to_dict(wall)}
    return result


def _last_state(bc: BrowserCall, what: str) -> str | None:
    states = [s["state"] for s in bc.states if s["what"] == what]
    return states[-1] if states else None


def _apply_stats(result: BrowserResult, bc: BrowserCall) -> None:
    end = bc.window_end
    if end is None:
        return
    result.selected_pair = selected_pair(bc.final_stats)
    result.playout = playout(bc.final_stats)
    result.codec = end.codec
    result.packets_sent = end.packets_sent
    result.packets_received = end.packets_received
    result.packets_lost = end.packets_lost
    result.loss_pct = loss_pct(end.packets_received, end.packets_lost)
    result.jitter_ms = end.jitter_ms
    result.rtt_ms = end.rtt_ms
    result.rtt_method = "rtcp-sr-rr" if end.rtt_ms is not None else None
    result.ice_rtt_ms = end.ice_rtt_ms
    result.frames_received = end.packets_received or 0
    if bc.t_first is not None and bc.t_window_end is not None:
        window = bc.t_window_end - bc.t_first
        result.media_seconds = _rounded(window)
        start = bc.window_start.bytes_received if bc.window_start else None
        if start is not None and end.bytes_received is not None and window > 0:
            result.received_bitrate_kbps = _rounded(8.0 * (end.bytes_received - start)
                                                    / window / 1000.0)
    figures = bc.window_figures if isinstance(bc.window_figures, dict) else {}
    gap = figures.get("max_gap_ms")
    if isinstance(gap, int | float):
        result.max_frame_gap_ms = round(float(gap), 1)


def write_result(result: BrowserResult, path: Path) -> None:
    """As PeerResult.write: atomically, with every field of the browser's result."""
    write_json_atomically(path, asdict(result))


# ------------------------------------------------------------------ teardown and main


async def teardown(bc: BrowserCall) -> None:
    state = bc.call
    state.closing = True
    if bc.cdp is not None and bc.cdp.closed is None:
        with contextlib.suppress(CdpError):
            if bc.session is not None:
                await page_call(bc, "cw.stopRecording()", timeout_s=3.0)
                await page_call(bc, "cw.hangUp()", timeout_s=3.0)
            await bc.cdp.call("Browser.close", timeout_s=3.0)
    if bc.launched is not None:
        await asyncio.get_running_loop().run_in_executor(None, stop, bc.launched.process)
    if bc.cdp is not None:
        await bc.cdp.close()
    if bc.page is not None:
        await bc.page.close()
    if state.signalling is not None:
        await state.signalling.close()
    if bc.recording is not None:
        try:
            bc.recorded_s = await asyncio.get_running_loop().run_in_executor(
                None, bc.recording.to_wav)
        except (OSError, ValueError) as exc:
            bc.page_errors.append(f"recording: {exc}")


async def drive(bc: BrowserCall) -> BrowserResult:
    watcher = asyncio.create_task(watch_browser(bc))
    try:
        await supervise(bc)
        if bc.call.error is None and bc.cfg.linger > 0:
            # Let the other side finish its own window; SIGTERM cuts this short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bc.call.terminate.wait(), bc.cfg.linger)
        await teardown(bc)  # the recorder's last audio comes in here
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    result = build_result(bc)
    write_result(result, bc.cfg.out)
    if bc.final_stats:  # the last getStats() report as Chromium gave it, for the record
        stats_file(bc.cfg.out).write_text(json.dumps(bc.final_stats, indent=1) + "\n")
    return result


def stats_file(out: Path) -> Path:
    """Where the last raw getStats() report goes: beside the result, e.g.
    caller.getstats.json for caller.json."""
    return out.with_name(f"{out.stem}.getstats.json")


def record_browser(opts: BrowserOptions, role: str, pid: int) -> OwnedProcess | None:
    """Record Chromium in the lab's registry, so that `callwall down` and
    `callwall clean` stop it even if this driver is killed."""
    if opts.registry_dir is None:
        return None
    return Registry.load(opts.registry_dir).record_process(pid, opts.lab_host, f"{role} browser")


def forget_browser(opts: BrowserOptions, owned: OwnedProcess | None) -> None:
    if owned is None or opts.registry_dir is None:
        return
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        Registry.load(opts.registry_dir).forget(owned)


def start_browser(bc: BrowserCall) -> None:
    """Chromium, started from the main thread before the event loop (see
    chromium.launch), and recorded."""
    opts, cfg = bc.opts, bc.cfg
    opts.profile_dir.mkdir(parents=True, exist_ok=True)
    setup = ChromiumSetup(binary=opts.chromium, profile_dir=opts.profile_dir,
                          fake_audio=cfg.audio, resolver_exclude=opts.resolver_exclude,
                          spki_pins=opts.spki_pins)
    bc.launched = launch(chromium_argv(setup), opts.chromium_log)
    bc.owned = record_browser(opts, cfg.role, bc.launched.process.pid)


def main(argv: Sequence[str] | None = None) -> int:
    opts, cfg = parse_options(argv)
    state = CallState(cfg=cfg, t_process=time.monotonic(), started_at=time.time(),
                      sink=AudioSink(None, WAV_RATE), events=EventLog(cfg.events))
    bc = BrowserCall(call=state, opts=opts,
                     recording=Recording(cfg.record) if cfg.record is not None else None)
    try:
        start_browser(bc)
    except (ChromiumError, OSError, RuntimeError, ValueError) as exc:
        state.fail(f"internal-error: chromium did not start: {exc}"[:200], "signalling")
        if bc.launched is not None:
            stop(bc.launched.process)
        write_result(build_result(bc), cfg.out)
        return EXIT_INTERNAL
    try:
        result = asyncio.run(drive(bc))
    finally:
        if bc.launched is not None:
            stop(bc.launched.process)
        forget_browser(opts, bc.owned)
        if not opts.keep_profile:
            shutil.rmtree(opts.profile_dir, ignore_errors=True)
    return EXIT_INTERNAL if (result.error or "").startswith("internal-error") else EXIT_OK
