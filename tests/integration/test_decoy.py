"""The decoy strategy with real packets and real calls: its fakes reach the
censor's forward hook and expire before the relay; under dpi-stun-drop a
TURN-UDP call fails without it and connects with it; under the desync-aware
variant it fails again, the deciding rule counting the Allocate and the
ignored fakes; and nothing of it is left in the caller afterwards."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.measure.record import CallRecord
from harness.measure.traffic.lab import udp_packets
from harness.netns.host import LabHost
from harness.netns.registry import process_start_ticks
from harness.session import judged_call
from harness.spec.policy import Policy, load_policy
from harness.testbed import Lab
from harness.tunnels import TunnelError, open_tunnel
from harness.tunnels.decoy import FAKE_COUNT, DecoyTunnel
from harness.tunnels.plumbing import NFT_TABLE_PREFIX

SHORT = CallSettings(media_s=4.0, setup_timeout_s=12.0)
SUBSCRIBERS_OUTSIDE = "198.18.0.2"  # the caller's address after the CGNAT
PROBE_PORT = 40123
TALLY_TABLE = "cwtest_decoy"


def _policy(lab: Lab, name: str) -> Policy:
    return load_policy(paths.policy_path(name), lab.topology.sets.keys())


def _counted(record: CallRecord, rule: str) -> int:
    return sum(int(c["packets"]) for c in record.censor_counters if c["rule"] == rule)


@contextmanager
def tally(host: LabHost, hook: str, counters: dict[str, str]) -> Iterator[dict[str, int]]:
    """Count the packets matching each nft expression at `hook` in `host`, in
    a table of this test's own (removed at exit, when the counts fill in)."""
    objects = "\n".join(f"  counter {name} {{}}" for name in counters)
    rules = "\n".join(f"    {expr} counter name {name}" for name, expr in counters.items())
    host.run(["nft", "-f", "-"], input_text=(
        f"table ip {TALLY_TABLE} {{\n{objects}\n  chain c {{\n"
        f"    type filter hook {hook} priority -400; policy accept;\n{rules}\n  }}\n}}\n"))
    seen: dict[str, int] = {}
    try:
        yield seen
        for name in counters:
            listing = host.run(["nft", "list", "counter", "ip", TALLY_TABLE, name]).stdout
            seen[name] = int(listing.split("packets")[1].split()[0])
    finally:
        host.run(["nft", "delete", "table", "ip", TALLY_TABLE], check=False)


def _caller_footprint(lab: Lab) -> tuple[str, str]:
    caller = lab.host_with_role("caller")
    tables = caller.run(["nft", "list", "tables"]).stdout
    mangle = caller.run(["iptables", "-w", "-t", "mangle", "-S", "POSTROUTING"]).stdout
    return ("\n".join(t for t in tables.splitlines() if NFT_TABLE_PREFIX in t), mangle)


@pytest.fixture(scope="module", autouse=True)
def baseline(lab: Lab) -> None:
    lab.apply_policy(_policy(lab, "baseline"))


def test_fakes_reach_the_censor_and_expire_before_the_relay(lab: Lab) -> None:
    relay = lab.host_with_role("relay")
    relay_ip = str(lab.topology.address_of(relay.name))
    flow = f"ip saddr {SUBSCRIBERS_OUTSIDE} ip daddr {relay_ip} udp dport {PROBE_PORT}"
    before = _caller_footprint(lab)
    # The censor's forward hook sees a packet after its own TTL decrement:
    # sent with TTL 3 by the caller, a fake has 1 left there.
    censor_counters = {"fakes": f"{flow} ip ttl 1 udp length 72",
                       "real": f"{flow} ip ttl > 1"}
    relay_counters = {"fakes": f"udp dport {PROBE_PORT} udp length 72",
                      "real": f"udp dport {PROBE_PORT} udp length != 72"}
    with tally(lab.host_with_role("censor"), "forward", censor_counters) as at_censor, \
            tally(relay, "input", relay_counters) as at_relay:
        with open_tunnel(lab, "decoy", lab.registry.files / "t-decoy") as tunnel:
            assert isinstance(tunnel, DecoyTunnel) and tunnel.established
            assert tunnel.ttl == 3
            pids = [started.proc.pid for started in tunnel.plumbing.started]
            # Three flows of two packets each: each flow gets its fakes once.
            for source_port in (41001, 41002, 41003):
                udp_packets(lab.network, "caller", relay.name, PROBE_PORT,
                            [b"probe one", b"probe two"], source_port=source_port)
            stage_log = tunnel.plumbing.started[0].log.read_text()
    assert at_censor == {"fakes": 3 * FAKE_COUNT, "real": 6}, at_censor
    assert at_relay == {"fakes": 0, "real": 6}, at_relay
    assert stage_log.count(f"decoy: {FAKE_COUNT} fakes (ttl 3) before udp") == 3
    assert _caller_footprint(lab) == before
    assert [pid for pid in pids if process_start_ticks(pid) is not None] == []


