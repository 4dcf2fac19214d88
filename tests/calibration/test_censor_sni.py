"""The userspace stage in the kernel path: a TLS ClientHello whose SNI
matches is classified by the NFQUEUE stage the compiled plan starts, and the
kernel drops the flow; a near miss passes (issue 3: tls-sni classifier; the
IMC'21 "t.co" substring anecdote, docs/sources.md S31)."""

from __future__ import annotations

import dataclasses

import pytest

from harness.censor.stage import MatchMode
from harness.measure.traffic.lab import tcp_download
from harness.testbed import Lab
from tests.calibration.censor_support import (
    calibration_policy,
    packets_counted,
)
from tests.unit.test_censor_stage import client_hello

pytestmark = pytest.mark.root  # `lab` is callwall's plugin fixture
PAYLOAD = 30_000


def _fetch(lab: Lab, server_name: str, port: int) -> int:
    report = tcp_download(lab.network, "signal", "caller", port, total_bytes=PAYLOAD, seconds=4,
                          stall_s=1.2, hello=client_hello(server_name))
    received: int = report["bytes_received"]
    return received


def _with_mode(lab: Lab, mode: MatchMode) -> None:
    policy = calibration_policy("calib-sni", lab)
    if mode != "suffix":
        rule = policy.rules[0]
        assert rule.classify is not None
        signature = dataclasses.replace(rule.classify.signatures[0], sni_match=mode)
        classify = dataclasses.replace(rule.classify, signatures=[signature])
        policy = dataclasses.replace(policy, rules=[dataclasses.replace(rule,
                                                                        classify=classify)])
    plan = lab.apply_policy(policy)
    assert plan.stages, "tls-sni must run in a userspace stage"


@pytest.mark.parametrize("mode, server_name, blocked", [
    ("suffix", "twitter.com", True),
    ("suffix", "api.twitter.com", True),
    ("suffix", "twitter.co", False),        # one byte short
    ("suffix", "nottwitter.com", False),    # a suffix, but not a subdomain
    ("substring", "nottwitter.com", True),  # substring mode over-matches, as IMC'21 saw
])
def test_sni_classified_by_stage_and_enforced_in_kernel(lab: Lab, mode: MatchMode,
                                                         server_name: str,
                                                         blocked: bool) -> None:
    _with_mode(lab, mode)
    before = packets_counted(lab, "calib-sni: classify")
    received = _fetch(lab, server_name, 42500)
    classified = packets_counted(lab, "calib-sni: classify") - before
    if blocked:
        assert received == 0 and classified >= 1, (
            f"{server_name} ({mode}): {received} B passed, stage verdicts {classified}")
    else:
        assert received == PAYLOAD and classified == 0, (
            f"{server_name} ({mode}): {received} B passed, stage verdicts {classified}")


def test_swapping_policies_stops_the_previous_stage(lab: Lab) -> None:
    _with_mode(lab, "suffix")
    first = [p.pid for p in lab.registry.running("censor stage")]
    _with_mode(lab, "substring")
    second = [p.pid for p in lab.registry.running("censor stage")]
    assert len(first) == len(second) == 1 and first != second
    lab.apply_policy(calibration_policy("calib-police", lab))
    assert lab.registry.running("censor stage") == []
    rules = lab.host_with_role("censor").run(["iptables", "-t", "mangle", "-S"]).stdout
    assert "CALLWALL" not in rules
    assert _fetch(lab, "twitter.com", 42501) == PAYLOAD
