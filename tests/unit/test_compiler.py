"""Policy compilation is pure: spec in, nftables ruleset and tc plan out."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Network

import pytest

from harness import paths
from harness.censor.compiler import (
    CompileError,
    bindings_for,
    compile_policy,
    police_bucket_bytes,
    police_rate_bytes,
)
from harness.censor.plan import CensorBindings
from harness.spec.policy import Action, Policy, load_policy
from harness.spec.topology import load_topology

TOPOLOGY = load_topology(paths.TOPOLOGIES / "ru-to-abroad.yaml")
BINDINGS = bindings_for(TOPOLOGY)


def _policy(name: str) -> Policy:
    return load_policy(paths.POLICIES / f"{name}.yaml", TOPOLOGY.sets.keys())


def _rules(ruleset: str) -> list[str]:
    return [line.strip() for line in ruleset.splitlines() if "comment \"" in line
            and "callwall policy" not in line]


def test_bindings_name_the_subscriber_side() -> None:
    assert BINDINGS.subscriber_interfaces == ("eth0",)
    domestic = bindings_for(load_topology(paths.TOPOLOGIES / "ru-domestic.yaml"))
    assert domestic.subscriber_interfaces == ("eth0", "eth1")


def test_every_plan_replaces_the_table_in_one_transaction() -> None:
    for path in paths.all_policies():
        plan = compile_policy(load_policy(path), BINDINGS)
        head = plan.nft_ruleset.splitlines()[:3]
        assert head == ["table inet callwall {}", "delete table inet callwall",
                        "table inet callwall {"]
        assert plan.tc_ops == ()


def test_baseline_has_no_rules() -> None:
    plan = compile_policy(_policy("baseline"), BINDINGS)
    assert _rules(plan.nft_ruleset) == []
    assert "policy accept" in plan.nft_ruleset


def test_relay_block_drops_upstream_udp_to_the_relay_set() -> None:
    plan = compile_policy(_policy("turn-relay-block"), BINDINGS)
    assert "elements = { 198.18.1.0/24 }" in plan.nft_ruleset
    assert _rules(plan.nft_ruleset) == [
        'iifname { "eth0" } meta l4proto udp ct original ip daddr @set_relays counter drop '
        'comment "block-udp-to-relays"'
    ]


def test_dpi_classifies_first_packets_then_drops_the_whole_flow() -> None:
    plan = compile_policy(_policy("dpi-stun-drop"), BINDINGS)
    classify, enforce = _rules(plan.nft_ruleset)
    assert "ct packets <= 3" in classify
    assert "@th,64,16 . @th,96,32 @sig_stun_type" in classify  # the `stun` signature
    assert "set sig_stun_type {" in plan.nft_ruleset
    assert classify.split(" update @")[1].startswith("flows_stun_at_flow_start")
    # The verdict is keyed on the conntrack tuple, so it covers both directions.
    assert enforce.startswith("meta l4proto udp ct original ip saddr")
    assert "@flows_stun_at_flow_start update @flows_stun_at_flow_start" in enforce
    assert enforce.endswith('counter drop comment "stun-at-flow-start: enforce"')
    assert "timeout 120s" in plan.nft_ruleset


def test_police_keeps_a_bucket_per_flow_and_direction() -> None:
    plan = compile_policy(_policy("udp-throttle"), BINDINGS)
    (rule,) = _rules(plan.nft_ruleset)
    assert "ip saddr . th sport . ip daddr . th dport" in rule
    # 16 kbit/s = 2000 B/s; nft's bucket holds rate + burst, so 4000 B needs burst 2000.
    assert "limit rate over 2000 bytes/second burst 2000 bytes" in rule
    assert "bucket 4000 B" in plan.describe()


@pytest.mark.parametrize("rate_kbit, burst, depth", [
    (16, None, 3000), (16, 1000, 2000), (16, 8000, 8000), (1000, None, 125000),
])
def test_police_bucket_is_never_below_one_second(rate_kbit: float, burst: int | None,
                                                 depth: int) -> None:
    action = Action(kind="police", rate_kbit=rate_kbit, burst_bytes=burst)
    assert police_bucket_bytes(action) == depth
    assert police_rate_bytes(action) == round(rate_kbit * 125)


def test_direction_and_ports_compile() -> None:
    policy = _policy("turn-relay-block")
    rule = policy.rules[0]
    match = dataclasses.replace(rule.match, direction="downstream", dst_set=None,
                                src_set="relays")
    changed = dataclasses.replace(policy, rules=[dataclasses.replace(rule, match=match)])
    (text,) = _rules(compile_policy(changed, BINDINGS).nft_ruleset)
    assert text.startswith('oifname { "eth0" } meta l4proto udp ct original ip saddr @set_relays')


def test_unbound_set_is_a_compile_error() -> None:
    bindings = CensorBindings(sets={"other": [IPv4Network("198.18.9.0/24")]},
                              subscriber_interfaces=("eth0",))
    with pytest.raises(CompileError, match="relays"):
        compile_policy(_policy("turn-relay-block"), bindings)


def test_each_rule_is_explained_in_one_line() -> None:
    plan = compile_policy(_policy("dpi-stun-drop"), BINDINGS)
    (explanation,) = plan.explanations
    assert explanation.rule_id == "stun-at-flow-start"
    assert "first 3 packets" in explanation.text and "\n" not in explanation.text
