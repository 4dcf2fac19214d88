"""Tunnel strategies with the real tools, in a lab under the `baseline` policy:
each carries a UDP probe flow (the censor sees only tunnel packets to the VPN
exit), real calls go through them, and nothing of them is left afterwards."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.netns.host import LabHost
from harness.netns.registry import process_start_ticks
from harness.session import judged_call
from harness.spec.policy import Policy, load_policy
from harness.testbed import Lab
from harness.tunnels import TUNNEL_STRATEGIES, Tunnel, TunnelError, open_tunnel
from harness.tunnels.openvpn import OpenVpnTunnel
from harness.tunnels.plumbing import NFT_TABLE_PREFIX, link_names
from harness.tunnels.shadowsocks import ShadowsocksTunnel
from harness.tunnels.wireguard import CONTROL_DIR, SHIM_PORT, WireGuardTunnel

SHORT = CallSettings(media_s=4.0, setup_timeout_s=12.0)
VPN_IP = "198.18.7.2"
SUBSCRIBERS_OUTSIDE = "198.18.0.2"  # the caller's address after the CGNAT
PROBE_PORT = 40000
TRAFFIC = [sys.executable, "-m", "harness.measure.traffic"]
PROBE_RATE = ["--pps", "40", "--size", "200"]  # 64 kbit/s of UDP payload
# decoy carries nothing through a tunnel: tests/integration/test_decoy.py
IP_TUNNELS = [s for s in TUNNEL_STRATEGIES if s not in ("shadowsocks", "decoy")]
TALLY_TABLE = "cwtest_tally"


@pytest.fixture(scope="module", autouse=True)
def baseline(lab: Lab) -> None:
    lab.apply_policy(load_policy(paths.policy_path("baseline")))


@dataclass
class Footprint:
    """What a lab looks like where a tunnel could leave something behind."""

    links: dict[str, list[str]]
    tables: dict[str, list[str]]
    routes: dict[str, str]
    sockets: list[str]
    tunnel_processes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, lab: Lab) -> Footprint:
        hosts = [lab.host_with_role("caller"), lab.host_with_role("vpn")]
        return cls(
            links={h.name: sorted(link_names(h)) for h in hosts},
            tables={h.name: _nft_tables(h) for h in hosts},
            routes={h.name: h.run(["ip", "route", "show"]).stdout for h in hosts},
            sockets=sorted(p.name for p in CONTROL_DIR.glob(f"{lab.run_id}*")),
            tunnel_processes=[p.what for p in lab.registry.state.processes
                              if p.what.startswith("tunnel ")],
        )


def _nft_tables(host: LabHost) -> list[str]:
    out = host.run(["nft", "list", "tables"]).stdout
    return sorted(line for line in out.splitlines() if NFT_TABLE_PREFIX in line)


@contextmanager
def nft_tally(host: LabHost, counters: dict[str, str]) -> Iterator[dict[str, int]]:
    """Count packets matching each nft expression in `host`'s forward and
    input paths, in a table of this test's own; the counts fill in at exit."""
    objects = "\n".join(f"  counter {name} {{}}" for name in counters)
    rules = "\n".join(f"    {expr} counter name {name}" for name, expr in counters.items())
    chains = "\n".join(
        f"  chain {hook} {{\n    type filter hook {hook} priority -10; policy accept;\n"
        f"{rules}\n  }}" for hook in ("forward", "input"))
    host.run(["nft", "-f", "-"], input_text=f"table ip {TALLY_TABLE} {{\n{objects}\n{chains}\n}}\n")
    counts: dict[str, int] = {}
    try:
        yield counts
        listing = json.loads(host.run(["nft", "-j", "list", "counters", "table", "ip",
                                       TALLY_TABLE]).stdout)
        for item in listing["nftables"]:
            if "counter" in item:
                counts[item["counter"]["name"]] = item["counter"]["packets"]
    finally:
        host.run(["nft", "delete", "table", "ip", TALLY_TABLE], check=False)


def probe(lab: Lab, sink_host: LabHost, target: str, listen: str, seconds: float = 2.0) -> int:
    """A 64 kbit/s UDP probe flow from the caller; how many packets arrived."""
    sink = sink_host.start([*TRAFFIC, "udp-sink", "--listen", listen,
                            "--seconds", str(seconds + 1.5)],
                           what="test probe sink", log=lab.registry.files / "probe-sink.log",
                           stdout=-1)
    time.sleep(0.3)
    lab.host_with_role("caller").run(
        [*TRAFFIC, "udp-send", "--to", target, *PROBE_RATE, "--seconds", str(seconds)],
        timeout=seconds + 10)
    out, _ = sink.communicate(timeout=seconds + 10)
    return sum(int(flow["packets"]) for flow in json.loads(out)["flows"].values())


