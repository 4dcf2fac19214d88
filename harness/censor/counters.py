"""Per-rule packet and byte counters of the censor's live policy, so a call's
record says which rule decided its fate.

A policy's DNS removal counts too (harness/censor/dns.py): its counter is
named by the removal's id, and its "packets" are the NXDOMAIN answers the
resolver gave for the removed names (bytes 0)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.censor.dns import removal_count
from harness.censor.plan import NFT_FAMILY, NFT_TABLE
from harness.netns.host import LabHost


@dataclass(frozen=True)
class RuleCounter:
    rule: str
    packets: int
    bytes: int


def parse_counters(nft_json: str) -> list[RuleCounter]:
    """Counters of every commented rule in `nft -j list table` output."""
    counters = []
    for item in json.loads(nft_json).get("nftables", []):
        rule = item.get("rule")
        if rule is None or "comment" not in rule:
            continue
        counter = _counter_of(rule.get("expr", []))
        if counter is not None:
            counters.append(RuleCounter(rule["comment"], counter["packets"], counter["bytes"]))
    return counters


def _counter_of(expressions: list[dict[str, Any]]) -> dict[str, int] | None:
    for expression in expressions:
        if "counter" in expression:
            counter: dict[str, int] = expression["counter"]
            return counter
    return None


def read_counters(censor: LabHost) -> list[RuleCounter]:
    listing = censor.run(["nft", "-j", "list", "table", NFT_FAMILY, NFT_TABLE], check=False)
    dns = read_dns_counters(censor)
    if listing.returncode != 0:
        return dns  # no policy table loaded yet
    return parse_counters(listing.stdout) + dns


def read_dns_counters(censor: LabHost) -> list[RuleCounter]:
    """The DNS removal in force, as a counter: [] when there is none."""
    counted = removal_count(censor)
    return [] if counted is None else [RuleCounter(counted[0], counted[1], 0)]


def counters_since(before: list[RuleCounter], after: list[RuleCounter]) -> list[RuleCounter]:
    """What each rule counted between two readings (a swap in between resets them)."""
    earlier = {c.rule: c for c in before}
    result = []
    for counter in after:
        base = earlier.get(counter.rule)
        if base is not None and base.packets <= counter.packets:
            counter = RuleCounter(counter.rule, counter.packets - base.packets,
                                  counter.bytes - base.bytes)
        result.append(counter)
    return result
