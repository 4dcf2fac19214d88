"""The `callwall` command's root-free parts: validation, policy display, listing
and the lab-scoped verbs' arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness import paths
from harness.cli import _parser, exec_command, main, summarize
from harness.spec.descriptor import descriptor_files, descriptors
from harness.spec.names import (
    ALL_STRATEGIES,
    PROFILE_DESCRIPTIONS,
    PROFILES,
    STRATEGY_DESCRIPTIONS,
)


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


def test_validate_without_files_checks_every_shipped_spec(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    out = capsys.readouterr().out.splitlines()
    shipped = [*paths.all_topologies(), paths.LINK_PRESETS, *paths.all_policies(),
               *descriptor_files()]
    assert out == [f"{path}: ok" for path in shipped]


# ---------------------------------------------------------------- callwall list

def listed(capsys: pytest.CaptureFixture[str], kind: str) -> list[tuple[str, str]]:
    assert main(["list", kind]) == 0
    rows = []
    for line in capsys.readouterr().out.splitlines():
        name, _, summary = line.partition("  ")
        rows.append((name, summary.strip()))
    return rows


def test_list_policies_one_line_each_by_the_name_policy_show_takes(
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = dict(listed(capsys, "policies"))
    assert list(rows) == [path.stem for path in paths.all_policies()]
    assert rows["baseline"] == "No restriction"
    assert rows["rkn-2025-calls"].startswith("The August 2025 \"partial restriction\" of")
    assert rows["rkn-2025-calls"].endswith("…")
    assert all(summary and "\n" not in summary for summary in rows.values())


def test_list_topologies(capsys: pytest.CaptureFixture[str]) -> None:
    rows = dict(listed(capsys, "topologies"))
    assert list(rows) == [path.stem for path in paths.all_topologies()]
    assert rows["ru-to-abroad"].startswith("A subscriber in Russia, behind the ISP's")


def test_list_profiles_and_strategies_in_declaration_order(
        capsys: pytest.CaptureFixture[str]) -> None:
    profiles = listed(capsys, "profiles")
    # The built-in profiles, then the client descriptors of endpoints/.
    assert [name for name, _ in profiles] == [*PROFILES, *descriptors().clients]
    assert dict(profiles)["webrtc"] == PROFILE_DESCRIPTIONS["webrtc"]
    strategies = listed(capsys, "strategies")
    assert [name for name, _ in strategies] == [*ALL_STRATEGIES, *descriptors().tunnels]
    assert dict(strategies)["turn-tls-443"] == STRATEGY_DESCRIPTIONS["turn-tls-443"]


def test_every_profile_and_strategy_is_described() -> None:
    assert list(PROFILE_DESCRIPTIONS) == list(PROFILES)
    assert list(STRATEGY_DESCRIPTIONS) == list(ALL_STRATEGIES)
    assert all(PROFILE_DESCRIPTIONS.values()) and all(STRATEGY_DESCRIPTIONS.values())


def test_list_refuses_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["list", "labs"])
    assert exit_.value.code == 2
    assert "invalid choice: 'labs'" in capsys.readouterr().err


def test_summarize_takes_the_first_sentence_and_cuts_at_a_word() -> None:
    assert summarize("No restriction. The censor forwards everything.") == "No restriction"
    assert summarize("Two\n  lines, folded.\n") == "Two lines, folded"
    long = "word " * 40
    cut = summarize(long, limit=30)
    assert len(cut) <= 30 and cut.endswith("…") and cut == "word " * 5 + "word…"


# ---------------------------------------------------------------- --lab, one way for every verb

LAB_VERBS = (["exec", "caller", "--", "true"], ["down"], ["policy", "apply", "baseline"],
             ["link", "set", "caller", "isp"])


@pytest.mark.parametrize("verb", LAB_VERBS, ids=lambda v: " ".join(v[:2]))
def test_every_lab_scoped_verb_takes_lab_before_its_arguments(verb: list[str]) -> None:
    head = 2 if verb[0] in ("policy", "link") else 1
    args = _parser().parse_args([*verb[:head], "--lab", "cw123", *verb[head:]])
    assert args.lab == "cw123" or exec_command(args)[0] == "cw123"


@pytest.mark.parametrize("verb", LAB_VERBS, ids=lambda v: " ".join(v[:2]))
def test_every_lab_scoped_verb_has_the_same_lab_help(verb: list[str]) -> None:
    head = 2 if verb[0] in ("policy", "link") else 1
    parser = _parser()
    subparser = _subparser(parser, verb[:head])
    (lab,) = [a for a in subparser._actions if "--lab" in a.option_strings]
    assert lab.metavar == "ID"
    assert lab.help == ("the lab to act on, by its id (callwall status); needed only when "
                        "several labs run")


def _subparser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    for word in words:
        (choices,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = choices.choices[word]
    return parser


@pytest.mark.parametrize("argv, lab, command", [
    (["exec", "--lab", "cw1", "caller", "--", "ping", "-c", "1", "x"], "cw1",
     ["ping", "-c", "1", "x"]),
    (["exec", "caller", "--lab", "cw2", "--", "ping", "-c", "1"], "cw2", ["ping", "-c", "1"]),
    (["exec", "caller", "--lab=cw3", "--", "ip", "addr"], "cw3", ["ip", "addr"]),
    (["exec", "caller", "--", "prog", "--lab", "theirs"], None, ["prog", "--lab", "theirs"]),
    (["exec", "caller", "ip", "addr"], None, ["ip", "addr"]),
    (["exec", "caller", "--"], None, []),
])
def test_exec_splits_our_lab_from_the_program(argv: list[str], lab: str | None,
                                              command: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert args.host == "caller"
    assert exec_command(args) == (lab, command)


# ---------------------------------------------------------------- --link-profile

@pytest.mark.parametrize("verb", (["run"], ["reproduce", "ru-2025-08-calls"]))
def test_run_and_reproduce_take_a_link_profile_as_the_matrix_names_it(verb: list[str]) -> None:
    assert _parser().parse_args(verb).link_profile == "ideal"
    args = _parser().parse_args([*verb, "--link-profile", "ru-mobile-lte"])
    assert args.link_profile == "ru-mobile-lte"


def test_an_unknown_link_profile_is_refused_with_the_known_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["run", "--link-profile", "5g-dream"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: '5g-dream'" in err and "'ru-mobile-lte'" in err


# ---------------------------------------------------------------- validate: matrices

def test_validate_reads_a_matrix_as_a_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    quick = paths.HOME / "scenarios" / "quick.yaml"
    assert main(["validate", str(quick)]) == 0
    assert capsys.readouterr().out.strip() == f"{quick}: ok"


def test_validate_names_a_matrix_call_no_policy_expects(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = tmp_path / "mine.yaml"
    matrix.write_text("name: mine\ndescription: one call\ntopology: ru-to-abroad\ngroups:\n"
                      "  - description: a strategy baseline does not expect of baresip\n"
                      "    policies: [baseline]\n    calls:\n      baresip: [turn-tls-443]\n")
    assert main(["validate", str(matrix)]) == 2
    err = capsys.readouterr().err
    assert f"{matrix}:" in err and "turn-tls-443" in err, err
