"""Golden-ish checks of what each language feature compiles to."""

from __future__ import annotations

from typing import Any

import pytest

from harness import paths
from harness.censor.compiler import ALLOWLIST_REPLIES, bindings_for, compile_policy, explain_rule
from harness.censor.plan import CensorPlan, HtbClass
from harness.spec.policy import (
    DEFAULT_DENY,
    Action,
    ByteMatch,
    Classify,
    Enforcement,
    Match,
    Policy,
    Provenance,
    Rule,
    Schedule,
    Signature,
    load_policy,
)
from harness.spec.topology import load_topology

TOPOLOGY = load_topology(paths.TOPOLOGIES / "ru-to-abroad.yaml")
BINDINGS = bindings_for(TOPOLOGY)
NOW = 1_795_900_000  # 2026-11-28 21:06:40 UTC
FLOW = ("ct original ip saddr . ct original proto-src . ct original ip daddr . "
        "ct original proto-dst")


def rule(action: Action, **fields: Any) -> Rule:
    fields.setdefault("match", Match(protocol="udp"))
    return Rule(id="r", explain="test", action=action, **fields)


def compiled(*rules: Rule, mode: str = "blocklist") -> CensorPlan:
    policy = Policy(name="t", description="t", provenance=Provenance(sources=[], reported=""),
                    rules=list(rules), mode=mode)  # type: ignore[arg-type]
    return compile_policy(policy, BINDINGS, now=NOW)


def lines(plan: CensorPlan) -> list[str]:
    return [line.strip() for line in plan.nft_ruleset.splitlines() if 'comment "r' in line
            or 'comment "allowlist' in line or 'comment "default-deny' in line]


def test_bindings_know_every_censor_interface() -> None:
    assert BINDINGS.all_interfaces == ("eth0", "eth1")


@pytest.mark.parametrize("path", paths.all_policies(), ids=lambda p: p.stem)
def test_every_shipped_policy_compiles_with_counters_and_rule_comments(path: Any) -> None:
    policy = load_policy(path, TOPOLOGY.sets.keys())
    plan = compile_policy(policy, BINDINGS, now=NOW)
    ids = {r.id for r in policy.rules} | {ALLOWLIST_REPLIES, DEFAULT_DENY}
    statements = [line.strip() for line in plan.nft_ruleset.splitlines()
                  if 'comment "' in line and "callwall policy" not in line]
    assert len(statements) >= len(policy.rules)
    for statement in statements:
        assert " counter " in f" {statement} "
        assert statement.split('comment "')[1].split(":")[0].rstrip('"') in ids
    assert len(plan.explanations) == len(policy.rules)


def test_reject_sends_rst_for_tcp_and_icmp_otherwise() -> None:
    (udp,) = lines(compiled(rule(Action(kind="reject"))))
    assert udp.endswith('counter reject with icmpx admin-prohibited comment "r"')
    (tcp,) = lines(compiled(rule(Action(kind="reject"), match=Match(protocol="tcp"))))
    assert "meta l4proto tcp counter reject with tcp reset" in tcp
    both = lines(compiled(rule(Action(kind="reject"), match=Match())))
    assert [b.split(" counter ")[1] for b in both] == [
        'reject with tcp reset comment "r"', 'reject with icmpx admin-prohibited comment "r"']


def test_random_loss_draws_per_packet() -> None:
    (text,) = lines(compiled(rule(Action(kind="random_loss", loss_pct=12.5))))
    assert "numgen random mod 10000 < 1250 counter drop" in text


def test_shape_marks_priority_and_plans_htb_classes_on_every_interface() -> None:
    plan = compiled(rule(Action(kind="shape", rate_kbit=64)))
    (text,) = lines(plan)
    assert "counter meta priority set 1:10" in text
    assert [op.dev for op in plan.tc_ops] == ["eth0", "eth1"]
    for op in plan.tc_ops:
        assert op.kind == "htb" and op.classes == (HtbClass("1:10", 64),)
        assert dict(op.params) == {"default": 0}


def test_tcp_freeze_counts_reply_bytes() -> None:
    (text,) = lines(compiled(rule(Action(kind="tcp_freeze", after_kbytes=16),
                                  match=Match(protocol="tcp", dst_set="foreign-hosting"))))
    assert "ct original ip daddr @set_foreign_hosting ct reply bytes > 16000 counter drop" in text


def test_blackhole_holds_the_server_address_both_ways() -> None:
    plan = compiled(rule(Action(kind="blackhole_server", seconds=600),
                         classify=Classify(after_packets=3)))
    trip, to_server, from_server = lines(plan)
    assert "ct packets >= 3 counter add @servers_r { ct original ip daddr }" in trip
    assert to_server.startswith("ip daddr @servers_r counter drop")
    assert from_server.startswith("ip saddr @servers_r counter drop")
    assert "set servers_r {\n\t\ttype ipv4_addr\n" in plan.nft_ruleset
    assert "timeout 600s" in plan.nft_ruleset


def test_dst_proto_scope_keys_on_server_and_protocol_with_a_fixed_timeout() -> None:
    plan = compiled(rule(Action(kind="drop"), scope="dst-proto", verdict_s=300,
                         classify=Classify(signatures=[Signature(kind="telegram-hello")])))
    classify, up, down = lines(plan)
    assert classify.endswith('add @servers_r { ct original ip daddr . meta l4proto } '
                             'comment "r: classify telegram-hello"')
    assert up.startswith("ip daddr . meta l4proto @servers_r counter drop")
    assert down.startswith("ip saddr . meta l4proto @servers_r counter drop")
    assert "type ipv4_addr . inet_proto" in plan.nft_ruleset and "timeout 300s" in plan.nft_ruleset


