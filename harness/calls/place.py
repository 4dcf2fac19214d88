"""Placing one call with a call profile: ``place_profile_call``, the profile
counterpart of harness.calls.webrtc.place_call, returning the same CallOutput
so harness.session judges every profile alike.

* ``webrtc``: the aiortc peer, unchanged (any of its strategies).
* ``signal-like``: aiortc over UDP (``direct``: host and server-reflexive
  candidates) with a setup budget of SIGNAL_UDP_BUDGET_S; when it does not
  connect, a second attempt with TURN over TLS 443 (coturn at the ``relays``
  host). aiortc runs one ICE configuration per connection, so the ladder is
  two attempts; the fallback's setup time includes the failed attempt.
* ``whatsapp-like`` and ``telegram-like``: harness.calls.app.run in the caller and
  callee hosts against the app relays (hosts ``wa-relay`` and ``tg-relay``,
  started by harness.services.lab_services). They carry their own path ladder,
  so their only strategy is ``direct``; tunnels are combined with them
  elsewhere (harness/tunnels)."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness.calls.webrtc import (
    CallOutput,
    CallSettings,
    _peer_env,
    _read_result,
    _timeline,
    _wait_all,
    place_call,
    reference_audio,
)
from harness.faults import Fault
from harness.measure.record import PeerTimeline
from harness.spec.names import ALL_STRATEGIES, ICE_STRATEGIES, PROFILES, TUNNEL_STRATEGIES
from harness.testbed import Lab
from harness.tunnels import TunnelError, inner_strategy, open_tunnel
from harness.tunnels.base import TunnelledEndpoints

WEBRTC, SIGNAL, WHATSAPP, TELEGRAM = "webrtc", "signal-like", "whatsapp-like", "telegram-like"
APP_RELAY_HOSTS = {WHATSAPP: "wa-relay", TELEGRAM: "tg-relay"}
SIGNAL_UDP_BUDGET_S = 5.0
TURN_ONLY_TUNNELS = ("shadowsocks",)
ROLES = ("callee", "caller")
UDP_ATTEMPT_DIR = "udp-attempt"


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; profiles are: {', '.join(PROFILES)}")
    return profile


def place_profile_call(lab: Lab, profile: str, strategy: str, settings: CallSettings,
                       call_dir: Path, fault: Fault | None = None) -> CallOutput:
    """One call with `profile` and `strategy` to its end. A tunnel strategy
    (harness.tunnels) opens its tunnel first, places the call inside it and
    removes the tunnel again, whatever happened; a tunnel that does not come
    up is a failed call (error "tunnel-failed"), not an exception."""
    check_strategy(profile, strategy)
    if strategy not in TUNNEL_STRATEGIES:
        return _untunnelled(lab, profile, strategy, settings, call_dir, fault)
    call_dir.mkdir(parents=True, exist_ok=True)
    workdir = lab.registry.files / f"tunnel-{call_dir.name}"
    started = time.monotonic()
    try:
        with open_tunnel(lab, strategy, workdir, call_dir) as tunnel:
            assert tunnel is not None
            inner = inner_strategy(strategy) if profile == WEBRTC else "direct"
            return _untunnelled(lab, profile, inner, settings, call_dir, fault,
                                tunnel.endpoints)
    except TunnelError as exc:
        return _tunnel_failed(strategy, str(exc), call_dir, started)


def check_strategy(profile: str, strategy: str) -> None:
    """Refuse a profile/strategy pair that cannot be placed: the ICE strategies
    belong to the webrtc client (the app profiles bring their own ladder, so
    their plain strategy is `direct`), and shadowsocks forwards one UDP port to
    the TURN relay, which only the webrtc client uses."""
    check_profile(profile)
    if strategy not in ALL_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; strategies are: "
                         f"{', '.join(ALL_STRATEGIES)}")
    if profile == WEBRTC:
        return
    if strategy in ICE_STRATEGIES and strategy != "direct":
        raise ValueError(f"profile {profile!r} brings its own path ladder: its strategies "
                         f"are 'direct' and the tunnels, not {strategy!r}")
    if strategy in TURN_ONLY_TUNNELS:
        raise ValueError(f"{strategy} carries TURN over UDP for the webrtc client only; "
                         f"profile {profile!r} cannot use it")


def _untunnelled(lab: Lab, profile: str, strategy: str, settings: CallSettings,
                 call_dir: Path, fault: Fault | None,
                 endpoints: TunnelledEndpoints | None = None) -> CallOutput:
    if profile == WEBRTC:
        return place_call(lab, strategy, call_dir, settings, fault, endpoints)
    if fault is not None:
        raise ValueError(f"profile {profile!r}: injected faults are only wired for webrtc")
    if profile == SIGNAL:
        return _signal_like(lab, settings, call_dir)
    return _app_call(lab, profile, settings, call_dir)


# --------------------------------------------------------------------------- signal-like


def _signal_like(lab: Lab, settings: CallSettings, call_dir: Path) -> CallOutput:
    udp_settings = dataclasses.replace(settings, setup_timeout_s=SIGNAL_UDP_BUDGET_S)
    first = place_call(lab, "direct", call_dir, udp_settings)
    if first.caller.get("connected") and first.callee.get("connected"):
        return _with_paths(first, "udp", [_change("udp", 0.0, "ICE over UDP connected")])
    _keep_attempt(call_dir)
    offset = first.wall_s or 0.0
    second = place_call(lab, "turn-tls-443", call_dir, settings)
    changes = [_change("udp", 0.0, "ICE over UDP"),
               _change("turn-tls-443", offset,
                       f"UDP attempt failed ({first.caller.get('error')}) within "
                       f"{SIGNAL_UDP_BUDGET_S:g} s")]
    for peer in (second.caller, second.callee):
        if peer.get("setup_s") is not None:
            peer["setup_s"] = round(float(peer["setup_s"]) + offset, 3)
        peer["udp_attempt_error"] = (first.caller if peer is second.caller
                                     else first.callee).get("error")
    timelines = {role: _shifted(t, offset) for role, t in second.timelines.items()}
    merged = dataclasses.replace(second, timelines=timelines,
                                 started_monotonic=first.started_monotonic,
                                 wall_s=round(offset + (second.wall_s or 0.0), 3))
    final = "turn-tls-443" if second.caller.get("connected") else None
    return _with_paths(merged, final, changes)


def _tunnel_failed(strategy: str, reason: str, call_dir: Path, started: float) -> CallOutput:
    (call_dir / "tunnel-error.txt").write_text(reason + "\n")
    peers = [{"role": role, "strategy": strategy, "connected": False, "error": "tunnel-failed",
              "detail": f"{strategy} did not come up: {reason.splitlines()[0] if reason else ''}",
              "failed_at_s": round(time.monotonic() - started, 3)} for role in ("caller", "callee")]
    return CallOutput(caller=peers[0], callee=peers[1], directory=call_dir,
                      wall_s=round(time.monotonic() - started, 3), started_monotonic=started)


def _keep_attempt(call_dir: Path) -> None:
    """Move the failed UDP attempt's files aside, so the fallback's own files
    are where the judged call looks for them."""
    attempt = call_dir / UDP_ATTEMPT_DIR
    attempt.mkdir(exist_ok=True)
    for path in list(call_dir.iterdir()):
        if path.is_file() and path.name.split(".")[0].split("-")[0] in ROLES:
            shutil.move(str(path), attempt / path.name)


def _shifted(timeline: PeerTimeline, offset: float) -> PeerTimeline:
    def later(value: float | None) -> float | None:
        return None if value is None else round(value + offset, 3)

    return dataclasses.replace(timeline, attempt_s=later(timeline.attempt_s),
                               media_s=later(timeline.media_s),
                               failed_s=later(timeline.failed_s),
                               exited_s=later(timeline.exited_s),
                               killed_s=later(timeline.killed_s))


def _change(path: str, at_s: float, reason: str) -> dict[str, Any]:
    return {"path": path, "at_s": round(at_s, 3), "reason": reason}


def _with_paths(output: CallOutput, final: str | None,
                changes: list[dict[str, Any]]) -> CallOutput:
    for peer in (output.caller, output.callee):
        peer["profile"] = SIGNAL
        peer["path"] = final if peer.get("connected") else None
        peer["path_changes"] = changes
    return output


# --------------------------------------------------------------------------- app clients


def _app_call(lab: Lab, profile: str, settings: CallSettings, call_dir: Path) -> CallOutput:
    call_dir.mkdir(parents=True, exist_ok=True)
    audio = reference_audio(lab)
    events = {role: call_dir / f"{role}.events.jsonl" for role in ROLES}
    for path in events.values():
        path.unlink(missing_ok=True)
    t0 = time.monotonic()
    procs = {}
    for role in ROLES:
        argv = _client_argv(lab, profile, role, audio, call_dir, settings) + [
            "--events", str(events[role])]
        procs[role] = lab.host_with_role(role).start(
            argv, what=f"{role} {profile} client", log=call_dir / f"{role}.log",
            env=_peer_env(lab))
    exits = _wait_all(procs, t0 + settings.budget_s, t0)
    results = {role: _read_result(call_dir, role, "direct") for role in ROLES}
    for result in results.values():
        result.setdefault("profile", profile)
    timelines = {role: _timeline(role, results[role], events[role], t0, exits[role], None)
                 for role in ROLES}
    return CallOutput(caller=results["caller"], callee=results["callee"], directory=call_dir,
                      timelines=timelines, wall_s=round(time.monotonic() - t0, 3),
                      started_monotonic=t0)


def app_relay_ip(lab: Lab, profile: str) -> str:
    name = APP_RELAY_HOSTS[profile]
    if name not in lab.topology.hosts:
        raise ValueError(f"profile {profile!r} needs a host named {name!r} in topology "
                         f"{lab.topology.name!r}")
    return str(lab.topology.address_of(name))


def _client_argv(lab: Lab, profile: str, role: str, audio: Path, call_dir: Path,
                 settings: CallSettings) -> list[str]:
    services = lab.services
    assert services is not None, "the lab's services are not running"
    # telegram-like learns its public address from Telegram's own servers, as
    # tgcalls does (phoneConnectionWebrtc's STUN endpoints are Telegram's;
    # Binding Requests follow the hellos to 596/597, restrictions.md §2.2): its
    # reflector's port 596 answers Binding Requests. The others ask the lab's.
    stun_server = (f"{app_relay_ip(lab, profile)}:596" if profile == TELEGRAM
                   else f"{services.stun_ip}:{services.stun_port}")
    argv = [sys.executable, "-m", "harness.calls.app.run", "--profile", profile, "--role", role,
            "--call-id", f"{lab.run_id}-{call_dir.name}", "--relay", app_relay_ip(lab, profile),
            "--audio", str(audio), "--out", str(call_dir / f"{role}.json"),
            "--media-seconds", str(settings.media_seconds),
            "--setup-timeout", str(settings.setup_timeout_s),
            "--stall-timeout", str(settings.stall_timeout_s),
            "--signal", f"{services.signalling_ip}:{services.signalling_port}",
            "--stun", stun_server]
    if settings.record_audio:
        argv += ["--record", str(call_dir / f"{role}-received.wav")]
    return argv


def call_paths(output: CallOutput) -> tuple[str | None, list[dict[str, Any]]]:
    """The path the caller's call ended on, and both sides' path changes on the
    call's clock (seconds from when the harness started the clients)."""
    changes = []
    for role, peer in (("caller", output.caller), ("callee", output.callee)):
        for change in peer.get("path_changes") or []:
            at = change.get("at_s")
            if "monotonic" in change:
                at = round(float(change["monotonic"]) - output.started_monotonic, 3)
            changes.append({"role": role, "path": change.get("path"), "at_s": at,
                            "reason": change.get("reason")})
    changes.sort(key=lambda c: (c["at_s"] is None, c["at_s"] or 0.0))
    return output.caller.get("path"), changes
