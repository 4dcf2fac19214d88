"""The aiortc WebRTC client (profile ``webrtc``): an aiortc peer process
(harness.calls.peer) in the callee host and one in the caller host, meeting
through the lab's signalling server, with one ICE strategy
(harness.calls.strategies): ``direct``, ``turn-udp``, ``turn-tcp`` or
``turn-tls-443``."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.calls.base import CallOutput, CallSettings
from harness.calls.procs import reference_audio, run_peers
from harness.faults import Fault
from harness.netns.endpoint import Endpoint
from harness.spec.names import Profile
from harness.testbed import Lab
from harness.tunnels import inner_strategy
from harness.tunnels.base import TunnelledEndpoints


class WebRtcClient:
    profile = Profile.WEBRTC

    def tunnel_inner(self, tunnel: str) -> str:
        return inner_strategy(tunnel)

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        audio = reference_audio(lab)
        room = f"{lab.run_id}-{call_dir.name}"

        def argv(role: str) -> list[str]:
            return peer_argv(lab, role, strategy, room, audio, call_dir, settings,
                             endpoints if role == "caller" else None)

        return run_peers(lab, argv, call_dir, settings, fault, strategy)


def peer_argv(lab: Lab, role: str, strategy: str, room: str, audio: Path, call_dir: Path,
              settings: CallSettings, endpoints: TunnelledEndpoints | None = None) -> list[str]:
    """The aiortc peer's command line for one side of a call."""
    services = lab.services
    assert services is not None, "the lab's services are not running"
    host = lab.host_with_role(role)
    endpoints = endpoints or TunnelledEndpoints()
    turn = endpoints.turn or Endpoint(services.relay_ip, services.turn_port)
    host_ip = endpoints.host_ip or str(lab.topology.address_of(host.name))
    argv = [
        sys.executable, "-m", "harness.calls.peer", "--role", role,
        "--signal", f"{services.signalling_ip}:{services.signalling_port}",
        "--room", room, "--strategy", strategy,
        "--stun", f"{services.stun_ip}:{services.stun_port}",
        "--turn", turn.host, "--turn-port", str(turn.port),
        "--turns-port", str(services.turns_port),
        "--turn-user", services.turn_username, "--turn-pass", services.turn_password,
        "--ca-file", services.ca_file, "--audio", str(audio),
        "--media-seconds", str(settings.media_s),
        "--setup-timeout", str(settings.setup_timeout_s),
        "--out", str(call_dir / f"{role}.json"),
        "--host-ip", host_ip,
        "--stall-timeout", str(settings.stall_timeout_s),
    ]
    if settings.record_audio:
        argv += ["--record", str(call_dir / f"{role}-received.wav")]
    return argv
