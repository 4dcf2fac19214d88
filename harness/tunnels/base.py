"""The one interface every tunnel strategy offers, and its error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.netns.endpoint import Endpoint


@dataclass(frozen=True)
class TunnelledEndpoints:
    """What the caller's peer uses instead of the lab's own addresses when a
    tunnel strategy (harness.tunnels) carries its call: ``host_ip`` pins its
    host candidates to the tunnel interface, ``turn`` replaces the TURN
    server's address and UDP/TCP port (e.g. a local ss-tunnel port)."""

    host_ip: str | None = None
    turn: Endpoint | None = None


class TunnelError(RuntimeError):
    """A tunnel tool failed to start or configure; the message ends with the
    tail of its log."""


class Tunnel(Protocol):
    """`name` is the strategy; `endpoints` what the caller's peer uses inside
    the tunnel; `established` whether, at the end of `up`, a ping through the
    tunnel was answered (shadowsocks, which has no interface: both ends
    listen). A censor that blocks the tunnel shows in the call, not here."""

    name: str
    endpoints: TunnelledEndpoints
    established: bool

    def up(self) -> None:
        """Start the server side in `vpn`, the client side in `caller`, and the
        routes; raise TunnelError with the tool's log tail on failure."""

    def down(self) -> None:
        """Stop exactly the processes, interfaces, routes and rules it
        created; safe after a failed or partial `up`, and safe twice."""
