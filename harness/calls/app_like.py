"""The app-like clients (profiles ``whatsapp-like``, ``telegram-like`` and
``max-like``): harness.calls.app.run in the caller and callee hosts against
each app's own servers (started by harness.services.lab_services):

| profile | chat server (signalling, text) | media |
|---|---|---|
| whatsapp-like | ``wa-chat.lab`` TCP 5222, then 443 | relay ``wa-relay.lab`` |
| telegram-like | ``tg-server.lab`` TCP 443 | P2P, reflector ``tg-relay.lab`` |
| max-like | ``max.lab`` TCP 443 (domestic) | relay ``max.lab`` UDP 3478 |

Each side exchanges TEXT_MESSAGES text messages over its chat server during
the call (harness.calls.app.text). The chat server is the lab's generic
signalling server when the topology has no host for the app's own.

Names: the caller asks the ISP's resolver (the topology's host with role
``resolver``), which a policy can take names out of; the callee (a contact
abroad, or in ru-domestic another ISP's subscriber) and a caller inside a
tunnel (whose DNS goes through the tunnel to a resolver abroad) are given the
zone on their command line, as seen from where they are
(harness.services.resolver.lab_zone), so the national DNS does not reach them.

The profiles carry their own path ladder, so their only strategy is
``direct``; tunnels carry whatsapp-like and telegram-like like any other
client (max-like is placed directly only: its servers are domestic)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.calls.base import CallError, CallOutput, CallSettings, PathChange
from harness.calls.procs import reference_audio, run_peers
from harness.faults import Fault
from harness.services.lab_services import (
    APP_SERVER_HOSTS,
    CHAT_PORTS,
    MAX_SERVER,
    STUN_PORT,
    TG_SERVER,
    WA_CHAT,
)
from harness.services.resolver import lab_name, lab_zone
from harness.spec.names import Profile, Strategy
from harness.testbed import Lab
from harness.tunnels.base import TunnelledEndpoints

# telegram-like learns its public address from Telegram's own servers, as
# tgcalls does (phoneConnectionWebrtc's STUN endpoints are Telegram's; Binding
# Requests follow the hellos to 596/597): its reflector's port 596 answers them.
TELEGRAM_STUN_PORT = 596
# Text messages each side sends during a call, one a second. [S] a test load,
# not a measured messaging pattern.
TEXT_MESSAGES = 5


@dataclass(frozen=True)
class AppServers:
    """Where one app's servers are: its chat server (a lab service of
    harness.services.lab_services), the host of its relay, and the (host,
    port) it asks for its public address (None: it asks none)."""

    chat: str
    relay_host: str
    stun: tuple[str, int] | None


PROFILE_SERVERS: dict[Profile, AppServers] = {
    Profile.WHATSAPP_LIKE: AppServers(WA_CHAT, "wa-relay", ("stun", STUN_PORT)),
    Profile.TELEGRAM_LIKE: AppServers(TG_SERVER, "tg-relay", ("tg-relay", TELEGRAM_STUN_PORT)),
    Profile.MAX_LIKE: AppServers(MAX_SERVER, "max", None),
}


class AppLikeClient:
    def __init__(self, profile: Profile) -> None:
        if profile not in PROFILE_SERVERS:
            raise ValueError(f"{profile} is not an app-like profile")
        self.profile = profile
        self.servers = PROFILE_SERVERS[profile]

    def tunnel_inner(self, tunnel: str) -> str:
        return Strategy.DIRECT

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        audio = reference_audio(lab)
        tunnelled = endpoints is not None

        def argv(role: str) -> list[str]:
            return self.argv(lab, role, audio, call_dir, settings, tunnelled=tunnelled)

        output = run_peers(lab, argv, call_dir, settings, fault, strategy)
        return dataclasses.replace(output, path=output.caller.path,
                                   path_changes=app_path_changes(output))

    def _relay_host(self, lab: Lab) -> str:
        name = self.servers.relay_host
        if name not in lab.topology.hosts:
            raise CallError(f"profile {self.profile} needs a host named {name!r} in topology "
                            f"{lab.topology.name!r}")
        return name

    def chat_endpoints(self, lab: Lab) -> list[str]:
        """The chat server as HOST:PORT arguments, in the order the client tries
        them: the app's own server by name, or the lab's signalling server."""
        host = APP_SERVER_HOSTS[self.servers.chat]
        if host in lab.topology.hosts:
            return [f"{lab_name(host)}:{port}" for port in CHAT_PORTS[self.servers.chat]]
        services = lab.services
        assert services is not None, "the lab's services are not running"
        return [f"{services.signalling_ip}:{services.signalling_port}"]

    def argv(self, lab: Lab, role: str, audio: Path, call_dir: Path, settings: CallSettings,
             *, tunnelled: bool = False) -> list[str]:
        services = lab.services
        assert services is not None, "the lab's services are not running"
        relay = lab_name(self._relay_host(lab))
        argv = [sys.executable, "-m", "harness.calls.app.run", "--profile", self.profile,
                "--role", role, "--call-id", f"{lab.run_id}-{call_dir.name}",
                "--relay", relay, "--audio", str(audio),
                "--out", str(call_dir / f"{role}.json"),
                "--media-seconds", str(settings.media_s),
                "--setup-timeout", str(settings.setup_timeout_s),
                "--stall-timeout", str(settings.stall_timeout_s),
                "--text-messages", str(TEXT_MESSAGES)]
        for endpoint in self.chat_endpoints(lab):
            argv += ["--signal", endpoint]
        if self.servers.stun is not None:
            argv += ["--stun", f"{lab_name(self.servers.stun[0])}:{self.servers.stun[1]}"]
        argv += self.name_arguments(lab, role, tunnelled)
        if settings.record_audio:
            argv += ["--record", str(call_dir / f"{role}-received.wav")]
        return argv

    @staticmethod
    def name_arguments(lab: Lab, role: str, tunnelled: bool) -> list[str]:
        """How this side finds its servers' addresses (see the module docstring)."""
        services = lab.services
        assert services is not None, "the lab's services are not running"
        topology = lab.topology
        if role == "caller" and not tunnelled and services.resolver_ip is not None:
            return ["--resolver", services.resolver_ip]
        # A topology without a resolver: the caller too is given the zone.
        seen_from = None if tunnelled else topology.host_with_role(role)
        argv = []
        for name, address in sorted(lab_zone(topology, seen_from).items()):
            argv += ["--name", f"{name}={address}"]
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
