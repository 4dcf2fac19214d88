"""iperf3 as a measuring instrument: argv builders and JSON readers. iperf3
fits where a bulk rate is wanted (forwarding capacity); per-flow timelines
and signatures need the harness's own generators (udp.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

IPERF3 = "iperf3"


def server_argv(bind: str, port: int) -> list[str]:
    """A one-shot server: it exits after one test, so nothing lingers."""
    return [IPERF3, "-s", "-1", "-B", bind, "-p", str(port), "--json"]


def client_argv(server: str, port: int, seconds: float, *, udp: bool,
                bitrate: str = "0", length: int | None = None, reverse: bool = False,
                parallel: int = 1) -> list[str]:
    argv = [IPERF3, "-c", server, "-p", str(port), "-t", f"{seconds:g}", "--json",
            "-b", bitrate, "-P", str(parallel)]
    if udp:
        argv.append("-u")
    if length is not None:
        argv += ["-l", str(length)]
    if reverse:
        argv.append("-R")
    return argv


@dataclass(frozen=True)
class IperfResult:
    sent_bytes: int
    received_bytes: int
    seconds: float
    lost_packets: int
    packets: int

    @property
    def received_bits_per_s(self) -> float:
        return self.received_bytes * 8 / self.seconds


def parse_client_json(text: str) -> IperfResult:
    """The end summary of an iperf3 client run (UDP or TCP)."""
    data: dict[str, Any] = json.loads(text)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    end = data["end"]
    if "sum" in end:  # UDP: the client's summary carries the receiver's loss count
        total = end["sum"]
        packets, lost = int(total.get("packets", 0)), int(total.get("lost_packets", 0))
        sent = int(total["bytes"])
        received = round(sent * (packets - lost) / packets) if packets else 0
        return IperfResult(sent, received, float(total["seconds"]), lost, packets)
    sent, received = end["sum_sent"], end["sum_received"]
    return IperfResult(int(sent["bytes"]), int(received["bytes"]), float(received["seconds"]),
                       0, 0)
