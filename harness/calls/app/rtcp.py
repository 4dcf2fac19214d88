"""The end-to-end round trip an app-like client measures with the RTCP reports
it already sends (RFC 3550 §6.4.1).

Each side stamps its sender reports (SR) with the NTP time and remembers when
it sent each (by the SR's middle 32 bits, what the peer echoes as LSR). The
peer's next report block about this side carries that LSR and DLSR, the time
the peer held it (1/65536 s). So

    RTT = arrival of the block − sending of the SR − DLSR

is a round trip from this side to the peer and back along whatever carries the
media: through a reflector or TCP relay, both relay legs and the relay itself,
without either side needing the other's clock. Send times are kept on the
monotonic clock; the NTP field carries wall-clock time as RFC 3550 asks, but
only its identity matters here."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.wire import rtcp as wire

SR_MEMORY = 32  # sender reports remembered for matching their echo
DLSR_UNITS_PER_S = 65536


@dataclass
class RtcpRoundTrips:
    sent: dict[int, float] = field(default_factory=dict)  # LSR → monotonic send time
    peer_sr: tuple[int, float] | None = None  # (its LSR value, monotonic arrival)
    peer_ssrc: int | None = None

    def stamp(self, now: float, wall_clock: float) -> int:
        """The NTP timestamp of an SR sent now (`now` monotonic, `wall_clock`
        Unix time), remembered for the round trip."""
        ntp = wire.ntp_timestamp(wall_clock)
        self.sent[wire.ntp_middle(ntp)] = now
        while len(self.sent) > SR_MEMORY:
            del self.sent[next(iter(self.sent))]
        return ntp

    def echo(self, now: float) -> tuple[int, int]:
        """(LSR, DLSR) for a report block sent now: the peer's last SR and how
        long it has been held; (0, 0) before any SR arrived (RFC 3550 §6.4.1)."""
        if self.peer_sr is None:
            return 0, 0
        lsr, arrived = self.peer_sr
        return lsr, min(int((now - arrived) * DLSR_UNITS_PER_S), 0xFFFFFFFF)

    def on_sender_report(self, data: bytes, now: float) -> None:
        """The peer's SR arrived at `now`."""
        self.peer_ssrc = wire.rtcp_ssrc(data)
        self.peer_sr = (wire.ntp_middle(wire.sender_report_ntp(data)), now)

    def round_trip(self, block: wire.ReportBlock, own_ssrc: int, now: float) -> float | None:
        """The round trip in seconds that `block` (arrived at `now`) measures,
        or None: no SR of ours echoed (LSR 0), one we no longer know, or a
        block about another source."""
        if block.last_sr == 0 or block.source not in (0, own_ssrc):
            return None
        sent = self.sent.get(block.last_sr)
        if sent is None:
            return None
        rtt = now - sent - block.delay_since_last_sr / DLSR_UNITS_PER_S
        # DLSR is rounded down, so a true round trip is never negative here.
        return rtt if rtt >= 0.0 else None
