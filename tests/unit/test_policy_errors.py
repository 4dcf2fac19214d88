"""Every malformed rule gets one error naming the file, the line and the field;
`callwall validate` exits 2 with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.spec.policy import load_policy
from harness.spec.schema import SpecError

HEAD = "name: p\ndescription: d\nprovenance: {sources: [s], reported: r}\n"


def policy_file(tmp_path: Path, rule: str, extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + extra + "rules:\n  - id: r\n    explain: e\n" + rule)
    return path


# (rule body, the field named, a phrase of the message, the line's marker)
CASES = [
    ("    action: {kind: drop}\n    colour: red\n", "rules[0].colour", "unknown field",
     "colour"),
    ("    action: {kind: police, rate_kbit: 0}\n    match: {protocol: udp}\n",
     "rules[0].action", "rate_kbit between", "rate_kbit"),
    ("    action: {kind: shape, rate_kbit: -3}\n", "rules[0].action", "rate_kbit between",
     "shape"),
    ("    action: {kind: random_loss, loss_pct: 101}\n", "rules[0].action", "loss_pct between",
     "random_loss"),
    ("    action: {kind: drop}\n    match: {protocol: udp}\n    classify:\n"
     "      signatures: [{kind: bytes, at: [{offset: 1470, value: 'aabbcc'}]}]\n",
     "rules[0].classify.signatures[0].at[0]", "lies past any packet", "offset: 1470"),
    ("    action: {kind: drop}\n    match: {protocol: tcp}\n    classify:\n"
     "      signatures: [{kind: bytes, at: [{offset: 1459, value: 'aabb'}]}]\n",
     "rules[0]", "lies past any TCP payload", "- id: r"),
    ("    action: {kind: drop}\n    match: {protocol: udp}\n    classify:\n"
     "      signatures: [{kind: bytes, payload_len: 4, at: [{offset: 3, value: 'aabb'}]}]\n",
     "rules[0].classify.signatures[0]", "past the 4-byte payload", "payload_len"),
    ("    action: {kind: drop}\n    match: {protocol: udp}\n    classify:\n"
     "      signatures: [{kind: bytes, at: [{offset: 0, value: '0x16'}]}]\n",
     "rules[0].classify.signatures[0].at[0].value", "bytes of hex", "0x16"),
    ("    action: {kind: drop}\n    match: {protocol: udp}\n    classify:\n"
     "      signatures: [{kind: bytes, at: [{offset: 0, value: '16', mask: 'ffff'}]}]\n",
     "rules[0].classify.signatures[0].at[0]", "mask must be as long", "mask"),
    ("    action: {kind: drop}\n    match: {protocol: tcp}\n    classify: {stun_cookie: true}\n",
     "rules[0]", "stun-cookie inspects UDP", "- id: r"),
    ("    action: {kind: drop}\n    match: {protocol: udp}\n    classify:\n"
     "      signatures: [{kind: rtp}]\n", "rules[0].classify.signatures[0]",
     "rtp needs payload_types", "kind: rtp"),
    ("    action: {kind: drop}\n    match: {protocol: udp}\n    classify:\n"
     "      signatures: [{kind: stun-cookie, names: [a.example]}]\n",
     "rules[0].classify.signatures[0]", "names belongs to tls-sni", "stun-cookie"),
    ("    action: {kind: drop}\n    match: {protocol: tcp}\n    classify:\n"
     "      signatures: [{kind: tls-sni, names: ['bad name']}]\n",
     "rules[0].classify.signatures[0]", "not a host name", "tls-sni"),
    ("    action: {kind: drop}\n    classify: {first_packets: 3}\n", "rules[0].classify",
     "classify needs signatures", "first_packets"),
    ("    action: {kind: drop}\n    scope: dst\n", "rules[0]", "scope dst holds a "
     "classification", "- id: r"),
    ("    action: {kind: blackhole_server, seconds: 600}\n    scope: dst\n", "rules[0]",
     "leave scope out", "- id: r"),
    ("    action: {kind: blackhole_server}\n", "rules[0].action", "needs seconds",
     "blackhole"),
    ("    action: {kind: tcp_freeze, after_kbytes: 16}\n    match: {protocol: udp}\n",
     "rules[0]", "tcp_freeze counts TCP bytes", "- id: r"),
    ("    action: {kind: drop, rate_kbit: 5}\n", "rules[0].action", "drop takes no rate_kbit",
     "kind: drop"),
    ("    action: {kind: drop}\n    enforcement: {probability: 1.5}\n", "rules[0].enforcement",
     "probability must be", "probability"),
    ("    action: {kind: drop}\n    schedule: {on_s: 7, off_s: 7}\n", "rules[0].schedule",
     "divide 86400", "on_s"),
    ("    action: {kind: drop}\n    schedule: {on_s: 60}\n", "rules[0].schedule",
     "on_s and off_s go together", "on_s"),
    ("    action: {kind: drop}\n    verdict_s: 0\n", "rules[0]", "verdict_s must", "- id: r"),
    ("    action: {kind: allow}\n", "rules[0].action", "allow only makes sense with mode",
     "kind: allow"),
    ("    action: {kind: explode}\n", "rules[0].action.kind", "expected one of drop, police",
     "explode"),
]


@pytest.mark.parametrize(("rule", "field", "message", "marker"), CASES,
                         ids=[c[2].split()[0] + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_rule_names_file_line_and_field(tmp_path: Path, rule: str, field: str,
                                            message: str, marker: str) -> None:
    path = policy_file(tmp_path, rule)
    with pytest.raises(SpecError) as caught:
        load_policy(path)
    error = caught.value
    assert error.file == str(path)
    assert error.field == field, str(error)
    assert message in error.message, str(error)
    lines = path.read_text().splitlines()
    assert marker in lines[error.line - 1], (error.line, lines)  # type: ignore[operator]


def test_unknown_set_name(tmp_path: Path) -> None:
    path = policy_file(tmp_path, "    action: {kind: drop}\n"
                       "    match: {protocol: udp, dst_set: reflectors}\n")
    with pytest.raises(SpecError) as caught:
        load_policy(path, known_sets={"relays"})
    assert caught.value.field == "rules[0].match.dst_set"
    assert "reflectors" in caught.value.message and caught.value.line == 8


def test_allow_is_accepted_in_allowlist_mode(tmp_path: Path) -> None:
    path = policy_file(tmp_path, "    action: {kind: allow}\n", extra="mode: allowlist\n")
    assert load_policy(path).mode == "allowlist"


def test_validate_exits_2_on_an_include_cycle(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policies" / "loop.yaml"
    path.parent.mkdir()
    path.write_text(HEAD + "include: [loop.yaml]\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:4: include[0]: include cycle" in capsys.readouterr().err
