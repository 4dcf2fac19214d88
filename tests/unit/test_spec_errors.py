"""Bad specs get one clear error naming the file, the line and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import paths
from harness.spec.policy import load_policy
from harness.spec.schema import MAX_SPEC_BYTES, SpecError
from harness.spec.topology import load_topology

DEFAULT_TOPOLOGY = (paths.TOPOLOGIES / "ru-to-abroad.yaml").read_text()


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _topology_error(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_topology(_write(tmp_path, text))
    return caught.value


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _edited(old: str, new: str) -> str:
    assert old in DEFAULT_TOPOLOGY
    return DEFAULT_TOPOLOGY.replace(old, new, 1)


@pytest.mark.parametrize("path", sorted(paths.TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_topologies_load(path: Path) -> None:
    assert load_topology(path).name == path.stem


SOURCES_MD = Path(__file__).resolve().parents[2] / "docs" / "sources.md"
# A path outside the repository (the research notes callwall was built from).
OUTSIDE = re.compile(r"\.\./|\bshared\b|\.md\b")
SOURCE_IDS = re.compile(r"(S\d+(?:-S\d+)?(?:, S\d+(?:-S\d+)?)*): ")


def _cited_ids(text: str) -> set[str]:
    """The docs/sources.md entries a provenance line cites ("S1-S4, S13: ...")."""
    found = SOURCE_IDS.match(text)
    assert found is not None, f"{text!r} does not start with entry ids of docs/sources.md"
    ids: set[str] = set()
    for part in found[1].split(", "):
        first, _, last = part.partition("-")
        ids.update(f"S{n}" for n in range(int(first[1:]), int((last or first)[1:]) + 1))
    return ids


@pytest.mark.parametrize("path", paths.all_policies(), ids=lambda p: p.stem)
def test_shipped_policies_load_and_cite_the_research(path: Path) -> None:
    topology = load_topology(paths.TOPOLOGIES / "ru-to-abroad.yaml")
    policy = load_policy(path, topology.sets.keys())
    assert policy.name == path.stem
    entries = set(re.findall(r"^### (S\d+) ", SOURCES_MD.read_text(), re.MULTILINE))
    assert policy.provenance.sources
    for source in policy.provenance.sources:
        assert _cited_ids(source) <= entries, source
        assert not OUTSIDE.search(source), f"{source!r} points outside the repository"
    for by_strategy in policy.expect.values():
        for expectation in by_strategy.values():
            if expectation.basis == "report":
                assert _cited_ids(expectation.source + ": ") <= entries, expectation.source
    assert all(g.startswith("[S]") for g in policy.provenance.guesses)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    error = _topology_error(tmp_path, "name: x\nhosts: [a, b\nlinks: []\n")
    assert error.line == 3 and "YAML syntax error" in error.message
    assert str(error).startswith(f"{tmp_path / 'spec.yaml'}:3:")


def test_unknown_key_names_field_and_line(tmp_path: Path) -> None:
    text = _edited("    role: censor\n", "    role: censor\n    colour: red\n")
    error = _topology_error(tmp_path, text)
    assert error.field == "hosts.censor.colour"
    assert error.line == _line_of(text, "colour: red")
    assert "unknown field" in error.message


def test_wrong_type(tmp_path: Path) -> None:
    text = _edited("mapping: endpoint-independent}\n    routes: [{to: default, via: 198.18.0.1}]",
                   "mapping: endpoint-independent}\n    routes: 7")
    error = _topology_error(tmp_path, text)
    assert error.field == "hosts.cgnat.routes" and "expected a list" in error.message


def test_bad_cidr(tmp_path: Path) -> None:
    text = _edited("ip: 100.64.1.2/24}", "ip: 100.64.1.300/24}")
    error = _topology_error(tmp_path, text)
    assert error.field == "links[0].a.ip" and "100.64.1.300/24" in error.message
    assert error.line == _line_of(text, "100.64.1.300")


def test_address_outside_lab_ranges(tmp_path: Path) -> None:
    text = _edited("relays: [198.18.1.0/24]", "relays: [157.240.0.0/16]")
    error = _topology_error(tmp_path, text)
    assert error.field == "sets.relays[0]" and "outside the ranges" in error.message


def test_unknown_host_in_link(tmp_path: Path) -> None:
    text = _edited("b: {host: cgnat, ip: 100.64.1.1/24}", "b: {host: cgnot, ip: 100.64.1.1/24}")
    error = _topology_error(tmp_path, text)
    assert error.field == "links[0].b.host" and "cgnot" in error.message


def test_gateway_on_no_link(tmp_path: Path) -> None:
    text = _edited("routes: [{to: default, via: 100.64.1.1}]",
                   "routes: [{to: default, via: 100.64.9.1}]")
    error = _topology_error(tmp_path, text)
    assert error.field == "hosts.caller.routes[0].via"
    assert error.line == _line_of(text, "100.64.9.1")


def test_name_with_shell_metacharacters(tmp_path: Path) -> None:
    error = _topology_error(tmp_path, _edited("name: ru-to-abroad", "name: 'x; rm -rf /'"))
    assert error.field == "name" and "not a valid name" in error.message


def test_host_name_with_path_traversal(tmp_path: Path) -> None:
    error = _topology_error(tmp_path, _edited("  caller:\n", "  ../caller:\n"))
    assert error.field == "hosts.../caller" and "not a valid name" in error.message


def test_missing_required_field(tmp_path: Path) -> None:
    error = _topology_error(tmp_path, "name: x\ndescription: y\nhosts: {}\n")
    assert "missing required field 'links'" in error.message and error.line == 1


def test_huge_number(tmp_path: Path) -> None:
    policy = _write(tmp_path, (paths.POLICIES / "udp-throttle.yaml").read_text()
                    .replace("rate_kbit: 16", "rate_kbit: 99999999999999999999"))
    with pytest.raises(SpecError) as caught:
        load_policy(policy)
    assert caught.value.field == "rules[0].action.rate_kbit"
    assert "out of range" in caught.value.message


def test_aliases_are_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    error = _topology_error(tmp_path, bomb)
    assert "anchors and aliases" in error.message and error.line == 1


def test_oversized_file(tmp_path: Path) -> None:
    error = _topology_error(tmp_path, "# " + "x" * MAX_SPEC_BYTES + "\n")
    assert "limited to" in error.message


def test_duplicate_key(tmp_path: Path) -> None:
    text = _edited("name: ru-to-abroad", "name: ru-to-abroad\nname: other")
    error = _topology_error(tmp_path, text)
    assert error.field == "name" and "duplicate" in error.message and error.line == 2


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in _topology_error(tmp_path, "").message


def test_policy_set_not_bound_by_topology(tmp_path: Path) -> None:
    text = (paths.POLICIES / "turn-relay-block.yaml").read_text().replace("dst_set: relays",
                                                                     "dst_set: reflectors")
    with pytest.raises(SpecError) as caught:
        load_policy(_write(tmp_path, text), known_sets={"relays"})
    assert caught.value.field == "rules[0].match.dst_set"
    assert "reflectors" in caught.value.message


def test_policy_unknown_strategy(tmp_path: Path) -> None:
    text = (paths.POLICIES / "baseline.yaml").read_text().replace("turn-tcp:", "turn-sctp:")
    with pytest.raises(SpecError) as caught:
        load_policy(_write(tmp_path, text))
    assert caught.value.field == "expect.webrtc.turn-sctp"


def test_policy_rule_contradiction_points_at_rule(tmp_path: Path) -> None:
    text = (paths.POLICIES / "turn-relay-block.yaml").read_text().replace(
        "action: {kind: drop}", "action: {kind: drop, rate_kbit: 8}")
    with pytest.raises(SpecError) as caught:
        load_policy(_write(tmp_path, text))
    assert caught.value.field == "rules[0].action"
    assert "takes no rate_kbit" in caught.value.message


def test_port_range_out_of_order(tmp_path: Path) -> None:
    text = (paths.POLICIES / "turn-relay-block.yaml").read_text().replace(
        "dst_set: relays}", "dst_set: relays, dst_ports: ['3497-3478']}")
    with pytest.raises(SpecError) as caught:
        load_policy(_write(tmp_path, text))
    assert caught.value.field == "rules[0].match.dst_ports[0]"
