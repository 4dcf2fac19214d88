"""The `callwall` command's root-free parts: validation and policy display."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import paths
from harness.cli import main


def test_validate_accepts_shipped_specs(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in [*paths.TOPOLOGIES.glob("*.yaml"), *paths.all_policies()]]
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == len(files)


def test_bad_spec_exits_2_with_file_line_field(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "policies" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("name: bad\ndescription: x\nprovenance: {sources: [], reported: r}\n"
                   "rules:\n  - id: r1\n    explain: e\n    action: {kind: explode}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7: rules[0].action.kind: expected one of drop, police" in err


def test_policy_show_explains_and_prints_the_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "show", "dpi-stun-drop"]) == 0
    out = capsys.readouterr().out
    assert "stun-at-flow-start: drop UDP packets" in out
    assert "table inet callwall {" in out


def test_unknown_policy_name_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "show", "no-such-policy"]) == 2
    assert "known: baseline, dpi-stun-drop" in capsys.readouterr().err
