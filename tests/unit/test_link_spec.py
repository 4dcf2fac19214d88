"""Link impairments in topology specs and the presets file: parsed through the
one schema, every error `file:line: field: message`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness import paths
from harness.link.apply import (
    find_link,
    interface_on_link,
    topology_impairments,
    topology_seed,
)
from harness.spec.impairment import GilbertElliott, Impairment
from harness.spec.presets import PRESETS_FILE, load_preset_file, presets
from harness.spec.schema import SpecError
from harness.spec.topology import load_topology

BASE = (paths.TOPOLOGIES / "ru-to-abroad.yaml").read_text()
FIRST_LINK = "  - {a: {host: caller, ip: 100.64.1.2/24}, b: {host: cgnat, ip: 100.64.1.1/24}}"


def _with_impair(tmp_path: Path, impair: str, extra: str = "") -> Path:
    assert FIRST_LINK in BASE
    text = BASE.replace(FIRST_LINK, FIRST_LINK[:-1] + f", impair: {impair}}}", 1) + extra
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_directions_presets_and_overrides(tmp_path: Path) -> None:
    path = _with_impair(tmp_path, "{both: {preset: intercontinental}, "
                                  "a_to_b: {preset: ru-mobile-lte, delay_ms: 40}}")
    topology = load_topology(path)
    wanted = {(i, d): imp for i, d, imp in topology_impairments(topology)}
    assert set(wanted) == {(0, 0), (0, 1)}
    assert wanted[(0, 0)].delay_ms == 40
    assert wanted[(0, 0)].gemodel == presets()["ru-mobile-lte"].impairment.gemodel
    assert wanted[(0, 1)] == replace(presets()["intercontinental"].impairment,
                                     seed=topology_seed(0, 1))
    assert topology.link_backend == "auto"


def test_each_direction_draws_its_own_random_sequence_unless_a_seed_is_given(
        tmp_path: Path) -> None:
    both = load_topology(_with_impair(tmp_path, "{both: {preset: ru-mobile-lte}}"))
    seeds = {(i, d): imp.seed for i, d, imp in topology_impairments(both)}
    assert seeds == {(0, 0): topology_seed(0, 0), (0, 1): topology_seed(0, 1)}
    assert len(set(seeds.values())) == 2
    given = load_topology(_with_impair(tmp_path, "{both: {preset: ru-mobile-lte, seed: 7}}"))
    assert {imp.seed for _, _, imp in topology_impairments(given)} == {7}


def test_inline_parameters(tmp_path: Path) -> None:
    path = _with_impair(tmp_path, "{b_to_a: {delay_ms: 5, gemodel: {p_pct: 1, r_pct: 20}}}",
                        "link_backend: userspace\n")
    topology = load_topology(path)
    (index, direction, impairment), = topology_impairments(topology)
    assert (index, direction) == (0, 1)
    assert impairment.gemodel == GilbertElliott(1, 20)
    assert topology.link_backend == "userspace"


@pytest.mark.parametrize(("impair", "field", "words"), [
    ("{a_to_b: {preset: ru-mobile-ltx}}", "links[0].impair.a_to_b.preset",
     "unknown preset 'ru-mobile-ltx'"),
    ("{a_to_b: {delay_ms: 5, jitter_ms: 9}}", "links[0].impair.a_to_b.jitter_ms",
     "larger than delay_ms"),
    ("{a_to_b: {loss_pct: 150}}", "links[0].impair.a_to_b.loss_pct", "percentage"),
    ("{a_to_b: {dleay_ms: 5}}", "links[0].impair.a_to_b.dleay_ms", "unknown field"),
    ("{a_to_b: {gemodel: {p_pct: 0}}}", "links[0].impair.a_to_b.gemodel", "p_pct: must be"),
    ("{}", "links[0].impair", "give a_to_b, b_to_a or both"),
    ("{sideways: {delay_ms: 1}}", "links[0].impair.sideways", "unknown field"),
])
def test_errors_point_at_the_line(tmp_path: Path, impair: str, field: str, words: str) -> None:
    path = _with_impair(tmp_path, impair)
    with pytest.raises(SpecError) as caught:
        load_topology(path)
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), _line(path, "impair:"), field)
    assert words in error.message


def test_bad_backend_choice(tmp_path: Path) -> None:
    path = _with_impair(tmp_path, "{both: {preset: intercontinental}}", "link_backend: tc\n")
    with pytest.raises(SpecError, match="link_backend: expected one of auto, netem, userspace"):
        load_topology(path)


def test_shipped_presets_state_their_grounds() -> None:
    shipped = load_preset_file(PRESETS_FILE)
    assert {"ru-mobile-lte", "ru-fixed-broadband", "intercontinental"} <= set(shipped)
    for preset in shipped.values():
        assert preset.sources or preset.assumptions
        assert all("assumption" in a for a in preset.assumptions)


def test_preset_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "presets.yaml"
    bad.write_text("presets:\n  x-lan:\n    description: d\n    impairment: {delay_ms: 1}\n")
    with pytest.raises(SpecError, match=r"presets.yaml:3: presets.x-lan: a preset needs"):
        load_preset_file(bad)
    bad.write_text("presets:\n  x:\n    description: d\n    assumptions: [a guess]\n"
                   "    impairment: {loss_pct: 1, gemodel: {p_pct: 1}}\n")
    with pytest.raises(SpecError, match=r":5: presets.x.impairment: loss_pct: give either"):
        load_preset_file(bad)


def test_demo_topology_impairs_the_access_and_the_long_haul() -> None:
    topology = load_topology(paths.TOPOLOGIES / "ru-to-abroad-lte.yaml")
    wanted = {(topology.links[i].ends[d].host, topology.links[i].ends[1 - d].host): imp
              for i, d, imp in topology_impairments(topology)}
    lte = presets()["ru-mobile-lte"].impairment
    haul = presets()["intercontinental"].impairment
    assert {k: replace(v, seed=1) for k, v in wanted.items()} == {
        ("caller", "cgnat"): lte, ("cgnat", "caller"): lte,
        ("censor", "inet"): haul, ("inet", "censor"): haul}
    assert len({imp.seed for imp in wanted.values()}) == 4


def test_link_lookup() -> None:
    topology = load_topology(paths.TOPOLOGIES / "ru-to-abroad.yaml")
    assert find_link(topology, "caller", "cgnat") == (0, 0)
    assert find_link(topology, "inet", "censor") == (2, 1)
    assert interface_on_link(topology, "censor", 2) == "eth1"
    assert interface_on_link(topology, "inet", 2) == "eth0"
    with pytest.raises(ValueError, match="no link joins caller and inet"):
        find_link(topology, "caller", "inet")


def test_command_line_backend_overrides_the_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.link.selection import ENV_OVERRIDE, NoLinkBackend, requested_backend

    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    assert requested_backend("netem") == "netem"
    monkeypatch.setenv(ENV_OVERRIDE, "userspace")
    assert requested_backend("netem") == "userspace"
    monkeypatch.setenv(ENV_OVERRIDE, "tc")
    with pytest.raises(NoLinkBackend, match="CALLWALL_LINK_BACKEND='tc': expected one of"):
        requested_backend("auto")


def test_link_set_arguments_build_the_impairment() -> None:
    from harness import cli

    def parsed(*argv: str) -> object:
        args = cli._parser().parse_args(["link", "set", *argv])
        return cli._impairment_from_args(args)

    assert parsed("--lab", "cw123456", "caller", "cgnat", "--delay", "50ms", "--jitter", "5ms",
                  "--loss", "1%", "--rate", "2mbit", "--allow-reorder", "--seed", "9") == \
        Impairment(delay_ms=50, jitter_ms=5, loss_pct=1, rate_kbit=2000, keep_order=False,
                   seed=9)
    lte = parsed("caller", "cgnat", "--preset", "ru-mobile-lte", "--gemodel", "2%,25%")
    assert lte == presets()["ru-mobile-lte"].impairment.with_overrides(
        gemodel=GilbertElliott(2, 25))
    with pytest.raises(ValueError, match="^--rate: 'fast' is not a rate"):
        parsed("caller", "cgnat", "--rate", "fast")
