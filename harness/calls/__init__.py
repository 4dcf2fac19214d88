"""Placing calls: one interface (harness.calls.base.CallClient), one client
per profile (CLIENTS), and :func:`place_call`, which combines any client with
any tunnel and any injected fault.

Where a call's processes run: calls/peer (the aiortc peer) and calls/app (the
app-like clients) are programs started inside lab hosts; the modules here run
in the harness."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from harness.calls.app_like import AppLikeClient
from harness.calls.base import CallClient, CallError, CallOutput, CallSettings
from harness.calls.browser import BROWSER_PROFILES, BrowserClient, missing_chromium
from harness.calls.descriptor import descriptor_client, missing_descriptor_tools
from harness.calls.signal_like import SignalLikeClient
from harness.calls.sip import SipClient, missing_sip_tools
from harness.calls.webrtc import WebRtcClient
from harness.faults import Fault
from harness.measure.peer import PeerReport
from harness.spec.descriptor import tunnel_strategies, unplaceable_any
from harness.spec.names import Profile
from harness.testbed import Lab
from harness.tunnels import TunnelError, missing_tools, open_tunnel

CLIENTS: dict[Profile, CallClient] = {
    Profile.WEBRTC: WebRtcClient(),
    Profile.SIGNAL_LIKE: SignalLikeClient(),
    Profile.WHATSAPP_LIKE: AppLikeClient(Profile.WHATSAPP_LIKE),
    Profile.TELEGRAM_LIKE: AppLikeClient(Profile.TELEGRAM_LIKE),
    Profile.MAX_LIKE: AppLikeClient(Profile.MAX_LIKE),
    Profile.BROWSER: BrowserClient(Profile.BROWSER),
    Profile.BROWSER_AIORTC: BrowserClient(Profile.BROWSER_AIORTC),
    Profile.SIP: SipClient(),
}

__all__ = ["CLIENTS", "CallClient", "CallError", "CallOutput", "CallSettings", "check_strategy",
           "missing_profile_tools", "place_call"]


def check_strategy(profile: str, strategy: str) -> CallClient:
    """The client of `profile`, if it can be placed with `strategy`;
    CallError says why not."""
    why = unplaceable_any(profile, strategy)  # endpoint descriptors included
    if why is not None:
        raise CallError(why)
    return CLIENTS[Profile(profile)] if profile in CLIENTS else descriptor_client(profile)


def missing_profile_tools(profile: str) -> list[str]:
    """The programs a call with `profile` needs that this machine lacks, each
    as 'program (Debian package P)' like harness.tunnels.missing_tools says of
    a strategy (the matrix skips such cells and names them); empty for a
    profile that needs nothing beyond the harness."""
    if profile in BROWSER_PROFILES:
        return missing_chromium()
    if profile == Profile.SIP:
        return missing_sip_tools()
    return missing_descriptor_tools(profile)


def place_call(lab: Lab, profile: str, strategy: str, settings: CallSettings,
               call_dir: Path, fault: Fault | None = None) -> CallOutput:
    """One call with `profile` and `strategy` to its end. A tunnel strategy
    (harness.tunnels) opens its tunnel first (its bring-up is part of the
    call's setup, and `tunnel_up_s` says how much), places the call inside it
    and removes the tunnel again, whatever happened; a tunnel that does not
    come up is a failed call (error "tunnel-failed"), not an exception."""
    client = check_strategy(profile, strategy)
    missing_programs = missing_profile_tools(profile)
    if missing_programs:
        call_dir.mkdir(parents=True, exist_ok=True)
        return _not_placed(strategy, "tool-missing",
                           f"profile {profile} needs {', '.join(missing_programs)}", call_dir)
    if strategy not in tunnel_strategies():
        return client.place(lab, strategy, settings, call_dir, fault)
    inner = client.tunnel_inner(strategy)
    call_dir.mkdir(parents=True, exist_ok=True)
    missing = missing_tools(strategy)
    if missing:
        return _not_placed(strategy, "tool-missing", f"{strategy} needs {', '.join(missing)}",
                           call_dir)
    workdir = lab.registry.files / f"tunnel-{call_dir.name}"
    started = time.monotonic()
    try:
        with open_tunnel(lab, strategy, workdir, call_dir) as tunnel:
            assert tunnel is not None
            up_s = round(time.monotonic() - started, 3)
            output = client.place(lab, inner, settings, call_dir, fault, tunnel.endpoints)
    except TunnelError as exc:
        return _tunnel_failed(strategy, str(exc), call_dir, started)
    return _after(output, up_s)


def _after(output: CallOutput, tunnel_up_s: float) -> CallOutput:
    return dataclasses.replace(output, tunnel_up_s=tunnel_up_s,
                               setup_offset_s=round(output.setup_offset_s + tunnel_up_s, 3))


def _tunnel_failed(strategy: str, reason: str, call_dir: Path, started: float) -> CallOutput:
    (call_dir / "tunnel-error.txt").write_text(reason + "\n")
    first_line = reason.splitlines()[0] if reason else ""
    return _not_placed(strategy, "tunnel-failed", f"{strategy} did not come up: {first_line}",
                       call_dir, started)


def _not_placed(strategy: str, error: str, detail: str, call_dir: Path,
                started: float | None = None) -> CallOutput:
    """Both sides' reports for a call whose tunnel never carried it."""
    now = time.monotonic()
    at = round(now - started, 3) if started is not None else 0.0
    peers = [PeerReport(role=role, strategy=strategy, error=error, failure_stage="tunnel",
                        failed_at_s=at, detail=detail) for role in ("caller", "callee")]
    return CallOutput(caller=peers[0], callee=peers[1], directory=call_dir, wall_s=at,
                      started_monotonic=started if started is not None else now)
