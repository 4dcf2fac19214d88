"""Reading per-rule counters from nft's JSON listing."""

from __future__ import annotations

import json

from harness.censor.counters import RuleCounter, counters_since, parse_counters


def _rule(comment: str | None, packets: int | None) -> dict[str, object]:
    expr: list[dict[str, object]] = [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                                                "right": "udp"}}]
    if packets is not None:
        expr.append({"counter": {"packets": packets, "bytes": packets * 100}})
    expr.append({"drop": None})
    rule: dict[str, object] = {"family": "inet", "table": "callwall", "chain": "forward",
                               "handle": 3, "expr": expr}
    if comment is not None:
        rule["comment"] = comment
    return {"rule": rule}


LISTING = json.dumps({"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "callwall", "handle": 2}},
    _rule("stun-at-flow-start: classify", 3),
    _rule("stun-at-flow-start: enforce", 41),
    _rule(None, 7),                      # not one of ours: no comment
    _rule("no-counter-rule", None),
]})


def test_parse_counters_reads_commented_rules_with_counters() -> None:
    assert parse_counters(LISTING) == [
        RuleCounter("stun-at-flow-start: classify", 3, 300),
        RuleCounter("stun-at-flow-start: enforce", 41, 4100),
    ]


def test_counters_since_subtracts_and_survives_a_reset() -> None:
    before = [RuleCounter("a", 10, 1000), RuleCounter("b", 50, 5000)]
    after = [RuleCounter("a", 15, 1600), RuleCounter("b", 4, 400), RuleCounter("c", 2, 20)]
    assert counters_since(before, after) == [
        RuleCounter("a", 5, 600),
        RuleCounter("b", 4, 400),   # fewer than before: the table was swapped, keep as is
        RuleCounter("c", 2, 20),
    ]