def test_flow_scope_refreshes_the_verdict_on_every_packet() -> None:
    plan = compiled(rule(Action(kind="drop"), classify=Classify(stun_cookie=True)))
    _, enforce = lines(plan)
    assert enforce.startswith(f"meta l4proto udp {FLOW} @flows_r update @flows_r {{ {FLOW} }}")


def test_tcp_first_packets_count_from_the_end_of_the_handshake() -> None:
    signature = Signature(kind="bytes", at=[ByteMatch(offset=0, value="16")])
    plan = compiled(rule(Action(kind="drop"), match=Match(protocol="tcp"),
                         classify=Classify(first_packets=2, signatures=[signature])))
    assert "ct packets <= 5 @ih,0,8 0x16" in lines(plan)[0]


def test_after_packets_with_a_signature_needs_the_signature_first() -> None:
    plan = compiled(rule(Action(kind="drop"), classify=Classify(
        signatures=[Signature(kind="wireguard")], after_packets=30)))
    first, second, trip, _ = lines(plan)
    assert f"update @suspects_r {{ {FLOW} }}" in first and "udp length 100" in second
    assert f"ct packets >= 30 {FLOW} @suspects_r counter update @flows_r" in trip


def test_probability_rolls_once_per_flow_in_sets_not_marks() -> None:
    plan = compiled(rule(Action(kind="drop"), enforcement=Enforcement(probability=0.3)))
    won, rolled, enforce = lines(plan)
    assert f"{FLOW} != @rolled_r numgen random mod 10000 < 3000 counter add @won_r" in won
    assert f"{FLOW} != @rolled_r counter add @rolled_r" in rolled
    assert f"{FLOW} @won_r counter drop" in enforce
    assert "ct mark" not in plan.nft_ruleset
    assert "30% of flows" in explain_rule(plan_rule(0.3))


def plan_rule(probability: float) -> Rule:
    return rule(Action(kind="drop"), enforcement=Enforcement(probability=probability))


def test_schedule_starts_after_the_apply_time_and_repeats_windows() -> None:
    plan = compiled(rule(Action(kind="drop"), schedule=Schedule(after_s=60, on_s=3600,
                                                                off_s=3600)))
    (text,) = lines(plan)
    start = NOW + 60
    assert f"meta time >= {start}" in text
    windows = text.split("meta hour { ")[1].split(" }")[0].split(", ")
    covered = set()
    for window in windows:
        lo, _, hi = window.partition("-")
        covered |= set(range(int(lo), int(hi or lo) + 1))
    # Brute force: second s of the (UTC) day is on iff (s - start) mod period < on_s.
    assert covered == {s for s in range(86_400) if (s - start) % 7200 < 3600}


def test_schedule_window_crossing_midnight_is_split() -> None:
    plan = compile_policy(Policy(name="t", description="t",
                                 provenance=Provenance(sources=[], reported=""),
                                 rules=[rule(Action(kind="drop"),
                                             schedule=Schedule(on_s=7200, off_s=14400))]),
                          BINDINGS, now=86_400 * 10 + 82_800)  # 23:00 UTC
    (text,) = lines(plan)
    assert "0-3599" in text and "82800-86399" in text


def test_allowlist_accepts_listed_then_replies_then_drops_the_rest() -> None:
    plan = compiled(rule(Action(kind="allow"), match=Match(protocol="tcp",
                                                           dst_set="signalling")),
                    mode="allowlist")
    allow, replies, deny = lines(plan)
    assert allow.endswith('ip daddr @set_signalling counter accept comment "r"')
    assert replies.startswith("ct state established,related counter accept")
    assert deny == 'counter drop comment "default-deny: everything not allowed"'


def test_tls_sni_compiles_to_a_userspace_stage() -> None:
    signature = Signature(kind="tls-sni", names=["twitter.com", "t.co"], sni_match="substring")
    plan = compiled(rule(Action(kind="police", rate_kbit=140),
                         match=Match(protocol="tcp"),
                         classify=Classify(first_packets=3, signatures=[signature])))
    (stage,) = plan.stages
    assert stage.queue_num == 100 and stage.classifier == "tls-sni"
    assert stage.params == (("names", "twitter.com,t.co"), ("match", "substring"))
    assert stage.candidate_mark != stage.verdict_mark
    assert plan.iptables_rules == (("-m", "mark", "--mark", f"{stage.candidate_mark:#010x}",
                                    "-j", "NFQUEUE", "--queue-num", "100", "--queue-bypass"),)
    assert "chain prefilter {\n\t\ttype filter hook forward priority -200;" in plan.nft_ruleset
    assert (f"meta l4proto tcp ct packets <= 6 counter meta mark set "
            f"{stage.candidate_mark:#010x}") in plan.nft_ruleset
    verdict = next(line for line in lines(plan) if "userspace" in line)
    assert verdict.startswith(f"meta mark {stage.verdict_mark:#010x} meta l4proto tcp counter "
                              "update @flows_r")
    assert plan.explanations[0].runs_in == "userspace"
    assert "userspace stage" in plan.describe()


def test_two_stages_get_distinct_queues_and_marks() -> None:
    signature = Signature(kind="tls-sni", names=["a.example"])
    rules = [Rule(id=f"r{i}", explain="", action=Action(kind="drop"),
                  match=Match(protocol="tcp"), classify=Classify(signatures=[signature]))
             for i in range(2)]
    plan = compiled(*rules)
    queues = [s.queue_num for s in plan.stages]
    marks = [m for s in plan.stages for m in (s.candidate_mark, s.verdict_mark)]
    assert queues == [100, 101] and len(set(marks)) == 4