def test_a_stage_that_died_is_a_tunnel_error_not_a_silent_pass(lab: Lab) -> None:
    """Packets bypass a queue with no stage: a call would go undecoyed, so
    the tunnel's end says the stage died (and still removes the rest)."""
    before = _caller_footprint(lab)
    with pytest.raises(TunnelError, match="decoy stage in caller exited"):
        with open_tunnel(lab, "decoy", lab.registry.files / "t-died") as tunnel:
            assert isinstance(tunnel, DecoyTunnel)
            stage = tunnel.plumbing.started[0].proc
            os.kill(stage.pid, signal.SIGKILL)
            stage.wait(timeout=5)
    assert _caller_footprint(lab) == before


def test_decoy_gets_a_turn_udp_call_past_dpi_stun_drop(lab: Lab, run_files: Path) -> None:
    policy = _policy(lab, "dpi-stun-drop")
    blocked = judged_call(lab, policy, "turn-udp", run_files / "plain", SHORT)
    assert not blocked.connected
    assert _counted(blocked, "stun-at-flow-start: classify stun") > 0
    assert blocked.verdict == "pass", blocked.judgement
    through = judged_call(lab, policy, "decoy", run_files / "decoy", SHORT)
    assert through.connected, (through.error, through.failure_kind)
    assert through.strategy == "decoy" and through.verdict == "pass", through.judgement
    assert through.mos is not None and through.mos >= 4.0
    pair = through.selected_pair
    assert pair is not None and pair["local_type"] == "relay"
    assert pair["local_relay_protocol"] == "udp"
    # The classifier saw only fakes among the relay flow's first packets.
    assert _counted(through, "stun-at-flow-start: classify stun") == 0
    assert (run_files / "decoy" / "tunnel-caller-decoy-stage.log").exists()


def test_a_dpi_that_ignores_low_ttl_sees_through_the_decoy(lab: Lab, run_files: Path) -> None:
    policy = _policy(lab, "dpi-stun-drop-desync-aware")
    record = judged_call(lab, policy, "decoy", run_files / "aware", SHORT)
    assert not record.connected
    assert record.verdict == "pass", record.judgement
    assert _counted(record, "stun-ignoring-decoys: ignore ttl < 10") >= FAKE_COUNT
    assert _counted(record, "stun-ignoring-decoys: classify stun") > 0
    assert _counted(record, "stun-ignoring-decoys: enforce") > 0


def test_decoy_connects_under_baseline(lab: Lab, run_files: Path) -> None:
    record = judged_call(lab, _policy(lab, "baseline"), "decoy", run_files / "base", SHORT)
    assert record.connected, (record.error, record.failure_kind)
    assert record.verdict == "pass", record.judgement


def test_whatsapp_like_with_decoy_meets_the_policer_of_rkn_2025(lab: Lab,
                                                                run_files: Path) -> None:
    """The fakes get the allocations past the dialect rule; what the 2025
    composite then does to the relay media is police it: the call sets up
    and sounds broken, the cell's expectation."""
    policy = _policy(lab, "rkn-2025-calls")
    record = judged_call(lab, policy, "decoy", run_files / "wa", SHORT, profile="whatsapp-like")
    assert record.verdict == "pass", (record.outcome, record.judgement)
    assert record.outcome == "degraded" and record.path == "udp-relay"
    assert _counted(record, "whatsapp-dialect: classify whatsapp-stun") == 0
    assert _counted(record, "police-whatsapp-media") > 0
