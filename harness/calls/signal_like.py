"""The Signal-like client (profile ``signal-like``): aiortc gathering every
candidate at once, as RingRTC does (docs/sources.md S66): host,
server-reflexive (the lab's STUN server), TURN over UDP and TURN over TLS on
443 at the coturn of the ``relays`` host, in one ICE configuration with
policy ALL (harness.calls.strategies ``gather-all``). ICE then picks the
pair: the peer-to-peer pair when UDP between the peers works, else a relay
pair, over UDP when the relay's UDP works, else over TLS.

The record's ``path`` says which pair won, from the selected candidate pairs:
``turn-udp``, ``turn-tcp`` or ``turn-tls-443`` when either side's local
candidate is a relay (by how that side reaches its TURN server), ``udp`` for
a pair without a relay; each side's path change carries its own selected
pair. Where RingRTC trickles candidates as they come, aiortc gathers before
it offers (no trickle ICE): when a server does not answer, the offer waits
for aioice's gathering timeout (5 s), which is in the setup time."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.calls.base import CallOutput, CallSettings, PathChange
from harness.calls.strategies import GATHER_ALL
from harness.calls.webrtc import WebRtcClient
from harness.faults import Fault
from harness.measure.peer import PeerReport
from harness.spec.names import ROLES, Profile, Strategy
from harness.testbed import Lab
from harness.tunnels.base import TunnelledEndpoints

# How a side reaches its TURN server (harness.calls.peer.result.SelectedPair
# local_relay_protocol) → the path's name, as the TURN strategies name them.
RELAY_PATHS = {"udp": Strategy.TURN_UDP.value, "tcp": Strategy.TURN_TCP.value,
               "tls": Strategy.TURN_TLS_443.value}
P2P_PATH = "udp"


class SignalLikeClient:
    profile = Profile.SIGNAL_LIKE

    def __init__(self) -> None:
        self._webrtc = WebRtcClient()

    def tunnel_inner(self, tunnel: str) -> str:
        return Strategy.DIRECT

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        # Inside a tunnel it gathers as it would outside: the tunnel's routes
        # carry it, and its candidates are not pinned to the tunnel's address.
        del endpoints
        output = self._webrtc.place(lab, GATHER_ALL, settings, call_dir, fault)
        reports = {"caller": output.caller, "callee": output.callee}
        path = call_path([r.selected_pair for r in reports.values()])
        changes = [PathChange(role, path, _ice_s(reports[role]),
                              f"ICE selected {describe(reports[role].selected_pair)}")
                   for role in ROLES if reports[role].selected_pair is not None]
        connected = output.caller.connected and output.callee.connected
        return dataclasses.replace(output, path=path if connected else None,
                                   path_changes=changes)


def pair_path(pair: Mapping[str, Any] | None) -> str | None:
    """The path one side's selected pair takes: its relay's, or ``udp``."""
    if pair is None:
        return None
    if pair.get("local_type") == "relay":
        return RELAY_PATHS.get(str(pair.get("local_relay_protocol")), "turn")
    return P2P_PATH


def call_path(pairs: list[Mapping[str, Any] | None]) -> str | None:
    """The call's path: a relay either side uses, else ``udp`` (None when
    neither side selected a pair)."""
    paths = [pair_path(pair) for pair in pairs if pair is not None]
    relayed = [p for p in paths if p not in (None, P2P_PATH)]
    if relayed:
        return relayed[0]
    return P2P_PATH if paths else None


def describe(pair: Mapping[str, Any] | None) -> str:
    if pair is None:
        return "no pair"
    local = f"{pair.get('local_type')}/{pair.get('local_protocol')}"
    if pair.get("local_relay_protocol"):
        local += f" via TURN over {pair.get('local_relay_protocol')}"
    return f"{local} → {pair.get('remote_type')}/{pair.get('remote_protocol')}"


def _ice_s(report: PeerReport) -> float | None:
    value = report.extra.get("ice_s")
    return round(float(value), 3) if isinstance(value, int | float) else None
