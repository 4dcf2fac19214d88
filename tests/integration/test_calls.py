"""Real aiortc calls across the emulated censor."""

from __future__ import annotations

from pathlib import Path

from harness import paths
from harness.calls import CallSettings
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.testing.diagnosis import why_not_connected

SHORT = CallSettings(media_s=4.0, setup_timeout_s=12.0)


def test_baseline_direct_call_connects_peer_to_peer(lab: Lab, run_files: Path) -> None:
    policy = load_policy(paths.policy_path("baseline"))
    record = judged_call(lab, policy, "direct", run_files / "direct", SHORT)
    assert record.connected, why_not_connected(record, run_files / "direct")
    assert record.mos is not None and record.mos >= 4.0
    assert record.setup_s is not None and record.setup_s < 5.0
    assert record.packets_received is not None and record.packets_received > 300
    assert record.selected_pair is not None and record.selected_pair["local_type"] != "relay"
    assert (run_files / "direct" / "callee-received.wav").stat().st_size > 10_000


def test_tls_relay_survives_the_udp_throttle(lab: Lab, run_files: Path) -> None:
    policy = load_policy(paths.policy_path("udp-throttle"))
    record = judged_call(lab, policy, "turn-tls-443", run_files / "tls", SHORT)
    assert record.verdict == "pass", record
    pair = record.selected_pair
    assert pair is not None and pair["local_type"] == "relay"
    assert pair["local_relay_protocol"] == "tls"
    assert record.loss_pct == 0.0


def test_udp_call_under_throttle_loses_what_the_policer_drops(lab: Lab, run_files: Path) -> None:
    policy = load_policy(paths.policy_path("udp-throttle"))
    record = judged_call(lab, policy, "turn-udp", run_files / "udp", SHORT)
    assert record.connected, why_not_connected(record, run_files / "udp")
    assert record.loss_pct is not None and record.loss_pct > 30
    # What got through is close to the policed rate (16 kbit/s), not the stream's.
    assert record.bitrate_kbps is not None and record.bitrate_kbps < 30
    assert record.mos is not None and record.mos < 3.0


def test_symmetric_nat_defeats_direct_but_not_the_relay(run_files: Path) -> None:
    policy = load_policy(paths.policy_path("baseline"))
    with Lab.create(paths.topology_path("ru-domestic")) as domestic:
        domestic.up()
        direct = judged_call(domestic, policy, "direct", run_files / "d-direct", SHORT)
        relayed = judged_call(domestic, policy, "turn-udp", run_files / "d-relay", SHORT)
    assert not direct.connected
    assert relayed.connected and relayed.mos is not None and relayed.mos >= 4.0
