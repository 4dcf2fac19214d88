"""What a compiled policy is: an nftables ruleset plus tc operations, with a
one-line explanation of every rule. Plain data, so it can be printed, diffed,
stored with a run and unit-tested without root."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Literal

NFT_FAMILY = "inet"
NFT_TABLE = "callwall"


@dataclass(frozen=True)
class CensorBindings:
    """What the topology tells the compiler about the censor it targets."""

    sets: dict[str, list[IPv4Network]]
    subscriber_interfaces: tuple[str, ...]


@dataclass(frozen=True)
class TcQdisc:
    """One root qdisc on one censor interface, in pyroute2's terms
    (`kind` plus its keyword parameters)."""

    dev: str
    kind: Literal["tbf", "htb"]
    params: tuple[tuple[str, int | str], ...] = ()
    op: Literal["replace"] = "replace"


@dataclass(frozen=True)
class RuleExplanation:
    rule_id: str
    text: str


@dataclass(frozen=True)
class CensorPlan:
    policy: str
    nft_ruleset: str
    tc_ops: tuple[TcQdisc, ...] = ()
    explanations: tuple[RuleExplanation, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        lines = [f"policy {self.policy}: {len(self.explanations)} rule(s)"]
        lines += [f"  {e.rule_id}: {e.text}" for e in self.explanations]
        if self.tc_ops:
            lines += [f"  tc: {op.op} {op.kind} on {op.dev}" for op in self.tc_ops]
        return "\n".join(lines)
