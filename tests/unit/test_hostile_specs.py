"""Malformed or malicious specs, through the `callwall` entry point: each gets
exit code 2 and one line `callwall: file:line: field: message` on stderr, and
`up`/`run` create nothing.

Specs have no include mechanism, so there are no include cycles to detect: an
`include:` key is refused like any unknown field.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from harness import cli, paths
from harness.cli import main
from harness.spec.schema import MAX_DEPTH, MAX_SPEC_BYTES

TOPOLOGY = (paths.TOPOLOGIES / "ru-to-abroad.yaml").read_text()
THROTTLE = (paths.POLICIES / "udp-throttle.yaml").read_text()  # police, rate and burst
DPI = (paths.POLICIES / "dpi-stun-drop.yaml").read_text()  # classify, verdict_s
BLOCK = (paths.POLICIES / "turn-relay-block.yaml").read_text()  # dst_set
SHELL = ["; rm -rf /", "$(id)", "`id`", "a|b", "x && reboot", "../../etc", "..", "/etc/passwd"]
ERROR = re.compile(r"callwall: (?P<file>.+?):(?P<line>\d+): (?P<rest>.+)\n")


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    for folder in ("topologies", "policies"):
        (tmp_path / folder).mkdir()
    return tmp_path


def edited(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def write(spec_dir: Path, kind: str, content: str | bytes) -> Path:
    path = spec_dir / kind / "hostile.yaml"
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


class Rejection:
    """`callwall: FILE:LINE: [FIELD: ]MESSAGE`, split at the line."""

    def __init__(self, line: int, rest: str) -> None:
        self.line = line
        self.rest = rest

    def names(self, field: str, message: str = "") -> bool:
        return self.rest.startswith(f"{field}: ") and message in self.rest[len(field) + 2:]

    def __repr__(self) -> str:
        return f"line {self.line}: {self.rest}"


def rejected(capsys: pytest.CaptureFixture[str], argv: list[str], path: Path) -> Rejection:
    """Run callwall; it must exit 2 with exactly one error line naming the file and line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    found = ERROR.fullmatch(err)
    assert found is not None, err
    assert found["file"] == str(path)
    assert "\x1b" not in err and len(err) < 2000
    return Rejection(int(found["line"]), found["rest"])


def topology_error(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                   content: str | bytes) -> Rejection:
    path = write(spec_dir, "topologies", content)
    return rejected(capsys, ["validate", str(path)], path)


def policy_error(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                 content: str | bytes) -> Rejection:
    path = write(spec_dir, "policies", content)
    return rejected(capsys, ["validate", str(path)], path)


# ---------------------------------------------------------------- YAML itself

def test_yaml_syntax_error(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "relays: [198.18.1.0/24]", "relays: [198.18.1.0/24")
    error = topology_error(spec_dir, capsys, text)
    assert "YAML syntax error" in error.rest
    assert error.line >= line_of(text, "relays: [")


def test_tab_indentation(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "    role: caller\n", "\trole: caller\n")
    error = topology_error(spec_dir, capsys, text)
    assert "YAML syntax error" in error.rest and "\\t" in error.rest
    assert error.line == line_of(text, "\trole: caller")


def test_multi_document_file(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "---\n" + TOPOLOGY + "---\n" + TOPOLOGY
    error = topology_error(spec_dir, capsys, text)
    assert "second YAML document" in error.rest
    assert error.line == len(TOPOLOGY.splitlines()) + 2


def test_billion_laughs(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]"
               for i in range(8)]
    error = topology_error(spec_dir, capsys, "\n".join(levels) + "\n")
    assert "anchors and aliases" in error.rest and error.line == 1


def test_an_anchor_alone_is_refused(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "name: ru-to-abroad", "name: &n ru-to-abroad")
    assert "anchors and aliases" in topology_error(spec_dir, capsys, text).rest


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:os.system ['id']",
    "!!python/object:harness.spec.topology.Topology {}",
    "!!python/name:os.system",
    "!!binary aWQ=",
    "!!str ru-to-abroad",
    "!local ru-to-abroad",
])
def test_tags_are_refused(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                          tagged: str) -> None:
    text = edited(TOPOLOGY, "name: ru-to-abroad", f"name: {tagged}")
    error = topology_error(spec_dir, capsys, text)
    assert "YAML tags" in error.rest and error.line == 1


