"""Includes and overrides: an ISP profile reuses a policy and varies its
parameters; cycles, unknown rule ids and duplicates are errors at the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import paths
from harness.spec.policy import Policy, load_policy
from harness.spec.schema import SpecError

HEAD = "name: {name}\ndescription: d\nprovenance: {{sources: [s], reported: r}}\n"
RULE = ("  - id: {id}\n    explain: e\n    match: {{protocol: udp}}\n"
        "    action: {{kind: police, rate_kbit: 16}}\n")


def write(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(HEAD.format(name=name) + body)
    return path


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_policy(path)
    return caught.value


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_shipped_profile_varies_rkn_2025_calls() -> None:
    base = load_policy(paths.policy_path("rkn-2025-calls"))
    profile = load_policy(paths.policy_path("isp-b-rkn-2025"))
    assert [r.id for r in profile.rules] == [r.id for r in base.rules]
    rules = {r.id: r for r in profile.rules}
    assert rules["police-whatsapp-media"].action.rate_kbit == 8
    stun = rules["stun-to-relays"]
    assert stun.classify is not None and stun.classify.first_packets == 5
    assert stun.verdict_s == 600
    assert rules["telegram-hello"] == {r.id: r for r in base.rules}["telegram-hello"]


def test_include_by_relative_path_and_own_rules_follow(tmp_path: Path) -> None:
    write(tmp_path, "base", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "include: [base.yaml]\nrules:\n" + RULE.format(id="b"))
    policy: Policy = load_policy(top)
    assert [r.id for r in policy.rules] == ["a", "b"]


def test_override_changes_action_parameters(tmp_path: Path) -> None:
    write(tmp_path, "base", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "include: [base.yaml]\n"
                "override: {a: {action: {rate_kbit: 32}, enforcement: {probability: 0.5}}}\n")
    (rule,) = load_policy(top).rules
    assert rule.action.rate_kbit == 32 and rule.probability == 0.5


def test_include_cycle_points_at_the_include(tmp_path: Path) -> None:
    write(tmp_path, "a", "include: [b.yaml]\n")
    b = write(tmp_path, "b", "include: [a.yaml]\n")
    error = error_of(tmp_path / "a.yaml")
    assert "include cycle: a.yaml -> b.yaml -> a.yaml" in error.message
    assert error.file == str(b) and error.field == "include[0]"
    assert error.line == line_of(b, "include:")


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, "a", "include: [a.yaml]\n")
    assert "include cycle" in error_of(path).message


def test_unknown_include(tmp_path: Path) -> None:
    path = write(tmp_path, "a", "include: [baseline, no-such-policy]\n")
    error = error_of(path)
    assert error.field == "include[1]" and "no policy 'no-such-policy'" in error.message


def test_include_name_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "a", "include: ['../../etc/passwd']\n")
    assert "not a valid name" in error_of(path).message


def test_unknown_rule_in_override(tmp_path: Path) -> None:
    write(tmp_path, "base", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "include: [base.yaml]\noverride:\n  b: {verdict_s: 5}\n")
    error = error_of(top)
    assert error.field == "override.b" and "no rule 'b' to override (rules: a)" in error.message
    assert error.line == line_of(top, "b: {verdict_s")


def test_override_that_breaks_the_rule_points_at_the_override(tmp_path: Path) -> None:
    write(tmp_path, "base", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "include: [base.yaml]\noverride:\n"
                "  a: {action: {loss_pct: 5}}\n")
    error = error_of(top)
    assert error.field == "override.a" and "police takes no loss_pct" in error.message


def test_override_of_classify_without_classify(tmp_path: Path) -> None:
    write(tmp_path, "base", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "include: [base.yaml]\noverride: {a: {first_packets: 5}}\n")
    assert "has no classify" in error_of(top).message


def test_duplicate_rule_ids_across_includes(tmp_path: Path) -> None:
    write(tmp_path, "one", "rules:\n" + RULE.format(id="a"))
    write(tmp_path, "two", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "include:\n  - one.yaml\n  - two.yaml\n")
    error = error_of(top)
    assert error.field == "include[1]" and "already defined" in error.message
    assert error.line == line_of(top, "two.yaml")


def test_own_rule_repeating_an_included_id(tmp_path: Path) -> None:
    write(tmp_path, "one", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "include: [one.yaml]\nrules:\n" + RULE.format(id="a"))
    error = error_of(top)
    assert error.field == "rules[0].id" and "used twice" in error.message


def test_mode_must_agree(tmp_path: Path) -> None:
    write(tmp_path, "open", "rules:\n" + RULE.format(id="a"))
    top = write(tmp_path, "top", "mode: allowlist\ninclude: [open.yaml]\n")
    assert "has mode blocklist; this policy has mode allowlist" in error_of(top).message


def test_errors_inside_an_included_file_name_that_file(tmp_path: Path) -> None:
    base = write(tmp_path, "base", "rules:\n" + RULE.format(id="a").replace("16", "-1"))
    top = write(tmp_path, "top", "include: [base.yaml]\n")
    error = error_of(top)
    assert error.file == str(base) and "rate_kbit between" in error.message


def test_unbound_set_in_an_included_rule_points_at_its_file(tmp_path: Path) -> None:
    rule = RULE.format(id="a").replace("{protocol: udp}", "{protocol: udp, dst_set: nowhere}")
    base = write(tmp_path, "base", "rules:\n" + rule)
    top = write(tmp_path, "top", "include: [base.yaml]\n")
    with pytest.raises(SpecError) as caught:
        load_policy(top, known_sets={"relays"})
    assert caught.value.file == str(base) and caught.value.field == "rules[0].match.dst_set"
