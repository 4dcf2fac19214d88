"""The decoy strategy and the DPI that sees through it, without root: the
`ignore` option of a classifier (schema and ruleset), the fakes' TTL worked
out from the topology's routes, the stage's fake datagrams, and the caller's
queueing rules. The kernel side is tests/integration/test_decoy.py."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from harness import paths
from harness.censor.compiler import bindings_for, compile_policy
from harness.spec.names import PLACEABLE, Profile, unplaceable
from harness.spec.policy import (
    Action,
    Classify,
    Ignore,
    Match,
    Policy,
    Provenance,
    Rule,
    Signature,
    load_policy,
)
from harness.spec.schema import SpecError
from harness.spec.topology import HostSpec, LinkEnd, LinkSpec, Route, Topology, load_topology
from harness.tunnels import INNER_STRATEGIES, TOOLS
from harness.tunnels.base import TunnelError
from harness.tunnels.decoy import (
    CANDIDATE_MARK,
    FAKE_COUNT,
    FAKE_MARK,
    FAKE_PAYLOAD,
    decoy_ttl,
    mark_chain,
    queue_rule,
    route_path,
    stage_argv,
    uncensored_networks,
)
from harness.tunnels.decoy_stage import (
    IPV4_HEADER,
    UdpFlow,
    _checksum,
    fake_datagram,
    parse_ipv4_udp,
)

TOPOLOGY = load_topology(paths.TOPOLOGIES / "ru-to-abroad.yaml")
BINDINGS = bindings_for(TOPOLOGY)


def _policy(*rules: Rule) -> Policy:
    return Policy(name="p", description="", provenance=Provenance(sources=[], reported=""),
                  rules=list(rules))


def _stun_rule(rule_id: str, match: Match, ttl_below: int | None = 10) -> Rule:
    ignore = Ignore(ttl_below=ttl_below) if ttl_below is not None else None
    return Rule(id=rule_id, explain="e", action=Action(kind="drop"), match=match,
                classify=Classify(signatures=[Signature(kind="stun")], ignore=ignore))


# ------------------------------------------------------------------ ignore

def test_the_desync_aware_policy_keeps_low_ttl_packets_out_of_conntrack() -> None:
    policy = load_policy(paths.POLICIES / "dpi-stun-drop-desync-aware.yaml",
                         TOPOLOGY.sets.keys())
    plan = compile_policy(policy, BINDINGS)
    chain = plan.nft_ruleset.split("chain ignore {")[1].split("}")[0]
    assert "type filter hook prerouting priority raw; policy accept;" in chain
    assert ('meta l4proto udp ip ttl < 10 counter notrack '
            'comment "stun-ignoring-decoys: ignore ttl < 10"') in chain
    assert plan.nft_ruleset.index("chain ignore") < plan.nft_ruleset.index("chain forward")
    (explanation,) = plan.explanations
    assert "not counting packets that arrive with TTL under 10" in explanation.text


def test_ignore_matches_the_rule_as_a_packet_of_the_flow_opener_carries_it() -> None:
    match = Match(protocol="udp", direction="upstream", dst_set="relays",
                  dst_ports=[], src_ports=[])
    plan = compile_policy(_policy(_stun_rule("r", match)), BINDINGS)
    assert ('iifname { "eth0" } meta l4proto udp ip daddr @set_relays ip ttl < 10 counter '
            'notrack comment "r: ignore ttl < 10"') in plan.nft_ruleset


def test_no_ignore_no_chain_and_signature_sets_are_declared_once() -> None:
    rules = [_stun_rule("a", Match(protocol="udp"), None),
             _stun_rule("b", Match(protocol="udp", dst_set="relays"), None)]
    ruleset = compile_policy(_policy(*rules), BINDINGS).nft_ruleset
    assert "chain ignore" not in ruleset and "notrack" not in ruleset
    assert ruleset.count("set sig_stun_type {") == 1
    assert ruleset.count("set sig_stun_length {") == 1
    assert ruleset.count("@sig_stun_type") == 2


@pytest.mark.parametrize("value", [0, 1, 256])
def test_ttl_below_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="ttl_below must be between 2 and 255"):
        Ignore(ttl_below=value)


def test_a_bad_ignore_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ndescription: d\nprovenance: {sources: [], reported: r}\n"
                    "rules:\n  - id: r\n    explain: e\n    action: {kind: drop}\n"
                    "    match: {protocol: udp}\n"
                    "    classify: {signatures: [{kind: stun}], ignore: {ttl_below: 1}}\n")
    with pytest.raises(SpecError) as caught:
        load_policy(path)
    assert caught.value.line == 9 and "ttl_below" in str(caught.value)


# ------------------------------------------------------------------ the fakes' TTL

def test_the_censor_is_two_routed_hops_from_the_caller_so_fakes_get_ttl_3() -> None:
    assert route_path(TOPOLOGY, "caller", TOPOLOGY.address_of("relay")) == [
        "cgnat", "censor", "inet", "relay"]
    assert decoy_ttl(TOPOLOGY) == 3


def test_no_fakes_to_what_the_caller_reaches_without_the_censor() -> None:
    networks = uncensored_networks(TOPOLOGY)
    assert IPv4Network("100.64.1.0/24") in networks  # the caller's own link
    assert not {IPv4Network("198.18.1.0/24"), IPv4Network("198.18.2.0/24"),
                IPv4Network("198.18.7.0/24")} & set(networks)


def _line(a: str, a_ip: str, b: str, b_ip: str) -> LinkSpec:
    return LinkSpec(LinkEnd(a, IPv4Interface(a_ip)), LinkEnd(b, IPv4Interface(b_ip)))


def test_a_server_right_behind_the_censor_leaves_no_ttl_for_fakes() -> None:
    """caller - censor - relay: a fake that reaches the censor's forward hook
    would reach the relay too."""
    gateway = [Route(to="default", via=IPv4Address("10.0.0.1"))]
    topology = Topology(
        name="t", description="",
        hosts={"caller": HostSpec(role="caller", routes=gateway),
               "censor": HostSpec(role="censor"),
               "relay": HostSpec(role="relay",
                                 routes=[Route(to="default", via=IPv4Address("10.0.1.1"))])},
        links=[_line("caller", "10.0.0.2/24", "censor", "10.0.0.1/24"),
               _line("censor", "10.0.1.1/24", "relay", "10.0.1.2/24")])
    assert route_path(topology, "caller", IPv4Address("10.0.1.2")) == ["censor", "relay"]
    with pytest.raises(TunnelError, match="relay is 2 hops"):
        decoy_ttl(topology)


# ------------------------------------------------------------------ the stage

def test_a_fake_is_a_valid_datagram_of_the_flow_with_the_short_ttl() -> None:
    flow = UdpFlow("100.64.1.2", 40000, "198.18.1.2", 3478)
    packet = fake_datagram(flow, FAKE_PAYLOAD, 3, 0xBEEF)
    assert parse_ipv4_udp(packet) == flow
    fields = IPV4_HEADER.unpack_from(packet)
    assert fields[5] == 3 and fields[2] == len(packet) == 20 + 8 + 64
    assert _checksum(packet[:20]) == 0  # the header checksums to zero
    udp = packet[20:]
    pseudo = (socket.inet_aton(flow.src) + socket.inet_aton(flow.dst)
              + struct.pack("!BBH", 0, 17, len(udp)))
    assert _checksum(pseudo + udp) == 0 and struct.unpack_from("!H", udp, 6)[0] != 0
    assert udp[8:] == bytes(64)


def test_only_unfragmented_ipv4_udp_is_a_flow() -> None:
    flow = UdpFlow("100.64.1.2", 1, "198.18.1.2", 2)
    packet = bytearray(fake_datagram(flow, b"x", 64, 1))
    assert parse_ipv4_udp(bytes(packet)) == flow
    assert parse_ipv4_udp(bytes(packet[:24])) is None
    tcp = bytearray(packet)
    tcp[9] = 6
    assert parse_ipv4_udp(bytes(tcp)) is None
    fragment = bytearray(packet)
    fragment[7] = 0x10  # fragment offset 16
    assert parse_ipv4_udp(bytes(fragment)) is None


def test_the_caller_marks_first_packets_and_iptables_queues_them() -> None:
    chain = mark_chain([IPv4Network("100.64.1.0/24")])
    assert "type filter hook postrouting priority -160; policy accept;" in chain
    assert ('oifname != "lo" meta l4proto udp ip daddr != { 100.64.1.0/24 } '
            f"meta mark & {FAKE_MARK:#010x} == 0 ct original packets 1 counter "
            f"meta mark set meta mark | {CANDIDATE_MARK:#010x}") in chain
    rule = queue_rule("cw1d0")
    assert rule[:7] == ["POSTROUTING", "-p", "udp", "-m", "mark", "--mark",
                        "0x20000000/0x20000000"]
    assert rule[-5:] == ["-j", "NFQUEUE", "--queue-num", "200", "--queue-bypass"]
    assert "tunnel cw1d0 decoy" in rule
    argv = stage_argv(3)
    assert argv[1].endswith("harness/tunnels/decoy_stage.py")
    assert argv[argv.index("--ttl") + 1] == "3"
    assert argv[argv.index("--count") + 1] == str(FAKE_COUNT) == "6"


# ------------------------------------------------------------------ the strategy

def test_decoy_is_a_strategy_every_abroad_profile_can_take() -> None:
    assert INNER_STRATEGIES["decoy"] == "turn-udp"
    assert dict(TOOLS["decoy"]) == {"iptables": "iptables", "nft": "nftables"}
    for profile in (Profile.WEBRTC, Profile.SIGNAL_LIKE, Profile.WHATSAPP_LIKE,
                    Profile.TELEGRAM_LIKE):
        assert "decoy" in PLACEABLE[profile.value]
        assert unplaceable(profile.value, "decoy") is None