def test_mapping_key_that_is_a_list(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "  caller:\n", "  ? [caller, callee]\n  :\n")
    error = topology_error(spec_dir, capsys, text)
    assert error.names("hosts.?", "plain strings")
    assert error.line == line_of(text, "[caller, callee]")


def test_duplicate_host(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "  callee:\n", "  caller:\n    role: caller\n  callee:\n")
    error = topology_error(spec_dir, capsys, text)
    assert error.names("hosts.caller", "duplicate key")
    lines = text.splitlines()
    assert error.line == lines.index("  caller:", lines.index("  caller:") + 1) + 1


def test_deep_nesting(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "description: >\n", "description: " + "[" * 10_000 + "]" * 10_000
                  + "\nx: >\n")
    error = topology_error(spec_dir, capsys, text)
    assert f"more than {MAX_DEPTH} deep" in error.rest and error.line == 2


@pytest.mark.parametrize("nested", ["- " * 10_000 + "x", "{a: " * 10_000 + "}" * 10_000,
                                    "".join(f"{' ' * i}k:\n" for i in range(200))])
def test_deep_nesting_of_every_kind(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                                    nested: str) -> None:
    assert "deep" in policy_error(spec_dir, capsys, nested).rest


# ---------------------------------------------------------------- bytes and sizes

def test_nul_byte(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "description: the subscriber", "description: the\0subscriber")
    error = topology_error(spec_dir, capsys, text)
    assert "U+0000" in error.rest and error.line == line_of(text, "\0")


def test_escaped_nul_in_a_name(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = topology_error(spec_dir, capsys, edited(TOPOLOGY, "name: ru-to-abroad",
                                                    'name: "ru\\0abroad"'))
    assert error.names("name", "not a valid name")


def test_non_utf8_bytes(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = edited(TOPOLOGY, "the contact abroad", "the contact abroad \xe9").encode("latin-1")
    error = topology_error(spec_dir, capsys, data)
    assert "not UTF-8" in error.rest and error.line == line_of(TOPOLOGY, "the contact abroad")


def test_ten_megabyte_file_fails_fast(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(spec_dir, "topologies", TOPOLOGY + "# " + "x" * 10_000_000 + "\n")
    started = time.monotonic()
    assert main(["validate", str(path)]) == 2
    assert time.monotonic() - started < 1.0
    err = capsys.readouterr().err
    assert err.startswith(f"callwall: {path}: file is") and f"limited to {MAX_SPEC_BYTES}" in err


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "/"])
def test_special_files_are_not_read(capsys: pytest.CaptureFixture[str], special: str) -> None:
    assert main(["validate", special]) == 2
    assert capsys.readouterr().err == f"callwall: {special}: not a regular file\n"


# ---------------------------------------------------------------- types and values

@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("links:\n", "links: 7\nx:\n", "links", "expected a list, got a int"),
    ("description: the subscriber in Russia", "description: [a, b]",
     "hosts.caller.description", "expected a single value"),
    ("role: caller", "role: {a: 1}", "hosts.caller.role", "expected a single value"),
    ("role: caller", "role: boss", "hosts.caller.role", "expected one of caller, callee"),
    ("host: callee, ip", "host: 7, ip", "links[7].a.host", "expected a string, got a int"),
    ("host: callee, ip", "host: no, ip", "links[7].a.host", "got a bool 'no' (quote it"),
    ("{outside: 198.18.0.2,", "{outside: yes,", "hosts.cgnat.nat.outside", "not an IPv4"),
    ("name: ru-to-abroad", "name: 2024-01-01", "name", "got a timestamp"),
])
def test_wrong_types_in_topologies(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                                   old: str, new: str, field: str, message: str) -> None:
    text = edited(TOPOLOGY, old, new)
    error = topology_error(spec_dir, capsys, text)
    assert error.names(field, message)
    assert error.line == line_of(text, new.splitlines()[0])


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("verdict_s: 120", 'verdict_s: "120"', "rules[0].verdict_s",
     "expected an integer"),
    ("verdict_s: 120", "verdict_s: 1.5", "rules[0].verdict_s",
     "expected an integer"),
    ("signatures: [{kind: stun}]", 'stun_cookie: "true"', "rules[0].classify.stun_cookie",
     "expected true or false"),
    ("scope: flow", "scope: [flow]", "rules[0].scope", "expected a single value"),
    ("rules:\n", "rules: {}\nx:\n", "rules", "expected a list, got a mapping"),
])
def test_wrong_types_in_policies(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                                 old: str, new: str, field: str, message: str) -> None:
    error = policy_error(spec_dir, capsys, edited(DPI, old, new))
    assert error.names(field, message)


