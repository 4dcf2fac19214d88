"""Reading Chromium's getStats() report (W3C webrtc-stats, as the page
returns it: a list of stats objects) and its session descriptions into the
figures the aiortc peer reports, so that one PeerReport holds either.

Units: the W3C report gives jitter and round-trip times in seconds; they are
reported here in ms. ``rtt_ms`` is the remote-inbound-rtp ``roundTripTime``,
computed from the peer's RTCP receiver reports about this side's sender
reports (RFC 3550 section 6.4.1), like the aiortc peer's; the ICE consent
round trip of the selected pair is kept apart as ``ice_rtt_ms``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.calls.peer.result import SelectedPair

Stats = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class RtpFigures:
    """Cumulative counters of one getStats() report (None where absent)."""

    packets_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    ice_rtt_ms: float | None = None
    bytes_received: int | None = None
    codec: str | None = None
    clock_rate: int | None = None


def of_type(stats: Stats, kind: str) -> list[Mapping[str, Any]]:
    return [s for s in stats if s.get("type") == kind]


def _by_id(stats: Stats) -> dict[str, Mapping[str, Any]]:
    return {str(s["id"]): s for s in stats if "id" in s}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ms(seconds: Any) -> float | None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    return round(1000.0 * seconds, 3)


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def rtp_figures(stats: Stats) -> RtpFigures:
    """The audio counters of one report: sent, received and lost packets,
    jitter, the RTCP round trip, bytes received on the transport and the codec."""
    inbound = [s for s in of_type(stats, "inbound-rtp") if s.get("kind", "audio") == "audio"]
    outbound = [s for s in of_type(stats, "outbound-rtp") if s.get("kind", "audio") == "audio"]
    remote_in = [s for s in of_type(stats, "remote-inbound-rtp")
                 if s.get("roundTripTime") is not None]
    jitters = [_ms(s.get("jitter")) for s in inbound]
    known_jitter = [j for j in jitters if j is not None]
    transports = of_type(stats, "transport")
    codec = _codec(stats, inbound)
    pair = selected_pair_stats(stats)
    return RtpFigures(
        packets_sent=_sum([_int(s.get("packetsSent")) for s in outbound]),
        packets_received=_sum([_int(s.get("packetsReceived")) for s in inbound]),
        packets_lost=_sum([_int(s.get("packetsLost")) for s in inbound]),
        jitter_ms=max(known_jitter) if known_jitter else None,
        rtt_ms=_ms(remote_in[-1]["roundTripTime"]) if remote_in else None,
        ice_rtt_ms=_ms(pair.get("currentRoundTripTime")) if pair else None,
        bytes_received=_sum([_int(s.get("bytesReceived")) for s in transports]),
        codec=codec.get("mimeType") if codec else None,
        clock_rate=_int(codec.get("clockRate")) if codec else None,
    )


def _codec(stats: Stats, inbound: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    ids = _by_id(stats)
    for rtp in inbound:
        codec = ids.get(str(rtp.get("codecId")))
        if codec is not None:
            return codec
    return None


def selected_pair_stats(stats: Stats) -> Mapping[str, Any] | None:
    """The candidate pair the transport selected (or, without that field, the
    nominated pair that succeeded)."""
    ids = _by_id(stats)
    for transport in of_type(stats, "transport"):
        pair = ids.get(str(transport.get("selectedCandidatePairId")))
        if pair is not None:
            return pair
    nominated = [p for p in of_type(stats, "candidate-pair")
                 if p.get("nominated") and p.get("state") == "succeeded"]
    return nominated[0] if nominated else None


def _address(candidate: Mapping[str, Any]) -> str:
    host = str(candidate.get("address") or candidate.get("ip") or "")
    port = candidate.get("port")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def selected_pair(stats: Stats) -> SelectedPair | None:
    """The selected pair in the aiortc peer's terms: candidate types, the
    transport of each candidate, and for a local relay candidate how this
    side reaches the TURN server (Chromium's ``relayProtocol``: udp, tcp, tls)."""
    pair = selected_pair_stats(stats)
    if pair is None:
        return None
    ids = _by_id(stats)
    local = ids.get(str(pair.get("localCandidateId")))
    remote = ids.get(str(pair.get("remoteCandidateId")))
    if local is None or remote is None:
        return None
    local_type = str(local.get("candidateType"))
    relay = local.get("relayProtocol") if local_type == "relay" else None
    return SelectedPair(
        local_type=local_type, local_protocol=str(local.get("protocol", "")).lower(),
        local_address=_address(local),
        remote_type=str(remote.get("candidateType")),
        remote_protocol=str(remote.get("protocol", "")).lower(),
        remote_address=_address(remote),
        local_relay_protocol=str(relay).lower() if relay else None,
    )


# What the receiver's jitter buffer and audio renderer did to the received
# audio (inbound-rtp and media-playout), for the record: concealment,
# time-stretching and samples the renderer had to invent (a starved playout
# clock, e.g. on a busy machine), each explaining a PESQ below the codec's.
PLAYOUT_FIELDS = {
    "inbound-rtp": ("concealedSamples", "silentConcealedSamples", "concealmentEvents",
                    "insertedSamplesForDeceleration", "removedSamplesForAcceleration",
                    "totalSamplesReceived", "jitterBufferDelay", "jitterBufferEmittedCount"),
    "media-playout": ("synthesizedSamplesDuration", "synthesizedSamplesEvents",
                      "totalSamplesDuration"),
}


def playout(stats: Stats) -> dict[str, float | int]:
    """The receiver's playout counters (PLAYOUT_FIELDS) and the mean jitter
    buffer delay in ms, from one report."""
    out: dict[str, float | int] = {}
    for kind, names in PLAYOUT_FIELDS.items():
        for entry in of_type(stats, kind):
            if entry.get("kind", "audio") != "audio":
                continue
            for name in names:
                value = entry.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[name] = out.get(name, 0) + value
    emitted = out.get("jitterBufferEmittedCount")
    if emitted:
        out["jitter_buffer_delay_ms"] = round(1000.0 * out["jitterBufferDelay"] / emitted, 1)
    return out


def sdp_candidate_counts(sdp: str | None) -> dict[str, int]:
    """Candidates of a session description by type (host, srflx, prflx, relay)."""
    counts: Counter[str] = Counter()
    for line in (sdp or "").splitlines():
        if not line.startswith("a=candidate:"):
            continue
        fields = line.split()
        if "typ" in fields and fields.index("typ") + 1 < len(fields):
            counts[fields[fields.index("typ") + 1]] += 1
    return dict(counts)


def loss_pct(received: int | None, lost: int | None) -> float | None:
    """lost / (received + lost), as the aiortc peer counts it (a negative
    packetsLost, from duplicates, counts as none)."""
    if received is None or lost is None:
        return None
    total = received + max(lost, 0)
    return round(100.0 * max(lost, 0) / total, 3) if total else None


def timeline_row(monotonic: float, figures: RtpFigures) -> dict[str, float | int | None]:
    """One row of the per-second timeline, in the aiortc peer's keys."""
    return {"monotonic": round(monotonic, 3), "sent": figures.packets_sent,
            "received": figures.packets_received, "lost": figures.packets_lost,
            "jitter_ms": figures.jitter_ms, "bytes_received": figures.bytes_received}
