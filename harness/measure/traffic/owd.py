"""One-way delays: what a link really does to each packet.

`owd-send` sends one stamped flow and `owd-recv` keeps every packet as an
`Arrival` (see udp: the send time travels in the stamped trailer, the receive
time is the kernel's), so sender and receiver in two lab hosts of the same
machine share one clock (CLOCK_REALTIME; labs use no time namespaces).
`harness.measure.traffic.lab.one_way_delays` runs both ends in a lab;
`OwdTrace` turns what the receiver saw into delays, losses, bursts and rate.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any

from harness.measure.traffic.udp import IP_UDP_OVERHEAD, Arrival, Reception

__all__ = ["Arrival", "OwdTrace", "percentile", "report", "stdev"]


def report(reception: Reception) -> dict[str, Any]:
    """What `owd-recv` prints: {"received": [[seq, sent_ns, received_ns, bytes],
    ...] in arrival order, "socket_dropped": packets the receiving socket
    itself dropped}."""
    return {"received": [list(astuple(a)) for a in reception.arrivals],
            "socket_dropped": reception.socket_dropped}


@dataclass(frozen=True)
class OwdTrace:
    """What the receiver saw of `sent` packets numbered 1..sent (the
    trailer's sequence numbers)."""

    sent: int
    arrivals: list[Arrival]
    receiver_dropped: int = 0  # dropped by the receiving socket: not the link's doing

    @classmethod
    def from_json(cls, sent: int, raw: dict[str, Any]) -> OwdTrace:
        """From `owd-recv`'s report (see `report`)."""
        return cls(sent, [Arrival(*row) for row in raw["received"]],
                   int(raw.get("socket_dropped", 0)))

    def first_copies(self) -> list[Arrival]:
        seen: set[int] = set()
        result = []
        for arrival in self.arrivals:
            if arrival.seq not in seen:
                seen.add(arrival.seq)
                result.append(arrival)
        return result

    def delays_ms(self) -> list[float]:
        return [a.delay_ms for a in self.first_copies()]

    def lost(self) -> list[int]:
        """Sequence numbers that never arrived, in order."""
        got = {a.seq for a in self.arrivals}
        return [seq for seq in self._numbers() if seq not in got]

    def duplicates(self) -> int:
        return len(self.arrivals) - len(self.first_copies())

    def runs(self) -> tuple[list[int], list[int]]:
        """Lengths of the runs of consecutive losses (bursts) and deliveries (gaps),
        leaving out the first and last run, which the trace's ends cut short."""
        lost = set(self.lost())
        runs: list[tuple[bool, int]] = []
        for seq in self._numbers():
            state = seq in lost
            if runs and runs[-1][0] == state:
                runs[-1] = (state, runs[-1][1] + 1)
            else:
                runs.append((state, 1))
        inner = runs[1:-1]
        return [n for s, n in inner if s], [n for s, n in inner if not s]

    def receive_rate_bps(self) -> float:
        """IP-level bit rate at the receiver, between the first and last arrival
        (the first packet's bits are outside that interval)."""
        copies = sorted(self.arrivals, key=lambda a: a.received_ns)
        if len(copies) < 2:
            return 0.0
        bits = sum((a.size + IP_UDP_OVERHEAD) * 8 for a in copies[1:])
        return bits / ((copies[-1].received_ns - copies[0].received_ns) / 1e9)

    def _numbers(self) -> range:
        return range(1, self.sent + 1)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def stdev(values: Sequence[float]) -> float:
    return statistics.pstdev(values)