def assert_nothing_left(lab: Lab, before: Footprint, pids: list[int]) -> None:
    assert Footprint.of(lab) == before
    assert [pid for pid in pids if process_start_ticks(pid) is not None] == []


def tool_pids(tunnel: Tunnel) -> list[int]:
    assert isinstance(tunnel, WireGuardTunnel | OpenVpnTunnel | ShadowsocksTunnel)
    return [started.proc.pid for started in tunnel.plumbing.started]


@pytest.mark.parametrize("strategy", IP_TUNNELS)
def test_ip_tunnel_carries_the_probe_and_leaves_nothing(lab: Lab, strategy: str) -> None:
    relay, signal = lab.host_with_role("relay"), lab.host_with_role("signalling")
    relay_ip = str(lab.topology.address_of(relay.name))
    signal_ip = str(lab.topology.address_of(signal.name))
    before = Footprint.of(lab)
    counters = {
        "to_vpn": f"ip saddr {SUBSCRIBERS_OUTSIDE} ip daddr {VPN_IP}",
        "probe_to_relay": f"ip daddr {relay_ip} udp dport {PROBE_PORT}",
        "probe_to_signal": f"ip daddr {signal_ip} udp dport {PROBE_PORT}",
    }
    with nft_tally(lab.host_with_role("censor"), counters) as seen:
        with open_tunnel(lab, strategy, lab.registry.files / f"t-{strategy}") as tunnel:
            assert tunnel is not None and tunnel.established
            pids = tool_pids(tunnel)
            arrived = probe(lab, relay, f"{relay_ip}:{PROBE_PORT}", f"{relay_ip}:{PROBE_PORT}")
            aside = probe(lab, signal, f"{signal_ip}:{PROBE_PORT}", f"{signal_ip}:{PROBE_PORT}")
    assert arrived > 50, "the probe did not get through the tunnel"
    assert aside > 50
    assert seen["probe_to_relay"] == 0, "the censor saw the probe itself, not the tunnel"
    assert seen["to_vpn"] >= arrived
    if strategy == "split-route":
        # Only the relay sets go through the tunnel: signalling's prefix does not.
        assert seen["probe_to_signal"] >= aside
    else:
        assert seen["probe_to_signal"] == 0
    assert_nothing_left(lab, before, pids)


def test_shadowsocks_udp_relay_carries_what_goes_to_the_turn_port(lab: Lab) -> None:
    relay = lab.host_with_role("relay")
    relay_ip = str(lab.topology.address_of(relay.name))
    before = Footprint.of(lab)
    censor_counters = {"to_vpn_ss": f"ip daddr {VPN_IP} udp dport 8388",
                       "to_relay": f"ip daddr {relay_ip}"}
    relay_counters = {"from_vpn": f"ip saddr {VPN_IP} udp dport 3478"}
    with nft_tally(lab.host_with_role("censor"), censor_counters) as censor_seen, \
            nft_tally(relay, relay_counters) as relay_seen:
        with open_tunnel(lab, "shadowsocks", lab.registry.files / "t-ss") as tunnel:
            assert tunnel is not None and tunnel.endpoints.turn is not None
            pids = tool_pids(tunnel)
            local = tunnel.endpoints.turn
            lab.host_with_role("caller").run(
                [*TRAFFIC, "udp-send", "--to", f"{local.host}:{local.port}", *PROBE_RATE,
                 "--seconds", "1"])
            time.sleep(0.5)
    sent = 40  # 64 kbit/s of 200-byte packets for 1 s
    assert censor_seen["to_relay"] == 0
    assert censor_seen["to_vpn_ss"] >= sent - 2
    assert relay_seen["from_vpn"] >= sent - 2
    assert_nothing_left(lab, before, pids)


def test_wireguard_call_connects_through_the_vpn_exit(lab: Lab, run_files: Path) -> None:
    policy = load_policy(paths.policy_path("baseline"))
    before = Footprint.of(lab)
    counters = {"udp_elsewhere": f"ip saddr {SUBSCRIBERS_OUTSIDE} ip daddr != {VPN_IP}",
                "to_vpn": f"ip saddr {SUBSCRIBERS_OUTSIDE} ip daddr {VPN_IP} udp dport 51820"}
    with nft_tally(lab.host_with_role("censor"), counters) as seen:
        record = judged_call(lab, policy, "wireguard", run_files / "wg", SHORT)
    assert record.connected, record.error
    assert record.strategy == "wireguard"
    assert record.mos is not None and record.mos >= 4.0
    pair = record.selected_pair
    assert pair is not None and pair["local_address"].startswith("10.77.0.2")
    assert seen["udp_elsewhere"] == 0 and seen["to_vpn"] > 300
    assert (run_files / "wg" / "tunnel-caller-wireguard-go-client.log").exists()
    assert Footprint.of(lab) == before


