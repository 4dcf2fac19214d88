"""The one interface every call client offers, and the typed values it takes
and gives.

A call client (:class:`CallClient`) places one call with one profile in a
running lab: it starts a callee and a caller somewhere in the lab, lets them
call, and returns a :class:`CallOutput` holding both sides' typed reports
(harness.measure.peer.PeerReport) and what the harness saw. Tunnels and
injected faults are the caller's business (harness.calls.place_call): a
client only uses the endpoints a tunnel gives it and hands its processes to
the fault injector through harness.calls.procs.run_peers.

The aiortc peer (webrtc.py), the Signal-like ladder (signal_like.py) and the
app-like clients (app_like.py) implement it; a new kind of endpoint (a
browser, a SIP softphone, a container image, a user's own command) is one
more module and one more entry in harness.calls.CLIENTS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.measure.peer import PeerReport, PeerTimeline

if TYPE_CHECKING:  # the types of the arguments only; no import at run time
    from harness.faults import Fault, FaultEvent
    from harness.testbed import Lab
    from harness.tunnels.base import TunnelledEndpoints

# Past the setup timeout and the media window, the time a call's processes get
# to finish on their own before they are stopped.
GRACE_S = 20.0


class CallError(RuntimeError):
    """A call could not be placed at all (bad arguments, a missing host)."""


@dataclass(frozen=True)
class CallSettings:
    """How long a call may take and what is kept of it."""

    media_s: float = 6.0
    setup_timeout_s: float = 15.0
    record_audio: bool = True
    # A peer fails its call ("media-stalled") when no audio frame is decoded for this long.
    stall_timeout_s: float = 3.0
    # A pcap of the censor's interfaces per call: headers only, at most this many packets.
    capture_pcap: bool = True
    pcap_max_packets: int = 100_000

    @property
    def budget_s(self) -> float:
        """The hard limit for one attempt, its processes included."""
        return self.setup_timeout_s + self.media_s + GRACE_S


@dataclass(frozen=True)
class PathChange:
    """One side moved its media to `path` at `at_s` (the call's clock)."""

    role: str
    path: str | None
    at_s: float | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "path": self.path, "at_s": self.at_s, "reason": self.reason}


@dataclass(frozen=True)
class CallOutput:
    """What one call gave: both sides' reports, the harness's view of their
    processes, and the call's clock. ``started_monotonic`` is when the final
    attempt's processes started; ``setup_offset_s`` what the call spent before
    that (a failed first attempt, a tunnel's bring-up), which belongs to its
    setup time; ``tunnel_up_s`` the tunnel's part of it."""

    caller: PeerReport
    callee: PeerReport
    directory: Path
    faults: Sequence[FaultEvent] = ()
    timelines: Mapping[str, PeerTimeline] = field(default_factory=dict)
    wall_s: float | None = None
    started_monotonic: float = 0.0
    setup_offset_s: float = 0.0
    tunnel_up_s: float | None = None
    path: str | None = None
    path_changes: Sequence[PathChange] = ()
    # Roles an injected fault killed on purpose.
    killed_by_fault: frozenset[str] = frozenset()


class CallClient(Protocol):
    """One kind of call endpoint."""

    @property
    def profile(self) -> str:
        """The profile it places: a harness.spec.names.Profile, or an endpoint
        descriptor's name (harness.calls.descriptor)."""
        ...

    def tunnel_inner(self, tunnel: str) -> str:
        """The strategy this client uses inside `tunnel` (which strategies a
        profile takes at all: harness.spec.names.PLACEABLE)."""

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        """Run one call to its end (within the settings' budget) and report
        both sides; a client that cannot get through returns reports that say
        why, it does not raise."""