@pytest.mark.parametrize(("text", "old", "new", "field"), [
    (TOPOLOGY, "name: ru-to-abroad", "name: ru-to-abroad\ncolour: red", "colour"),
    (TOPOLOGY, "role: censor", "role: censor\n    colour: red", "hosts.censor.colour"),
    (BLOCK, "action: {kind: drop}", "action: {kind: drop, speed: 1}", "rules[0].action.speed"),
    (TOPOLOGY, "name: ru-to-abroad", "name: ru-to-abroad\ninclude: ../../etc/passwd",
     "include"),
    (TOPOLOGY, "name: ru-to-abroad", "name: ru-to-abroad\n<<: {a: 1}", "<<"),
])
def test_unknown_keys_and_include(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                                  text: str, old: str, new: str, field: str) -> None:
    kind = "topologies" if text is TOPOLOGY else "policies"
    path = write(spec_dir, kind, edited(text, old, new))
    error = rejected(capsys, ["validate", str(path)], path)
    assert error.names(field, "unknown field")
    assert error.line == line_of(edited(text, old, new), field.rsplit(".", 1)[-1] + ":")


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("relays: [198.18.1.0/24]", "relays: [198.18.1.0/33]", "sets.relays[0]", "not a valid"),
    ("relays: [198.18.1.0/24]", "relays: [198.18.1.1/24]", "sets.relays[0]", "host bits"),
    ("relays: [198.18.1.0/24]", "relays: [198.18.1.0/24/8]", "sets.relays[0]", "not a valid"),
    ("relays: [198.18.1.0/24]", "relays: ['::1/128']", "sets.relays[0]", "not a valid"),
    ("relays: [198.18.1.0/24]", "relays: [0.0.0.0/0]", "sets.relays[0]", "outside the ranges"),
    ("ip: 100.64.1.2/24}", "ip: 100.64.1.2}", "links[0].a.ip", "needs a prefix length"),
    ("ip: 100.64.1.2/24}", "ip: 100.064.1.2/24}", "links[0].a.ip", "not an IPv4 address"),
    ("{to: default, via: 100.64.1.1}", "{to: 100.64.1.0/99, via: 100.64.1.1}",
     "hosts.caller.routes[0].to", "not a valid IPv4 network"),
])
def test_bad_cidrs(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                   old: str, new: str, field: str, message: str) -> None:
    text = edited(TOPOLOGY, old, new)
    error = topology_error(spec_dir, capsys, text)
    assert error.names(field, message)
    assert error.line == line_of(text, new)


@pytest.mark.parametrize(("value", "message"), [
    ("1000000000000000000000000000000", "out of range"),  # 10**30
    ("-1000000000000000000000000000000", "out of range"),
    ("9" * 5000, "too long for a number"),
    ("017", "not a plain decimal"),  # YAML 1.1 octal: 15
    ("0x1F", "not a plain decimal"),
    ("0b11", "not a plain decimal"),
    ("1:30", "not a plain decimal"),  # YAML 1.1 sexagesimal: 90
    ("4000.5", "expected an integer"),
    ("0o17", "expected an integer"),  # a string to YAML 1.1
])
def test_odd_and_huge_integers(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                               value: str, message: str) -> None:
    text = edited(THROTTLE, "burst_bytes: 4000", f"burst_bytes: {value}")
    error = policy_error(spec_dir, capsys, text)
    assert error.names("rules[0].action.burst_bytes", message)
    assert error.line == line_of(text, "burst_bytes")


