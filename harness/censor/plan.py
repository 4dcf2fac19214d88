"""What a compiled policy is: an nftables ruleset plus tc operations, with a
one-line explanation of every rule. Plain data, so it can be printed, diffed,
stored with a run and unit-tested without root."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Literal

from harness.spec.policy import DnsRemoval

NFT_FAMILY = "inet"
NFT_TABLE = "callwall"


@dataclass(frozen=True)
class CensorBindings:
    """What the topology tells the compiler about the censor it targets."""

    sets: dict[str, list[IPv4Network]]
    subscriber_interfaces: tuple[str, ...]
    # Every censor interface, for queueing (shape) on each egress.
    all_interfaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class HtbClass:
    """One HTB class under a root `htb` qdisc: traffic nft marks with
    `meta priority set <classid>` is queued here at `rate_kbit`."""

    classid: str  # "1:10"
    rate_kbit: float


@dataclass(frozen=True)
class TcQdisc:
    """One root qdisc on one censor interface, in pyroute2's terms
    (`kind` plus its keyword parameters)."""

    dev: str
    kind: Literal["tbf", "htb"]
    params: tuple[tuple[str, int | str], ...] = ()
    op: Literal["replace"] = "replace"
    classes: tuple[HtbClass, ...] = ()


@dataclass(frozen=True)
class RuleExplanation:
    rule_id: str
    text: str
    runs_in: Literal["kernel", "userspace"] = "kernel"


@dataclass(frozen=True)
class UserspaceStage:
    """A classifier nft cannot express, run as an NFQUEUE process in the censor.

    nft marks candidate packets with `candidate_mark` (forward, priority -200);
    iptables (mangle FORWARD, -150) queues them to `queue_num`; the stage sets
    `verdict_mark` on a match and accepts every packet; nft enforces at filter."""

    rule_id: str
    queue_num: int  # 100-199
    candidate_mark: int
    verdict_mark: int
    classifier: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CensorPlan:
    policy: str
    nft_ruleset: str
    tc_ops: tuple[TcQdisc, ...] = ()
    explanations: tuple[RuleExplanation, ...] = field(default_factory=tuple)
    stages: tuple[UserspaceStage, ...] = ()
    # Each element is one iptables rule specification (argv after
    # `iptables -t mangle -A CALLWALL`); the applier owns the chain and its jump.
    iptables_rules: tuple[tuple[str, ...], ...] = ()
    # Names the subscribers' resolver answers NXDOMAIN for (harness/censor/dns.py).
    dns: DnsRemoval | None = None

    def describe(self) -> str:
        lines = [f"policy {self.policy}: {len(self.explanations)} rule(s)"]
        where = {"kernel": "in the kernel",
                 "userspace": "classified by a userspace stage, enforced in the kernel"}
        lines += [f"  {e.rule_id}: {e.text} [{where[e.runs_in]}]" for e in self.explanations]
        if self.tc_ops:
            lines += [f"  tc: {op.op} {op.kind} on {op.dev}"
                      + "".join(f", class {c.classid} at {c.rate_kbit:g} kbit/s"
                                for c in op.classes) for op in self.tc_ops]
        lines += [f"  userspace stage: rule {s.rule_id}, {s.classifier} on NFQUEUE "
                  f"{s.queue_num} (candidate mark {s.candidate_mark:#x}, verdict mark "
                  f"{s.verdict_mark:#x})" for s in self.stages]
        if self.dns is not None:
            lines.append(f"  {self.dns.id}: the subscribers' resolver answers NXDOMAIN for "
                         f"{', '.join(self.dns.remove)} [in the resolver]")
        return "\n".join(lines)
