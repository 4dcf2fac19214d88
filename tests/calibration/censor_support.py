"""Shared pieces of the censor calibration tests: the test policies under
tests/calibration/policies/, and small statistics. (Their lab is the `lab`
fixture of callwall's pytest plugin, one per module.)

Every figure is measured with real packets through the censor host (the
generators of harness.measure.traffic), never read back from the ruleset."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from harness.censor.counters import RuleCounter, read_counters
from harness.spec.policy import Policy, load_policy
from harness.testbed import Lab

POLICY_DIR = Path(__file__).resolve().parent / "policies"


def calibration_policy(name: str, lab: Lab) -> Policy:
    return load_policy(POLICY_DIR / f"{name}.yaml", lab.topology.sets.keys())


def with_rule(policy: Policy, index: int = 0, **changes: Any) -> Policy:
    """The policy with rule `index` changed (`action`, `classify`, ... given
    as dicts of field changes, or whole values)."""
    rule = policy.rules[index]
    replaced: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, dict):
            replaced[key] = dataclasses.replace(getattr(rule, key), **value)
        else:
            replaced[key] = value
    rules = list(policy.rules)
    rules[index] = dataclasses.replace(rule, **replaced)
    return dataclasses.replace(policy, rules=rules)


def counters(lab: Lab) -> list[RuleCounter]:
    return read_counters(lab.host_with_role("censor"))


def packets_counted(lab: Lab, comment_prefix: str) -> int:
    """Packets counted by every rule whose comment starts with the prefix (a
    classifier with alternatives renders one nft rule per alternative)."""
    return sum(c.packets for c in counters(lab) if c.rule.startswith(comment_prefix))


def binomial_interval(trials: int, p: float, confidence: float = 0.99) -> tuple[int, int]:
    """The central interval [lo, hi] of successes holding at least
    `confidence` of Binomial(trials, p), from the exact distribution."""
    pmf = [math.comb(trials, k) * p ** k * (1 - p) ** (trials - k) for k in range(trials + 1)]
    tail = (1 - confidence) / 2
    lo, acc = 0, 0.0
    while acc + pmf[lo] <= tail:
        acc += pmf[lo]
        lo += 1
    hi, acc = trials, 0.0
    while acc + pmf[hi] <= tail:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def has_field(cls: type, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(cls))