@pytest.mark.parametrize(("value", "message"), [
    ("1.0e+308", "out of range"),
    ("1.0e+999", "out of range"),  # inf once read
    ("99999999999999999999", "out of range"),
    (".inf", "not a finite number"),
    ("-.inf", "not a finite number"),
    (".nan", "not a finite number"),
    (".NaN", "not a finite number"),
    ("1e308", "write e.g. 1.0e+3"),  # YAML 1.1 reads this as a string
    ("0x10", "not a plain decimal"),
    ("1:30.5", "not a plain decimal"),
])
def test_huge_and_non_finite_floats(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                                    value: str, message: str) -> None:
    text = edited(THROTTLE, "rate_kbit: 16", f"rate_kbit: {value}")
    error = policy_error(spec_dir, capsys, text)
    assert error.names("rules[0].action.rate_kbit", message)
    assert error.line == line_of(text, "rate_kbit")


@pytest.mark.parametrize(("text", "old", "new", "field", "message"), [
    (THROTTLE, "rate_kbit: 16", "rate_kbit: -16", "rules[0].action", "rate_kbit between"),
    (THROTTLE, "burst_bytes: 4000", "burst_bytes: -1", "rules[0].action", "burst_bytes must"),
    (DPI, "verdict_s: 120", "verdict_s: -5", "rules[0]", "verdict_s must"),
    (DPI, "first_packets: 3", "first_packets: -3", "rules[0].classify", "first_packets must"),
    (THROTTLE, "min_mos: 4.0, why: \"TCP", "min_mos: -4.0, why: \"TCP", "expect.webrtc.turn-tcp",
     "MOS bounds"),
    (BLOCK, "dst_set: relays}", "dst_set: relays, dst_ports: [-5]}",
     "rules[0].match.dst_ports[0]", "not a port"),
    (BLOCK, "dst_set: relays}", "dst_set: relays, dst_ports: [0]}",
     "rules[0].match.dst_ports[0]", "ports run from 1 to 65535"),
])
def test_negative_numbers(spec_dir: Path, capsys: pytest.CaptureFixture[str], text: str,
                          old: str, new: str, field: str, message: str) -> None:
    error = policy_error(spec_dir, capsys, edited(text, old, new))
    assert error.names(field, message)


@pytest.mark.parametrize("ports", ["[{first: 0, last: 99999}]", "['٣٤٧٨']", "['3²']",
                                   "['3478-3497-3500']", "[3_478]"])
def test_port_ranges_are_plain_ascii_text(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                                          ports: str) -> None:
    text = edited(BLOCK, "dst_set: relays}", f"dst_set: relays, dst_ports: {ports}}}")
    error = policy_error(spec_dir, capsys, text)
    assert error.names("rules[0].match.dst_ports[0]")


