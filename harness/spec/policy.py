"""Policy specs: what the censor does to which packets, why we believe the real
censor does it (provenance), and what each call strategy should then see.

A policy names its targets by symbolic sets (`relays`, ...) that the topology
binds to addresses; real-world prefixes belong in the provenance text only.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.spec.schema import (
    Located,
    check_name,
    load_yaml_node,
    locate,
    parse_dataclass,
    register_scalar,
    shorten,
)

STRATEGIES: tuple[str, ...] = ("direct", "turn-udp", "turn-tcp", "turn-tls-443")
MAX_RULES = 200
PORT_RANGE = re.compile(r"\s*([0-9]{1,5})\s*(?:-\s*([0-9]{1,5})\s*)?", re.ASCII)


@dataclass(frozen=True, order=True)
class PortRange:
    first: int
    last: int

    def render(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def _parse_port_range(text: str) -> PortRange:
    found = PORT_RANGE.fullmatch(text)  # ASCII digits only: int() also reads '٣٤٧٨'
    if found is None:
        raise ValueError(f"{shorten(repr(text))} is not a port or a port range like 3478-3497")
    first = int(found[1])
    last = int(found[2] or found[1])
    if not (1 <= first <= last <= 65535):
        raise ValueError(f"{text!r}: ports run from 1 to 65535, low before high")
    return PortRange(first, last)


register_scalar(PortRange, _parse_port_range)


@dataclass(frozen=True)
class Provenance:
    """Where the rule comes from. `guesses` lists every parameter that no
    source gives, so nobody mistakes it for a measured fact."""

    sources: list[str]
    reported: str
    guesses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Match:
    protocol: Literal["udp", "tcp", "any"] = "any"
    direction: Literal["upstream", "downstream", "both"] = "both"
    dst_set: str | None = field(default=None, metadata={"check": check_name})
    src_set: str | None = field(default=None, metadata={"check": check_name})
    dst_ports: list[PortRange] = field(default_factory=list)
    src_ports: list[PortRange] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.dst_ports or self.src_ports) and self.protocol == "any":
            raise ValueError("port matches need protocol udp or tcp")

    @property
    def sets(self) -> list[str]:
        return [s for s in (self.dst_set, self.src_set) if s is not None]


@dataclass(frozen=True)
class Classify:
    """Deep packet inspection of a flow's first packets."""

    first_packets: int = 3
    stun_cookie: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.first_packets <= 50:
            raise ValueError("first_packets must be between 1 and 50")
        if not self.stun_cookie:
            raise ValueError("classify needs at least one classifier (stun_cookie: true)")


@dataclass(frozen=True)
class Action:
    kind: Literal["drop", "police"]
    rate_kbit: float | None = None
    burst_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "police":
            if self.rate_kbit is None or not 0.5 <= self.rate_kbit <= 10_000_000:
                raise ValueError("police needs rate_kbit between 0.5 and 10000000")
            if self.burst_bytes is not None and not 64 <= self.burst_bytes <= 100_000_000:
                raise ValueError("burst_bytes must be between 64 and 100000000")
        elif self.rate_kbit is not None or self.burst_bytes is not None:
            raise ValueError(f"{self.kind} takes no rate_kbit or burst_bytes")


@dataclass(frozen=True)
class Rule:
    id: str = field(metadata={"check": check_name})
    explain: str
    action: Action
    match: Match = field(default_factory=Match)
    classify: Classify | None = None
    scope: Literal["flow"] = "flow"
    verdict_idle_s: int = 120

    def __post_init__(self) -> None:
        if not 1 <= self.verdict_idle_s <= 86_400:
            raise ValueError("verdict_idle_s must be between 1 and 86400")
        if self.action.kind == "police" and self.match.protocol == "any":
            raise ValueError("police keeps a bucket per flow: set match.protocol to udp or tcp")
        if self.classify is not None and self.match.protocol != "udp":
            raise ValueError("classify inspects UDP payloads: set match.protocol to udp")


@dataclass(frozen=True)
class Expectation:
    """What a call with one strategy should show under this policy.
    connects: media flows (and MOS >= min_mos if given); degraded: media flows
    but MOS < max_mos; fails: no media."""

    outcome: Literal["connects", "fails", "degraded"]
    min_mos: float | None = None
    max_mos: float | None = None
    why: str = ""

    def __post_init__(self) -> None:
        if self.outcome == "degraded" and self.max_mos is None:
            raise ValueError("a degraded expectation needs max_mos")
        if self.outcome != "connects" and self.min_mos is not None:
            raise ValueError("min_mos only goes with outcome connects")
        if self.outcome != "degraded" and self.max_mos is not None:
            raise ValueError("max_mos only goes with outcome degraded")
        for bound in (self.min_mos, self.max_mos):
            if bound is not None and not 1.0 <= bound <= 5.0:
                raise ValueError("MOS bounds lie between 1.0 and 5.0")


@dataclass(frozen=True)
class Policy:
    name: str = field(metadata={"check": check_name})
    description: str
    provenance: Provenance
    rules: list[Rule] = field(default_factory=list)
    expect: dict[str, Expectation] = field(default_factory=dict)

    @property
    def sets(self) -> list[str]:
        return sorted({s for rule in self.rules for s in rule.match.sets})


def load_policy(path: Path, known_sets: Collection[str] | None = None) -> Policy:
    """Load and check a policy; with `known_sets`, also check that every set it
    targets is bound by the topology it will run on."""
    loc = load_yaml_node(path)
    policy = parse_dataclass(loc, Policy)
    validate_policy(policy, loc, known_sets)
    return policy


def validate_policy(policy: Policy, loc: Located, known_sets: Collection[str] | None) -> None:
    if len(policy.rules) > MAX_RULES:
        raise locate(loc, "rules").error(f"{len(policy.rules)} rules; at most {MAX_RULES}")
    seen: set[str] = set()
    for index, rule in enumerate(policy.rules):
        if rule.id in seen:
            raise locate(loc, "rules", index, "id").error(f"rule id {rule.id!r} is used twice")
        seen.add(rule.id)
        if known_sets is not None:
            _check_rule_sets(rule, locate(loc, "rules", index, "match"), known_sets)
    for strategy in policy.expect:
        if strategy not in STRATEGIES:
            raise locate(loc, "expect", strategy).error(
                f"unknown strategy {strategy!r}; strategies are: {', '.join(STRATEGIES)}"
            )


def _check_rule_sets(rule: Rule, loc: Located, known_sets: Collection[str]) -> None:
    for key in ("dst_set", "src_set"):
        name = getattr(rule.match, key)
        if name is not None and name not in known_sets:
            known = ", ".join(sorted(known_sets)) or "none"
            raise locate(loc, key).error(
                f"set {shorten(repr(name))} is not bound by the topology (it binds: {known})"
            )
