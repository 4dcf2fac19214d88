"""The Signal-like client (profile ``signal-like``): aiortc over UDP
(``direct``: host and server-reflexive candidates) with a setup budget of
SIGNAL_UDP_BUDGET_S; when that does not connect, a second attempt with TURN
over TLS 443 (coturn at the ``relays`` host). aiortc runs one ICE
configuration per connection, so the ladder is two attempts; the fallback's
setup time includes the failed attempt."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from harness.calls.base import CallOutput, CallSettings, PathChange
from harness.calls.webrtc import WebRtcClient
from harness.faults import Fault
from harness.spec.names import ROLES, Profile, Strategy
from harness.testbed import Lab
from harness.tunnels.base import TunnelledEndpoints

SIGNAL_UDP_BUDGET_S = 5.0
UDP_ATTEMPT_DIR = "udp-attempt"


class SignalLikeClient:
    profile = Profile.SIGNAL_LIKE

    def __init__(self) -> None:
        self._webrtc = WebRtcClient()

    def tunnel_inner(self, tunnel: str) -> str:
        return Strategy.DIRECT

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        # Inside a tunnel the ladder runs as it would outside: the tunnel's routes
        # carry it, and its candidates are not pinned to the tunnel's address.
        del endpoints
        udp = dataclasses.replace(settings, setup_timeout_s=SIGNAL_UDP_BUDGET_S)
        first = self._webrtc.place(lab, Strategy.DIRECT, udp, call_dir, fault)
        if first.caller.connected and first.callee.connected:
            return dataclasses.replace(first, path="udp", path_changes=[
                PathChange(role, "udp", 0.0, "ICE over UDP connected") for role in ROLES])
        _keep_attempt(call_dir)
        offset = first.wall_s or 0.0
        # An injected fault that never came due in the UDP attempt is tried again.
        again = fault if fault is not None and not any(e.performed for e in first.faults) \
            else None
        second = self._webrtc.place(lab, Strategy.TURN_TLS_443, settings, call_dir, again)
        reason = (f"UDP attempt failed ({first.caller.error}) within "
                  f"{SIGNAL_UDP_BUDGET_S:g} s")
        changes = [PathChange(role, "udp", 0.0, "ICE over UDP") for role in ROLES]
        changes += [PathChange(role, Strategy.TURN_TLS_443, round(offset, 3), reason)
                    for role in ROLES]
        final = Strategy.TURN_TLS_443.value if second.caller.connected else None
        return dataclasses.replace(
            second, faults=[*first.faults, *second.faults],
            setup_offset_s=round(offset, 3),
            timelines={role: t.shifted(offset) for role, t in second.timelines.items()},
            started_monotonic=first.started_monotonic,
            wall_s=round(offset + (second.wall_s or 0.0), 3), path=final, path_changes=changes,
            killed_by_fault=first.killed_by_fault | second.killed_by_fault)


def _keep_attempt(call_dir: Path) -> None:
    """Move the failed UDP attempt's files aside, so the fallback's own files
    are where the judged call looks for them."""
    attempt = call_dir / UDP_ATTEMPT_DIR
    attempt.mkdir(exist_ok=True)
    for path in list(call_dir.iterdir()):
        if path.is_file() and path.name.split(".")[0].split("-")[0] in ROLES:
            shutil.move(str(path), attempt / path.name)
