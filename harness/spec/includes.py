"""Policy includes and overrides: how an ISP profile reuses a policy.

`include: [name-or-path, ...]` puts the rules of other policies (names from
policies/, or paths ending in .yaml relative to the including file) before the
policy's own rules; `override: {rule-id: {...}}` then changes typed parameters
of any rule (action parameters, first_packets, after_packets, verdict_s,
enforcement, schedule). Every error names the file and line that caused it:
an include cycle or a duplicated rule id points at the include entry, an
unknown rule id at the override key, an overridden value that breaks a rule's
own checks at the override.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness import paths
from harness.spec.policy import Policy, Rule, RuleOverride, check_include
from harness.spec.schema import Located, load_yaml_node, locate, parse_dataclass, shorten

MAX_INCLUDE_DEPTH = 8
Origins = dict[str, Located]


def load_expanded(path: Path, stack: tuple[Path, ...] = ()) -> tuple[Policy, Located, Origins]:
    """The policy at `path` with its includes expanded and overrides applied,
    its located YAML, and where each rule was written."""
    loc = load_yaml_node(path)
    policy = parse_dataclass(loc, Policy)
    here = path.resolve()
    rules: list[Rule] = []
    origins: Origins = {}
    dns = policy.dns  # its own DNS removal, else the one an include brings
    for index, name in enumerate(policy.include):
        entry = locate(loc, "include", index)
        target = _include_path(name, path, entry)
        chain = (*stack, here)
        if target in chain:
            cycle = " -> ".join(p.name for p in (*chain[chain.index(target):], target))
            raise entry.error(f"include cycle: {cycle}")
        if len(chain) >= MAX_INCLUDE_DEPTH:
            raise entry.error(f"includes nest more than {MAX_INCLUDE_DEPTH} deep")
        included, _, included_origins = load_expanded(target, chain)
        if included.mode != policy.mode:
            raise entry.error(f"{name} has mode {included.mode}; this policy has mode "
                              f"{policy.mode}")
        if included.dns is not None and policy.dns is None:
            if dns is not None and dns != included.dns:
                raise entry.error(f"{name} brings a second DNS removal; give this policy its "
                                  "own `dns` to say which names it removes")
            dns = included.dns
        for rule in included.rules:
            if rule.id in origins:
                raise entry.error(f"rule id {rule.id!r} from {name} is already defined by an "
                                  "earlier include")
            rules.append(rule)
            origins[rule.id] = included_origins[rule.id]
    for index, rule in enumerate(policy.rules):
        if rule.id in origins:
            raise locate(loc, "rules", index, "id").error(f"rule id {rule.id!r} is used twice")
        rules.append(rule)
        origins[rule.id] = locate(loc, "rules", index)
    rules = _apply_overrides(policy, loc, rules)
    return dataclasses.replace(policy, rules=rules, dns=dns), loc, origins


def _include_path(name: str, path: Path, entry: Located) -> Path:
    try:
        check_include(name)
    except ValueError as exc:
        raise entry.error(str(exc)) from None
    target = path.parent / name if name.endswith(".yaml") else paths.POLICIES / f"{name}.yaml"
    if not target.is_file():
        raise entry.error(f"no policy {shorten(repr(name))} (looked for {shorten(str(target))})")
    return target.resolve()


def _apply_overrides(policy: Policy, loc: Located, rules: list[Rule]) -> list[Rule]:
    by_id = {rule.id: index for index, rule in enumerate(rules)}
    result = list(rules)
    for rule_id, override in policy.override.items():
        where = locate(loc, "override", rule_id)
        if rule_id not in by_id:
            known = ", ".join(sorted(by_id)) or "none"
            raise where.error(f"no rule {rule_id!r} to override (rules: {shorten(known, 200)})")
        index = by_id[rule_id]
        result[index] = _overridden(result[index], override, where)
    return result


def _overridden(rule: Rule, override: RuleOverride, where: Located) -> Rule:
    changes: dict[str, Any] = {}
    try:
        if override.action is not None:
            changes["action"] = dataclasses.replace(rule.action, **_given(override.action))
        classify: dict[str, Any] = {k: v for k, v in (("first_packets", override.first_packets),
                                                      ("after_packets", override.after_packets))
                                    if v is not None}
        if classify:
            if rule.classify is None:
                raise ValueError(f"rule {rule.id!r} has no classify to change "
                                 f"{' and '.join(classify)} of")
            changes["classify"] = dataclasses.replace(rule.classify, **classify)
        for key in ("verdict_s", "enforcement", "schedule"):
            if getattr(override, key) is not None:
                changes[key] = getattr(override, key)
        return dataclasses.replace(rule, **changes)
    except ValueError as exc:
        raise where.error(str(exc)) from None


def _given(values: Any) -> dict[str, Any]:
    return {f.name: getattr(values, f.name) for f in dataclasses.fields(values)
            if getattr(values, f.name) is not None}