def test_port_ranges_and_underscored_numbers_still_load(
        spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(BLOCK, "dst_set: relays}", "dst_set: relays, dst_ports: [3478, 5000-5100]}")
    path = write(spec_dir, "policies", text)
    assert main(["validate", str(path)]) == 0
    path = write(spec_dir, "policies", edited(THROTTLE, "burst_bytes: 4000", "burst_bytes: 4_000"))
    assert main(["validate", str(path)]) == 0


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("payload", SHELL)
@pytest.mark.parametrize(("text", "old", "template", "field"), [
    (TOPOLOGY, "name: ru-to-abroad", "name: '{}'", "name"),
    (TOPOLOGY, "relays: [198.18.1.0/24]", "'{}': [198.18.1.0/24]", "sets.{}"),
    (THROTTLE, "name: udp-throttle", "name: '{}'", "name"),
    (THROTTLE, "id: police-udp", "id: '{}'", "rules[0].id"),
    (BLOCK, "dst_set: relays", "dst_set: '{}'", "rules[0].match.dst_set"),
    (BLOCK, "turn-tcp:", "'{}':", "expect.webrtc.{}"),
])
def test_names_with_shell_metacharacters_and_path_traversal(
        spec_dir: Path, capsys: pytest.CaptureFixture[str], text: str, old: str,
        template: str, field: str, payload: str) -> None:
    kind = "topologies" if text is TOPOLOGY else "policies"
    changed = edited(text, old, template.format(payload))
    path = write(spec_dir, kind, changed)
    error = rejected(capsys, ["validate", str(path)], path)
    assert error.names(field.format(payload), "not a valid name")
    assert error.line == line_of(changed, payload)


@pytest.mark.parametrize("payload", SHELL)
def test_host_names_with_shell_metacharacters(spec_dir: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              payload: str) -> None:
    text = edited(TOPOLOGY, "  caller:\n", f"  '{payload}':\n")
    error = topology_error(spec_dir, capsys, text)
    assert error.names(f"hosts.{payload}", "not a valid name")
    text = edited(TOPOLOGY, "{host: caller,", f"{{host: '{payload}',")
    error = topology_error(spec_dir, capsys, text)
    assert error.names("links[0].a.host", "unknown host")


@pytest.mark.parametrize("name", ['"ru-to-abroad\\n"', "|\n  ru-to-abroad", "' ru-to-abroad'",
                                  "RU-to-abroad", "x" * 32, "yes"])
def test_names_are_matched_whole(spec_dir: Path, capsys: pytest.CaptureFixture[str],
                                 name: str) -> None:
    error = topology_error(spec_dir, capsys, edited(TOPOLOGY, "name: ru-to-abroad",
                                                    f"name: {name}"))
    assert error.names("name") and error.line == 1


def test_escape_sequences_and_huge_keys_stay_out_of_messages(
        spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edited(TOPOLOGY, "name: ru-to-abroad", 'name: ru-to-abroad\n"\\e[2J\\e]0;pwned\\a": 1')
    error = topology_error(spec_dir, capsys, text)
    assert error.rest.startswith("'\\x1b[2J") and "unknown field" in error.rest
    long_name = "x" * 200_000
    error = topology_error(spec_dir, capsys, edited(TOPOLOGY, "name: ru-to-abroad",
                                                    f"name: {long_name}"))
    assert error.names("name", "not a valid name") and len(error.rest) < 300


# ---------------------------------------------------------------- up, run, policy show

@pytest.fixture
def nothing_created(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("callwall created something for a bad spec")
    monkeypatch.setattr(cli.subprocess, "Popen", refuse)
    monkeypatch.setattr(cli.Lab, "create", refuse)
    monkeypatch.setattr(cli, "_require_lab_capabilities", refuse)


HOSTILE_TOPOLOGY = edited(TOPOLOGY, "name: ru-to-abroad", "name: '$(id)'")
HOSTILE_POLICY = edited(THROTTLE, "rate_kbit: 16",
                        "rate_kbit: !!python/object/apply:os.system ['id']")


@pytest.mark.parametrize("command", [
    lambda t, p: ["up", t, "--policy", p],
    lambda t, p: ["run", "-t", t, "-p", p, "-s", "direct"],
    lambda t, p: ["policy", "show", p, "-t", t],
])
@pytest.mark.parametrize("hostile", ["topology", "policy"])
def test_up_run_and_show_refuse_before_creating_anything(
        spec_dir: Path, capsys: pytest.CaptureFixture[str], nothing_created: None,
        command: Any, hostile: str) -> None:
    topology = write(spec_dir, "topologies",
                     HOSTILE_TOPOLOGY if hostile == "topology" else TOPOLOGY)
    policy = write(spec_dir, "policies", HOSTILE_POLICY if hostile == "policy" else THROTTLE)
    bad = topology if hostile == "topology" else policy
    error = rejected(capsys, command(str(topology), str(policy)), bad)
    assert error.line == (1 if hostile == "topology" else line_of(HOSTILE_POLICY, "!!python"))
