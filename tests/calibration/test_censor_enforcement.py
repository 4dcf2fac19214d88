"""Per-flow probability, tcp_freeze and allowlist mode, measured with real
traffic through the censor (issue 3, calibration suite)."""

from __future__ import annotations

import subprocess

import pytest

from harness import paths
from harness.measure.traffic.lab import tcp_download, udp_downstream, udp_upstream
from harness.spec.policy import load_policy
from harness.testbed import Lab
from tests.calibration.censor_support import (
    binomial_interval,
    calibration_policy,
    with_rule,
)
from tests.calibration.conftest import Level, calibration_level

pytestmark = pytest.mark.root  # `lab` is callwall's plugin fixture


def test_per_flow_probability_inside_99_percent_binomial_interval(lab: Lab,
                                                                   level: Level) -> None:
    """Each of n concurrent flows sends 8 packets; a flow is enforced if none
    arrive. The rule rolls per flow, so no flow may be cut part-way."""
    probability = 0.3
    trials = 200 if level == "short" else 1000
    lab.apply_policy(calibration_policy("calib-probability", lab))
    flows = udp_upstream(lab.network, "caller", "relay", 42200, flows=trials, pps=10, size=60,
                         seconds=0.8)
    partial = [f for f, r in flows.items() if 0 < r.packets < r.sent]
    assert not partial, f"flows {partial[:5]} were cut part-way: the roll is not per flow"
    enforced = sum(1 for r in flows.values() if r.packets == 0)
    low, high = binomial_interval(trials, probability)
    print(f"probability {probability}: {enforced}/{trials} flows enforced "
          f"(99% interval {low}-{high})")
    assert low <= enforced <= high


@pytest.mark.parametrize("kbytes", (16,) if calibration_level() == "short" else (8, 16, 20, 64))
def test_tcp_freeze_stalls_within_10_percent_of_k(lab: Lab, kbytes: int) -> None:
    """A 400 kB download stalls; the bytes the client got before the stall
    (TCP payload) lie within ±10% of K (the censor counts IP bytes, headers
    included, so payload runs a few percent under K)."""
    lab.apply_policy(with_rule(calibration_policy("calib-tcp-freeze", lab),
                               action={"after_kbytes": kbytes}))
    report = tcp_download(lab.network, "signal", "caller", 42300, total_bytes=400_000, seconds=6,
                          stall_s=1.5)
    target = kbytes * 1000
    got = report["bytes_received"]
    print(f"tcp_freeze K={kbytes} kB: {got} bytes before the stall")
    assert report["stalled"], f"no stall: {report}"
    assert abs(got - target) <= 0.10 * target, f"stalled after {got} B, K = {target} B"


def test_allowlist_passes_only_what_is_listed(lab: Lab) -> None:
    lab.apply_policy(calibration_policy("calib-allowlist", lab))
    listed = udp_upstream(lab.network, "caller", "relay", 42400, pps=20, size=100, seconds=0.5)[0]
    assert listed.packets == listed.sent > 0, "UDP to the relays is listed"
    back = udp_downstream(lab.network, "relay", "caller", 42401, pps=20, size=100, seconds=0.5)[0]
    assert back.packets == back.sent > 0, "replies of a listed flow pass"
    for target in ("stun", "wa-relay", "vpn"):
        other = udp_upstream(lab.network, "caller", target, 42402, pps=20, size=100, seconds=0.5)[0]
        assert other.sent > 0 and other.packets == 0, f"UDP to {target} is not listed"
    signal = tcp_download(lab.network, "signal", "caller", 42403, total_bytes=20_000, seconds=3,
                          stall_s=1.0)
    assert signal["bytes_received"] == 20_000, "TCP to the signalling server is listed"
    with pytest.raises((subprocess.CalledProcessError, RuntimeError, OSError)):
        tcp_download(lab.network, "relay", "caller", 42404, total_bytes=20_000, seconds=3,
                     stall_s=1.0)


def test_shipped_tcp_freeze_policy_stalls_within_10_percent_of_k(lab: Lab) -> None:
    """policies/tcp-freeze-2025 as shipped: a download from a host in its
    target set stalls near its K."""
    policy = load_policy(paths.policy_path("tcp-freeze-2025"), lab.topology.sets.keys())
    rule = policy.rules[0]
    assert rule.action.after_kbytes is not None and rule.match.dst_set is not None
    server = next(h for h in ("relay", "vpn")
                  if any(lab.topology.address_of(h) in net
                         for net in lab.topology.sets[rule.match.dst_set]))
    lab.apply_policy(policy)
    report = tcp_download(lab.network, server, "caller", 42310, total_bytes=400_000, seconds=6,
                          stall_s=1.5)
    target = rule.action.after_kbytes * 1000
    got = report["bytes_received"]
    print(f"tcp-freeze-2025 (K={target:g} B) from {server}: {got} bytes before the stall")
    assert report["stalled"], f"no stall: {report}"
    assert abs(got - target) <= 0.10 * target, f"stalled after {got} B, K = {target:g} B"
