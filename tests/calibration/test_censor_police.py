"""Police rate and per-flow isolation, measured with real UDP flows through
the censor (issue 3, calibration suite).

What is counted: IP bytes (UDP payload + 28), which is what nftables' byte
`limit` counts at the forward hook. The offered load is 2.5x the rate, so the
policer drops; the window starts 2 s after the first arrival, when the bucket
(one second at the rate, the shallowest nft allows) has long drained, and the
rate is the bytes arriving inside it over its span."""

from __future__ import annotations

import pytest

from harness.measure.traffic.lab import FlowResult, udp_downstream, udp_upstream
from harness.measure.traffic.udp import IP_UDP_OVERHEAD, Signature
from harness.testbed import Lab
from tests.calibration.censor_support import (
    calibration_policy,
    with_rule,
)
from tests.calibration.conftest import Level, calibration_level

pytestmark = pytest.mark.root  # `lab` is callwall's plugin fixture
TOLERANCE = 0.03
OVERLOAD = 2.5
PASSED_PPS = 25  # packets per second the policer lets through: sets the packet size
DRAIN_S = 2.0
STUN_HEADER = bytes.fromhex("000100002112a442") + bytes(12)
RATES = {"short": (8, 64), "full": (8, 16, 32, 64, 150)}
WINDOW_S = {"short": 5.0, "full": 20.0}


def _packet_size(rate_kbit: float) -> int:
    """UDP payload bytes such that ~PASSED_PPS packets a second pass."""
    ip_bytes = max(40, min(1400, round(rate_kbit * 1000 / 8 / PASSED_PPS)))
    return ip_bytes - IP_UDP_OVERHEAD


def _windowed_rate(flow: FlowResult) -> float:
    start = flow.arrivals[0][0] + DRAIN_S
    end = flow.arrivals[-1][0]
    return flow.rate_bytes_per_s(start, end) * 8 / 1000


def _measure(lab: Lab, rate_kbit: float, direction: str, level: Level) -> FlowResult:
    size = _packet_size(rate_kbit)
    pps = OVERLOAD * rate_kbit * 1000 / 8 / (size + IP_UDP_OVERHEAD)
    seconds = DRAIN_S + WINDOW_S[level] + 0.5
    if direction == "upstream":
        flows = udp_upstream(lab.network, "caller", "relay", 41000, pps=pps, size=size,
                             seconds=seconds, timeline=True)
    else:
        flows = udp_downstream(lab.network, "relay", "caller", 41001, pps=pps, size=size,
                               seconds=seconds, timeline=True)
    return flows[0]


@pytest.mark.parametrize("direction", ["upstream", "downstream"])
@pytest.mark.parametrize("rate_kbit", RATES[calibration_level()])
def test_police_rate_within_3_percent(lab: Lab, level: Level, rate_kbit: float,
                                      direction: str) -> None:
    policy = with_rule(calibration_policy("calib-police", lab), action={"rate_kbit": rate_kbit})
    lab.apply_policy(policy)
    flow = _measure(lab, rate_kbit, direction, level)
    assert flow.packets < 0.6 * flow.sent, "the offered load must exceed the rate"
    measured = _windowed_rate(flow)
    print(f"police {rate_kbit} kbit/s {direction}: measured {measured:.3f} kbit/s "
          f"({flow.packets}/{flow.sent} packets)")
    assert abs(measured - rate_kbit) <= TOLERANCE * rate_kbit, (
        f"{direction} policed at {measured:.3f} kbit/s of IP bytes, configured {rate_kbit}")


def test_only_the_classified_flow_is_policed(lab: Lab, level: Level) -> None:
    """Two concurrent UDP flows, same hosts and ports but for the source port;
    flow 0 opens with a STUN message. Only flow 0 is held to the rate."""
    lab.apply_policy(calibration_policy("calib-isolation", lab))
    seconds = 4.0 if level == "short" else 10.0
    flows = udp_upstream(lab.network, "caller", "relay", 41002, flows=2, pps=100, size=172,
                         seconds=seconds, timeline=True,
                         signature=Signature(STUN_HEADER, at=1, flows=(0,)))
    classified, other = flows[0], flows[1]
    assert other.packets == other.sent, "the unclassified flow lost packets"
    offered_kbit = 100 * (172 + IP_UDP_OVERHEAD) * 8 / 1000
    rate = _windowed_rate(classified)
    print(f"isolation: classified flow {rate:.2f} kbit/s of {offered_kbit:.0f} offered; "
          f"other flow {other.packets}/{other.sent} packets")
    assert abs(rate - 32) <= 0.05 * 32