def test_shadowsocks_call_uses_turn_udp_through_the_udp_relay(lab: Lab, run_files: Path) -> None:
    policy = load_policy(paths.policy_path("baseline"))
    relay_ip = str(lab.topology.address_of(lab.host_with_role("relay").name))
    with nft_tally(lab.host_with_role("censor"), {
            "caller_to_relay": f"ip saddr {SUBSCRIBERS_OUTSIDE} ip daddr {relay_ip}"}) as seen:
        record = judged_call(lab, policy, "shadowsocks", run_files / "ss", SHORT)
    assert record.connected, record.error
    assert record.mos is not None and record.mos >= 4.0
    pair = record.selected_pair
    assert pair is not None and pair["local_type"] == "relay"
    assert pair["local_relay_protocol"] == "udp"
    assert seen["caller_to_relay"] == 0


@pytest.mark.parametrize("strategy", ["openvpn-udp", "openvpn-tcp", "junk-obfuscation",
                                      "split-route"])
def test_every_other_tunnel_carries_a_good_call(lab: Lab, run_files: Path,
                                                strategy: str) -> None:
    policy = load_policy(paths.policy_path("baseline"))
    record = judged_call(lab, policy, strategy, run_files / strategy, SHORT)
    assert record.connected, record.error
    assert record.mos is not None and record.mos >= 4.0
    pair = record.selected_pair
    assert pair is not None
    if strategy == "split-route":  # the relay's prefix is tunnelled: TURN-UDP via the tunnel
        assert pair["local_type"] == "relay" and pair["local_relay_protocol"] == "udp"
    else:  # a direct call whose host candidate is the tunnel address
        assert pair["local_address"].startswith("10.7")


def test_a_failure_inside_the_tunnel_still_removes_it(lab: Lab) -> None:
    before = Footprint.of(lab)
    with pytest.raises(RuntimeError, match="the call broke"):
        with open_tunnel(lab, "openvpn-udp", lab.registry.files / "t-fail") as tunnel:
            assert tunnel is not None
            pids = tool_pids(tunnel)
            assert len(pids) == 2
            raise RuntimeError("the call broke")
    assert_nothing_left(lab, before, pids)


def test_a_tool_failing_half_way_up_leaves_nothing(lab: Lab) -> None:
    """The junk shim's port on the VPN host is taken: wireguard-go's server is
    already running when the shim fails; up() raises with the shim's log, and
    the server, its interface and its rules go."""
    vpn = lab.host_with_role("vpn")
    before = Footprint.of(lab)
    blocker = vpn.start([sys.executable, "-c", "import socket,time; s=socket.socket(socket.AF_INET,"
                         f"socket.SOCK_DGRAM); s.bind(('{VPN_IP}', {SHIM_PORT})); "
                         "print('bound', flush=True); time.sleep(30)"],
                        what="test port blocker", log=lab.registry.files / "blocker.log")
    try:
        _wait_for_udp_port(vpn, SHIM_PORT)
        with pytest.raises(TunnelError, match="(?s)junkshim server.*Address already in use"):
            with open_tunnel(lab, "junk-obfuscation", lab.registry.files / "t-half"):
                pytest.fail("up() should have failed")
    finally:
        lab.registry.stop("test port blocker")
        blocker.wait(timeout=5)
    assert Footprint.of(lab) == before


def _wait_for_udp_port(host: LabHost, port: int) -> None:
    for _ in range(100):
        if re.search(rf":{port}\b", host.run(["ss", "-uln"]).stdout):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on UDP {port} in {host.name}")




@pytest.fixture
def vpn_block(lab: Lab) -> Iterator[Policy]:
    """The censor runs vpn-block-2023 for one test, then baseline again."""
    policy = load_policy(paths.policy_path("vpn-block-2023"))
    lab.apply_policy(policy)
    try:
        yield policy
    finally:
        lab.apply_policy(load_policy(paths.policy_path("baseline")))


@pytest.mark.parametrize("strategy, rule, connects", [
    ("wireguard", "wireguard", False),
    ("openvpn-udp", "openvpn", False),
    ("junk-obfuscation", "wireguard", True),
    ("openvpn-tcp", "openvpn", True),
])
def test_vpn_block_2023_stops_plain_tunnels_not_obfuscated_ones(
        lab: Lab, run_files: Path, vpn_block: Policy, strategy: str, rule: str,
        connects: bool) -> None:
    before = Footprint.of(lab)
    record = judged_call(lab, vpn_block, strategy, run_files / strategy, SHORT)
    hits = {c["rule"]: c["packets"] for c in record.censor_counters}
    rule_hits = sum(n for name, n in hits.items() if name.split(":")[0].strip() == rule)
    print(strategy, record.connected, record.mos, hits)
    if connects:
        assert record.connected, (record.error, hits)
        assert record.mos is not None and record.mos >= 4.0
        assert rule_hits == 0, hits
    else:
        assert not record.connected
        assert rule_hits > 0, hits
    assert Footprint.of(lab) == before
