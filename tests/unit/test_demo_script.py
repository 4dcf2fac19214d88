"""Demo scripts (scenarios/demos): the shipped ones load and cite real
sources; a bad one gets one error naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.demo.runner import ATTEMPT_MARGIN_S, plan_phases
from harness.demo.sources import load_sources
from harness.spec.demo import (
    DEFAULT_DEMO,
    MIN_PHASE_S,
    all_demos,
    demo_path,
    load_demo,
)
from harness.spec.schema import SpecError

SOURCES = load_sources(Path(__file__).resolve().parents[2] / "docs" / "sources.md")
DEFAULT_TEXT = demo_path(DEFAULT_DEMO).read_text()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, old: str, new: str) -> SpecError:
    assert old in DEFAULT_TEXT, old
    with pytest.raises(SpecError) as caught:
        load_demo(_write(tmp_path, DEFAULT_TEXT.replace(old, new, 1)))
    return caught.value


def _line_of(needle: str) -> int:
    return next(i for i, line in enumerate(DEFAULT_TEXT.splitlines(), 1) if needle in line)


def test_there_is_a_default_and_a_telegram_script() -> None:
    names = {p.stem for p in all_demos()}
    assert {DEFAULT_DEMO, "telegram-2025"} <= names


@pytest.mark.parametrize("path", all_demos(), ids=lambda p: p.stem)
def test_shipped_scripts_load_and_cite_known_sources(path: Path) -> None:
    script = load_demo(path)
    assert script.name == path.stem
    for phase in script.phases:
        unknown = [s for s in phase.sources if s not in SOURCES]
        assert not unknown, f"{path.name}: phase {phase.id} cites {unknown}, not in sources.md"
        for source in phase.sources:  # the paragraph names what it rests on
            assert source in phase.explain, f"{phase.id}: {source} is not cited in its text"


def test_the_default_script_declares_the_four_phases_of_the_class() -> None:
    script = load_demo(demo_path(DEFAULT_DEMO))
    baseline, restriction, dpi, vpn = script.phases
    assert baseline.expect.call is not None and baseline.expect.call.min_mos == 4.0
    # The restriction degrades flows it classifies at their start: a new call
    # shows it (MOS < 3), the running call only has to keep its media.
    assert restriction.attempt is not None and restriction.expect.attempt is not None
    assert restriction.expect.attempt.max_mos == 3.0
    assert restriction.expect.call is not None and restriction.expect.call.media is True
    assert dpi.attempt is not None and dpi.expect.attempt is not None
    assert dpi.expect.attempt.media is False
    assert vpn.hang_up and vpn.attempt is not None and vpn.attempt.strategy == "wireguard"
    assert vpn.expect.attempt is not None and vpn.expect.attempt.min_mos == 4.0
    assert script.call_phases() == [baseline, restriction, dpi]


def test_an_unknown_policy_is_named_at_its_line(tmp_path: Path) -> None:
    error = _error(tmp_path, "policy: ru-2025-08-calls", "policy: no-such-policy")
    assert error.line == _line_of("policy: ru-2025-08-calls")
    assert error.field == "phases[1].policy" and "no-such-policy" in error.message


def test_a_profile_that_cannot_take_the_attempt_strategy(tmp_path: Path) -> None:
    error = _error(tmp_path, "attempt: {strategy: wireguard, at_s: 0}",
                   "attempt: {strategy: turn-tls-443, at_s: 0}")
    assert error.line == _line_of("attempt: {strategy: wireguard")
    assert error.field == "phases[3].attempt.strategy"
    assert "cannot be placed with 'turn-tls-443'" in error.message


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("sources: [S20]", "sources: [twenty]", "phases[0].sources", "not a source id"),
    ("sources: [S20]", "sources: []", "phases[0].sources", "at least one source"),
    ("duration_s: 20", "duration_s: 1", "phases[0].duration_s", "out of range"),
    ("call: {media: true, min_mos: 4.0}", "call: {media: true, min_mos: 6}",
     "phases[0].expect.call.min_mos", "outside 1..5"),
    ("attempt: {media: false}", "attempt: {media: false, max_mos: 2}",
     "phases[2].expect.attempt", "no MOS to bound"),
    ("id: restriction", "id: baseline", "phases[1].id", "used twice"),
    ("call: {profile: whatsapp-like, strategy: direct}", "call: {profile: skype}", "call",
     "unknown profile"),
    ("    policy: baseline\n", "", "phases[0]", "first phase must name a policy"),
    ("    attempt: {strategy: direct, at_s: 1}\n", "", "phases[1].expect.attempt",
     "places no attempt"),
])
def test_bad_fields_name_file_line_and_field(tmp_path: Path, old: str, new: str, field: str,
                                              message: str) -> None:
    error = _error(tmp_path, old, new)
    assert error.file.endswith("demo.yaml") and error.line is not None
    assert error.field.startswith(field)
    assert message in error.message


def test_expecting_of_a_call_that_was_hung_up(tmp_path: Path) -> None:
    error = _error(tmp_path, "      attempt: {media: true, min_mos: 4.0}",
                   "      attempt: {media: true, min_mos: 4.0}\n      call: {media: true}")
    assert error.field == "phases[3].expect.call" and "hung up" in error.message


def test_phases_are_scaled_but_an_attempt_gets_its_setup_timeout() -> None:
    script = load_demo(demo_path(DEFAULT_DEMO))
    normal = plan_phases(script, 1.0)
    assert [p.duration_s for p in normal] == [20, 25, 20, 25]
    assert [p.offset_s for p in normal] == [0, 20, 45, 65]
    assert [p.policy for p in normal] == ["baseline", "ru-2025-08-calls", "dpi-stun-drop",
                                          "dpi-stun-drop"]
    fast = plan_phases(script, 10.0)
    assert fast[0].duration_s == MIN_PHASE_S
    dpi = script.phases[2]
    assert dpi.attempt is not None
    assert fast[2].duration_s == pytest.approx(dpi.attempt.at_s / 10 + dpi.attempt.setup_timeout_s
                                               + ATTEMPT_MARGIN_S)
    assert fast[3].offset_s == pytest.approx(fast[0].duration_s + fast[1].duration_s
                                             + fast[2].duration_s)


def test_validate_reads_a_script_anywhere_and_names_the_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    from harness.cli import EXIT_BAD_INPUT, main

    path = _write(tmp_path, DEFAULT_TEXT.replace("duration_s: 20", "duration_s: 2", 1))
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert f"{path}:{_line_of('duration_s: 20')}: phases[0].duration_s:" in error
    assert main(["validate", str(demo_path(DEFAULT_DEMO))]) == 0
