"""Everything the compiler emits loads on this kernel: every shipped policy,
and one policy that uses every feature of the language, are loaded inside a
lab's censor namespace (never the root namespace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import paths
from harness.censor.applier import root_qdisc_kinds
from harness.censor.compiler import bindings_for, compile_policy
from harness.censor.plan import CensorPlan
from harness.spec.policy import (
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
from harness.testbed import Lab

EVERY_SIGNATURE = [
    Signature(kind="stun-cookie"), Signature(kind="whatsapp-stun"),
    Signature(kind="telegram-hello"), Signature(kind="rtp", payload_types=[96, 111]),
    Signature(kind="dtls", at=[ByteMatch(offset=0x5A, value="1d00170018")]),
    Signature(kind="wireguard"), Signature(kind="quic-v1-initial"),
    Signature(kind="bytes", payload_len=40, at=[ByteMatch(offset=1, value="ff00", mask="f0f0")]),
    Signature(kind="stun"), Signature(kind="telegram-ndpi"),
]


def _rule(rule_id: str, action: Action, **fields: object) -> Rule:
    return Rule(id=rule_id, explain="every feature", action=action, **fields)  # type: ignore[arg-type]


def every_feature(mode: str = "blocklist") -> Policy:
    udp = Match(protocol="udp", direction="upstream", dst_set="relays", dst_ports=[])
    tcp = Match(protocol="tcp", dst_set="foreign-hosting")
    rules = [
        _rule("sigs", Action(kind="drop"), match=udp,
              classify=Classify(signatures=EVERY_SIGNATURE)),
        _rule("dstproto", Action(kind="reject"), match=Match(protocol="udp"), scope="dst-proto",
              classify=Classify(stun_cookie=True, after_packets=10)),
        _rule("dst", Action(kind="reject"), match=Match(protocol="tcp"), scope="dst",
              classify=Classify(signatures=[Signature(kind="bytes", at=[
                  ByteMatch(offset=0, value="160301")])])),
        _rule("sni", Action(kind="police", rate_kbit=140), match=Match(protocol="tcp"),
              classify=Classify(signatures=[Signature(kind="tls-sni", names=["t.co"])])),
        _rule("shape", Action(kind="shape", rate_kbit=64), match=Match(protocol="udp")),
        _rule("loss", Action(kind="random_loss", loss_pct=5), match=Match(),
              enforcement=Enforcement(probability=0.25)),
        _rule("hole", Action(kind="blackhole_server", seconds=600), match=udp,
              classify=Classify(after_packets=3)),
        _rule("freeze", Action(kind="tcp_freeze", after_kbytes=16), match=tcp,
              schedule=Schedule(after_s=30, on_s=60, off_s=60)),
    ]
    if mode == "allowlist":
        rules.append(_rule("allow", Action(kind="allow"), match=Match(dst_set="signalling")))
    return Policy(name="every-feature", description="", mode=mode,  # type: ignore[arg-type]
                  provenance=Provenance(sources=[], reported=""), rules=rules)


def _load(lab: Lab, plan: CensorPlan) -> None:
    censor = lab.host_with_role("censor")
    checked = censor.run(["nft", "-c", "-f", "-"], input_text=plan.nft_ruleset, check=False)
    assert checked.returncode == 0, f"{plan.policy}: {checked.stderr}"
    loaded = censor.run(["nft", "-f", "-"], input_text=plan.nft_ruleset, check=False)
    assert loaded.returncode == 0, f"{plan.policy}: {loaded.stderr}"


@pytest.mark.parametrize("path", paths.all_policies(), ids=lambda p: p.stem)
def test_shipped_policy_loads_in_the_censor(lab: Lab, path: Path) -> None:
    plan = compile_policy(load_policy(path, lab.topology.sets.keys()), bindings_for(lab.topology))
    _load(lab, plan)
    listing = lab.host_with_role("censor").run(["nft", "-j", "list", "table", "inet",
                                                "callwall"]).stdout
    # Every rule of a policy carries its id; the one comment-less rule is the
    # compiler's own conntrack keeper.
    rules = [item["rule"] for item in json.loads(listing)["nftables"] if "rule" in item]
    comments = {rule["comment"].split(":")[0] for rule in rules if "comment" in rule}
    assert sum("comment" not in rule for rule in rules) == 1
    assert comments >= {e.rule_id for e in plan.explanations}


@pytest.mark.parametrize("mode", ["blocklist", "allowlist"])
def test_every_feature_loads(lab: Lab, mode: str) -> None:
    _load(lab, compile_policy(every_feature(mode), bindings_for(lab.topology)))


def test_shape_installs_htb_classes_and_baseline_removes_them(lab: Lab) -> None:
    bindings = bindings_for(lab.topology)
    shaped = Policy(name="shaped", description="", provenance=Provenance(sources=[], reported=""),
                    rules=[_rule("shape", Action(kind="shape", rate_kbit=64),
                                 match=Match(protocol="udp"))])
    censor = lab.host_with_role("censor")
    lab.apply_plan(compile_policy(shaped, bindings))
    for dev in bindings.all_interfaces:
        assert root_qdisc_kinds(censor, dev) == ["htb"]
        classes = censor.run(["tc", "class", "show", "dev", dev]).stdout
        assert "class htb 1:10" in classes and "rate 64Kbit" in classes
    lab.apply_plan(compile_policy(load_policy(paths.policy_path("baseline")), bindings))
    for dev in bindings.all_interfaces:
        assert root_qdisc_kinds(censor, dev) != ["htb"]
