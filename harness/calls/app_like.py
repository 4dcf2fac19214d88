"""The app-like clients (profiles ``whatsapp-like`` and ``telegram-like``):
harness.calls.app.run in the caller and callee hosts against the app relays
(hosts ``wa-relay`` and ``tg-relay``, started by harness.services). They
carry their own path ladder, so their only strategy is ``direct``; tunnels
carry them like any other client."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from harness.calls.base import CallError, CallOutput, CallSettings, PathChange
from harness.calls.procs import reference_audio, run_peers
from harness.faults import Fault
from harness.services.lab_services import APP_RELAY_HOSTS, TG_RELAY, WA_RELAY
from harness.spec.names import Profile, Strategy
from harness.testbed import Lab
from harness.tunnels.base import TunnelledEndpoints

RELAY_SERVICE = {Profile.WHATSAPP_LIKE: WA_RELAY, Profile.TELEGRAM_LIKE: TG_RELAY}
# telegram-like learns its public address from Telegram's own servers, as
# tgcalls does (phoneConnectionWebrtc's STUN endpoints are Telegram's; Binding
# Requests follow the hellos to 596/597): its reflector's port 596 answers them.
TELEGRAM_STUN_PORT = 596


class AppLikeClient:
    def __init__(self, profile: Profile) -> None:
        if profile not in RELAY_SERVICE:
            raise ValueError(f"{profile} is not an app-like profile")
        self.profile = profile

    def tunnel_inner(self, tunnel: str) -> str:
        return Strategy.DIRECT

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        audio = reference_audio(lab)

        def argv(role: str) -> list[str]:
            return self.argv(lab, role, audio, call_dir, settings)

        output = run_peers(lab, argv, call_dir, settings, fault, strategy)
        return dataclasses.replace(output, path=output.caller.path,
                                   path_changes=app_path_changes(output))

    def relay_ip(self, lab: Lab) -> str:
        name = APP_RELAY_HOSTS[RELAY_SERVICE[self.profile]]
        if name not in lab.topology.hosts:
            raise CallError(f"profile {self.profile} needs a host named {name!r} in topology "
                            f"{lab.topology.name!r}")
        return str(lab.topology.address_of(name))

    def argv(self, lab: Lab, role: str, audio: Path, call_dir: Path,
             settings: CallSettings) -> list[str]:
        services = lab.services
        assert services is not None, "the lab's services are not running"
        relay = self.relay_ip(lab)
        stun = (f"{relay}:{TELEGRAM_STUN_PORT}" if self.profile == Profile.TELEGRAM_LIKE
                else f"{services.stun_ip}:{services.stun_port}")
        argv = [sys.executable, "-m", "harness.calls.app.run", "--profile", self.profile,
                "--role", role, "--call-id", f"{lab.run_id}-{call_dir.name}",
                "--relay", relay, "--audio", str(audio),
                "--out", str(call_dir / f"{role}.json"),
                "--media-seconds", str(settings.media_s),
                "--setup-timeout", str(settings.setup_timeout_s),
                "--stall-timeout", str(settings.stall_timeout_s),
                "--signal", f"{services.signalling_ip}:{services.signalling_port}",
                "--stun", stun]
        if settings.record_audio:
            argv += ["--record", str(call_dir / f"{role}-received.wav")]
        return argv


def app_path_changes(output: CallOutput) -> list[PathChange]:
    """Both sides' path changes on the call's clock (seconds from when the
    harness started the clients), in time order."""
    changes = []
    for peer in (output.caller, output.callee):
        for change in peer.path_changes:
            at = change.get("at_s")
            if "monotonic" in change:
                at = round(float(change["monotonic"]) - output.started_monotonic, 3)
            changes.append(PathChange(peer.role, change.get("path"), at, change.get("reason")))
    changes.sort(key=lambda c: (c.at_s is None, c.at_s or 0.0))
    return changes
