"""A pcap of one call, taken on the censor's interfaces (tcpdump inside the
censor's namespace), for Wireshark. Bounded: headers only (snaplen) and a
packet cap, so long runs stay small."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from harness.netns.network import LabNetwork as Lab

SNAPLEN = 256
OPEN_TIMEOUT_S = 3.0
WHAT = "censor capture"


@contextlib.contextmanager
def censor_capture(lab: Lab, pcap: Path, max_packets: int) -> Iterator[Path | None]:
    """Capture on every censor interface while the block runs; yields the pcap
    path, or None when tcpdump could not start (the log says why)."""
    censor = lab.host_with_role("censor")
    argv = ["tcpdump", "-i", "any", "-nn", "-p", "-U", "-s", str(SNAPLEN),
            "-c", str(max_packets), "-w", str(pcap)]
    proc = censor.start(argv, what=WHAT, log=pcap.with_suffix(".log"))
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while not pcap.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield pcap if pcap.exists() else None
    finally:
        lab.registry.stop(WHAT)
        proc.wait(timeout=5)
