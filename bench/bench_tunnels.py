"""Tunnel strategies: how long each takes to come up and go down, and the
round-trip time through it (wireguard-go, OpenVPN, shadowsocks, junk shim).

One ru-to-abroad lab under `baseline`; each strategy is opened REPEATS times.
Up time counts from starting the tools to the first ping answered through
the tunnel (shadowsocks: both ends listening). The machine is shared (2
cores, other work running), so times are noisy medians.
"""

from __future__ import annotations

import re
import shutil
import statistics
import time

from bench.run import BenchSkip, Figure
from harness import paths
from harness.netns.capabilities import missing_lab_capabilities
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.tunnels import TUNNEL_STRATEGIES, make_tunnel
from harness.tunnels.openvpn import ADDRESSING as OPENVPN_ADDRESSING
from harness.tunnels.wireguard import ADDRESSING as WG_ADDRESSING

REPEATS = 3
PINGS = 20
TOOLS = ("wireguard-go", "wg", "openvpn", "ss-server", "ss-tunnel")


def run() -> list[Figure]:
    missing = missing_lab_capabilities()
    missing += [f"{tool} (see APT_PACKAGES)" for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise BenchSkip("needs " + "; ".join(missing))
    figures: list[Figure] = []
    with Lab.create(paths.topology_path(paths.DEFAULT_TOPOLOGY)) as lab:
        lab.up()
        lab.apply_policy(load_policy(paths.policy_path("baseline")))
        for strategy in TUNNEL_STRATEGIES:
            figures += _measure(lab, strategy)
    return figures


def _measure(lab: Lab, strategy: str) -> list[Figure]:
    ups, downs, rtts = [], [], []
    for attempt in range(REPEATS):
        tunnel = make_tunnel(lab, strategy, lab.registry.files / f"bench-{strategy}-{attempt}")
        started = time.monotonic()
        try:
            tunnel.up()
            ups.append(time.monotonic() - started)
            if strategy != "shadowsocks" and attempt == 0:
                rtts.append(_rtt_ms(lab, strategy))
        finally:
            started = time.monotonic()
            tunnel.down()
            downs.append(time.monotonic() - started)
    up = statistics.median(ups)
    # No issue sets a bring-up target: a figure to watch, not a pass/fail.
    figures = [Figure(f"{strategy}: up (median of {REPEATS})", up, "s"),
               Figure(f"{strategy}: down (median of {REPEATS})", statistics.median(downs), "s")]
    if rtts:
        figures.append(Figure(f"{strategy}: ping RTT through the tunnel (avg of {PINGS})",
                              rtts[0], "ms"))
    return figures


def _rtt_ms(lab: Lab, strategy: str) -> float:
    addressing = OPENVPN_ADDRESSING if strategy.startswith("openvpn") else WG_ADDRESSING
    out = lab.host_with_role("caller").run(
        ["ping", "-n", "-q", "-c", str(PINGS), "-i", "0.05", str(addressing.server.ip)],
        timeout=30).stdout
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    if match is None:
        raise RuntimeError(f"no RTT in ping output: {out!r}")
    return float(match.group(1))
