"""Endpoint descriptors (harness.spec.descriptor): parsing with file:line
errors, placeholder substitution (element by element, never a shell), the
result contract, and the vocabulary with descriptors included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import paths
from harness.calls.descriptor_peer import broken_report, read_result, received_wav, report_from
from harness.netns.container_hosts import endpoint_argv, interface_names
from harness.spec import descriptor as d
from harness.spec.schema import SpecError
from harness.spec.topology import load_topology

CLIENT = """\
name: my-phone
description: a test client
client:
  command: [my-phone]
  caller: [--call, "sip:{peer_ip}:{peer_port}", --out, "{out_dir}"]
  callee: [--listen, "{own_ip}:{own_port}", --out, "{out_dir}"]
  strategies: [direct, turn-udp]
  tools: [{program: my-phone, package: my-phone}]
"""

TUNNEL = """\
name: my-tunnel
description: a test tunnel
tunnel:
  carries: turn-tcp
  local_port: 14000
  server:
    argv: [my-tunnel, server, "{server_ip}", --secret, "{secret}"]
    ready: {port: 8443}
  client:
    argv: [my-tunnel, client, "{local_ip}:{local_port}", --to, "{relay_ip}:{turn_port}"]
    ready: {log: "listening"}
"""


def write(folder: Path, text: str, name: str = "x") -> Path:
    path = folder / name / d.DESCRIPTOR_FILE
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


@pytest.fixture
def endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An extra descriptor folder (CALLWALL_ENDPOINTS) holding the two above."""
    folder = tmp_path / "endpoints"
    write(folder, CLIENT, "my-phone")
    write(folder, TUNNEL, "my-tunnel")
    monkeypatch.setenv(d.ENV_ENDPOINTS, str(folder))
    return folder


def test_a_client_descriptor_loads(tmp_path: Path) -> None:
    found = d.load_descriptor(write(tmp_path, CLIENT))
    assert found.name == "my-phone" and found.client is not None and found.tunnel is None
    assert found.client.argv("caller") == ["my-phone", "--call", "sip:{peer_ip}:{peer_port}",
                                           "--out", "{out_dir}"]
    assert found.directory == (tmp_path / "x").resolve()


def test_a_tunnel_descriptor_loads(tmp_path: Path) -> None:
    found = d.load_descriptor(write(tmp_path, TUNNEL))
    assert found.tunnel is not None and found.tunnel.carries == "turn-tcp"
    assert found.tunnel.server.ready.port == 8443 and found.tunnel.client.ready.log == "listening"


@pytest.mark.parametrize("old, new, line, field, message", [
    ("  strategies: [direct, turn-udp]", "  strategies: [direct, wireguard]", 7,
     "client.strategies[1]", "is a tunnel"),
    ("  strategies: [direct, turn-udp]", "  strategies: [direct, turn-sctp]", 7,
     "client.strategies[1]", "is not an ICE strategy"),
    ('"sip:{peer_ip}:{peer_port}"', '"sip:{peer_addr}"', 5, "client.caller[1]",
     "unknown placeholder {peer_addr}"),
    ('"sip:{peer_ip}:{peer_port}"', '"sip:{peer_ip"', 5, "client.caller[1]", "unclosed"),
    ('"sip:{peer_ip}:{peer_port}"', '"sip:}"', 5, "client.caller[1]", "stray"),
    ("name: my-phone", "name: webrtc", 1, "name", "built-in"),
    ("name: my-phone", "name: My_Phone", 1, "name", "not a valid name"),
    ("  command: [my-phone]", "  command: [my-phone]\n  image: Not An Image", 5,
     "client.image", "is not an image name"),
    ("  command: [my-phone]", "  command: [my-phone]\n  build: ../Dockerfile", 5,
     "client.build", "inside the descriptor's folder"),
    ("  command: [my-phone]", "  command: [my-phone]\n  port: 70000", 5, "client.port",
     "is not a port"),
    ("  command: [my-phone]", "  command: [my-phone]\n  colour: blue", 5, "client.colour",
     "unknown field"),
])
def test_client_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, line: int,
                                                field: str, message: str) -> None:
    assert old in CLIENT
    path = write(tmp_path, CLIENT.replace(old, new))
    with pytest.raises(SpecError) as caught:
        d.load_descriptor(path)
    assert caught.value.file == str(path)
    assert (caught.value.line, caught.value.field) == (line, field), str(caught.value)
    assert message in caught.value.message


@pytest.mark.parametrize("old, new, field, message", [
    ("    ready: {port: 8443}", "    ready: {port: 8443, log: up}", "tunnel.server.ready",
     "exactly one of port and log"),
    ("    ready: {port: 8443}", "    ready: {}", "tunnel.server.ready",
     "exactly one of port and log"),
    ("  carries: turn-tcp", "  carries: direct", "tunnel.carries", "expected one of"),
    ('"{server_ip}"', '"{peer_ip}"', "tunnel.server.argv[2]", "unknown placeholder {peer_ip}"),
])
def test_tunnel_errors_name_the_field(tmp_path: Path, old: str, new: str, field: str,
                                      message: str) -> None:
    assert old in TUNNEL
    with pytest.raises(SpecError) as caught:
        d.load_descriptor(write(tmp_path, TUNNEL.replace(old, new)))
    assert caught.value.field == field and message in caught.value.message, str(caught.value)
    assert caught.value.line is not None


def test_a_descriptor_is_a_client_or_a_tunnel_not_both(tmp_path: Path) -> None:
    both = CLIENT + TUNNEL.split("\n", 2)[2]
    with pytest.raises(SpecError, match="exactly one of client and tunnel"):
        d.load_descriptor(write(tmp_path, both))


def test_a_client_needs_a_program(tmp_path: Path) -> None:
    text = CLIENT.replace("  command: [my-phone]\n", "").replace(
        "  tools: [{program: my-phone, package: my-phone}]\n", "")
    with pytest.raises(SpecError, match="needs command"):
        d.load_descriptor(write(tmp_path, text))


def test_build_names_a_file_of_the_folder(tmp_path: Path) -> None:
    text = CLIENT.replace("  command: [my-phone]", "  image: my-phone:1\n  build: Dockerfile")
    with pytest.raises(SpecError) as caught:
        d.load_descriptor(write(tmp_path, text))
    assert caught.value.field == "client.build" and "no file Dockerfile" in caught.value.message
    (tmp_path / "x" / "Dockerfile").write_text("FROM scratch\n")
    assert d.load_descriptor(tmp_path / "x" / d.DESCRIPTOR_FILE).client is not None


# ------------------------------------------------------------------ placeholders

def test_substitution_replaces_inside_one_element_only() -> None:
    hostile = "1.2.3.4; rm -rf / $(id) `id` 'x' \"y\" {not}"
    argv = d.substitute(["prog", "--to={peer_ip}", "{peer_ip}", "{{literal}}"],
                        {"peer_ip": hostile})
    assert argv == ["prog", f"--to={hostile}", hostile, "{literal}"]
    assert len(argv) == 4  # a value never becomes a second argument


def test_substitution_names_a_missing_value() -> None:
    with pytest.raises(d.DescriptorError, match=r"no value for \{room\}"):
        d.substitute(["--room", "{room}"], {})


def test_substitution_leaves_values_unread() -> None:
    # A value that looks like a placeholder is not substituted again.
    assert d.substitute(["{a}"], {"a": "{b}", "b": "no"}) == ["{b}"]


def test_every_shipped_descriptor_uses_known_placeholders_only() -> None:
    files = d.descriptor_files([paths.ENDPOINTS])
    assert {f.parent.name for f in files} >= {"baresip", "v2ray-vmess"}
    for path in files:
        found = d.load_descriptor(path)
        known = d.CLIENT_PLACEHOLDERS if found.client else d.TUNNEL_PLACEHOLDERS
        values = dict.fromkeys(known, "x")
        if found.client is not None:
            for role in ("caller", "callee"):
                assert "{" not in " ".join(d.substitute(found.client.argv(role), values))
        else:
            assert found.tunnel is not None
            for side in (found.tunnel.server, found.tunnel.client):
                d.substitute(side.argv, values)


# ------------------------------------------------------------------ vocabulary

def test_descriptors_join_the_vocabulary(endpoints: Path) -> None:
    assert "my-phone" in d.profiles() and "my-tunnel" in d.strategies()
    assert "my-tunnel" in d.tunnel_strategies() and "my-phone" not in d.strategies()
    assert d.unplaceable_any("my-phone", "direct") is None
    assert "cannot be placed with 'turn-tcp'" in (d.unplaceable_any("my-phone", "turn-tcp") or "")
    # my-tunnel carries turn-tcp: webrtc can use it, my-phone (no turn-tcp) cannot.
    assert d.unplaceable_any("webrtc", "my-tunnel") is None
    assert "it carries turn-tcp" in (d.unplaceable_any("my-phone", "my-tunnel") or "")
    assert "unknown profile" in (d.unplaceable_any("nobody", "direct") or "")
    assert d.carried_strategy("my-tunnel") == "turn-tcp" and d.carried_strategy("direct") is None


def test_a_broken_descriptor_is_named_where_its_name_is_used(
        endpoints: Path) -> None:
    write(endpoints, CLIENT.replace("name: my-phone", "name: other").replace(
        "strategies: [direct, turn-udp]", "strategies: [direct, turn-sctp]"), "other")
    found = d.descriptors()
    assert "my-phone" in found.clients  # the good ones still load
    why = d.unplaceable_any("other", "direct") or ""
    assert "unknown profile 'other'" in why and "turn-sctp" in why and "endpoint.yaml:7" in why


def test_two_descriptors_may_not_share_a_name(endpoints: Path) -> None:
    write(endpoints, CLIENT, "again")
    found = d.descriptors()
    assert any("also the name of" in str(e) for e in found.broken.values())


def test_a_matrix_and_a_policy_may_name_descriptors(endpoints: Path, tmp_path: Path) -> None:
    from harness.spec.matrix import load_matrix
    from harness.spec.policy import load_policy

    policy = tmp_path / "p.yaml"
    policy.write_text(
        "name: p\ndescription: d\nprovenance: {sources: [s], reported: r}\nexpect:\n"
        "  my-phone:\n    direct: {outcome: connects, basis: mechanism}\n"
        "  webrtc:\n    my-tunnel: {outcome: connects, basis: mechanism}\n")
    assert load_policy(policy).expectation("my-phone", "direct") is not None
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: m\ndescription: d\ntopology: ru-to-abroad\ngroups:\n"
                      "  - policies: [baseline]\n    calls: {my-phone: [direct], "
                      "webrtc: [my-tunnel]}\n")
    load_matrix(matrix)
    matrix.write_text(matrix.read_text().replace("my-phone: [direct]", "my-phone: [turn-tcp]"))
    with pytest.raises(SpecError, match="cannot be placed with 'turn-tcp'") as caught:
        load_matrix(matrix)
    assert caught.value.line == 6


def test_the_cli_lists_and_validates_descriptors(endpoints: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["list", "profiles"]) == 0
    listed = capsys.readouterr().out
    assert "my-phone" in listed and "client descriptor: a test client" in listed
    assert main(["validate", str(endpoints / "my-tunnel" / d.DESCRIPTOR_FILE)]) == 0
    bad = write(endpoints, CLIENT.replace("[direct, turn-udp]", "[]"), "bad")
    assert main(["validate", str(bad)]) == 2
    assert f"{bad}:7: client.strategies: list at least one strategy" in capsys.readouterr().err


# ------------------------------------------------------------------ result contract

GOOD = {"connected": True, "setup_s": 1.5, "packets_sent": 300, "packets_received": 290,
        "packets_lost": 10, "received_wav": "in.wav"}


def test_a_good_result_is_read_into_a_report() -> None:
    result = d.parse_result({**GOOD, "codec": "opus", "frame_ms": 20, "frames_received": 280,
                             "jitter_ms": 2.5})
    assert result.loss_pct == pytest.approx(100 * 10 / 300, abs=1e-3)
    report = report_from(result, "caller", "direct", "my-phone", 0)
    assert report.connected and report.loss_pct == result.loss_pct and report.frames_received == 280
    assert report.packets_sent == 300 and report.codec == "opus" and report.error is None


@pytest.mark.parametrize("change, message", [
    ({"connected": "yes"}, "connected must be true or false"),
    ({"setup_s": None}, "setup_s must be a number when connected"),
    ({"packets_lost": -1}, "packets_lost must be an integer >= 0"),
    ({"packets_sent": 1.5}, "packets_sent must be an integer"),
    ({"packets_received": True}, "packets_received must be an integer"),
    ({"setup_s": float("nan")}, "setup_s must be a number"),
    ({"received_wav": 3}, "received_wav must be a file name or null"),
    ({"codec": "amr"}, "codec must be one of"),
    ({"frames_received": -2}, "frames_received must be"),
])
def test_a_bad_result_breaks_the_contract(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        d.parse_result({**GOOD, **change})


def test_a_result_missing_a_field_breaks_the_contract() -> None:
    raw = dict(GOOD)
    del raw["packets_lost"]
    with pytest.raises(ValueError, match="lacks packets_lost"):
        d.parse_result(raw)
    with pytest.raises(ValueError, match="JSON object"):
        d.parse_result([GOOD])


def test_a_missing_or_broken_result_is_the_harness_error(tmp_path: Path) -> None:
    from harness.measure.verdict import HARNESS_FAILURES, failure_kind

    with pytest.raises(ValueError, match="wrote no"):
        read_result(tmp_path)
    (tmp_path / d.RESULT_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        read_result(tmp_path)
    report = broken_report("callee", "the program wrote no result.json", "direct", "x", 1)
    assert not report.wrote_result and not report.connected
    assert failure_kind(report, None) in HARNESS_FAILURES


def test_the_received_wav_must_lie_in_out_dir(tmp_path: Path) -> None:
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    result = d.parse_result(GOOD)
    assert received_wav(result, tmp_path) == (tmp_path / "in.wav").resolve()
    outside = d.parse_result({**GOOD, "received_wav": "../secret.wav"})
    with pytest.raises(ValueError, match="outside"):
        received_wav(outside, tmp_path)
    missing = d.parse_result({**GOOD, "received_wav": "none.wav"})
    with pytest.raises(ValueError, match="no such file"):
        received_wav(missing, tmp_path)


def test_the_peer_wrapper_turns_a_result_into_the_side_report(tmp_path: Path) -> None:
    """The in-host wrapper, run for real on a program that writes a result."""
    import subprocess
    import sys

    out = tmp_path / "out"
    program = [sys.executable, "-c",
               "import json, pathlib, sys; d = pathlib.Path(sys.argv[1]);"
               "(d / 'in.wav').write_bytes(b'RIFF....');"
               f"(d / 'result.json').write_text(json.dumps({GOOD!r}))", str(out)]
    report = tmp_path / "caller.json"
    done = subprocess.run([sys.executable, "-m", "harness.calls.descriptor_peer", "--role",
                           "caller", "--program-json", json.dumps(program), "--out-dir",
                           str(out), "--report", str(report), "--received-wav",
                           str(tmp_path / "caller-received.wav"), "--events",
                           str(tmp_path / "events.jsonl")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    written = json.loads(report.read_text())
    assert written["connected"] is True and written["packets_received"] == 290
    assert (tmp_path / "caller-received.wav").read_bytes() == b"RIFF...."
    events = [json.loads(line)["event"] for line in (tmp_path / "events.jsonl").open()]
    assert events == ["attempt", "media"]
    # A program that writes nothing: the side's report says so, as the harness's error.
    report.unlink()
    program = [sys.executable, "-c", "pass"]
    subprocess.run([sys.executable, "-m", "harness.calls.descriptor_peer", "--role", "callee",
                    "--program-json", json.dumps(program), "--out-dir", str(out),
                    "--report", str(report)], check=False, timeout=60)
    written = json.loads(report.read_text())
    assert written["wrote_result"] is False and written["error"] == "peer-crashed"
    assert "wrote no" in written["detail"]


# ------------------------------------------------------------------ containers (no engine)

def test_endpoint_argv_enters_the_container_files_not_its_network() -> None:
    argv = endpoint_argv(4242, ["prog", "a b"])
    assert argv[:2] == ["nsenter", "--target=4242"]
    assert "--net" not in " ".join(argv) and {"--mount", "--root", "--wd"} <= set(argv)
    assert argv[-3:] == ["--", "prog", "a b"]


def test_interface_names_follow_the_topology() -> None:
    topology = load_topology(paths.topology_path("ru-to-abroad"))
    ends = [(link.a.host, link.b.host) for link in topology.links]
    names = interface_names(ends)
    for (a, b), (name_a, name_b), link in zip(ends, names, topology.links, strict=True):
        assert topology.interface_owning(a, link.a.ip.ip).name == name_a
        assert topology.interface_owning(b, link.b.ip.ip).name == name_b


def test_a_topology_host_may_name_an_image(tmp_path: Path) -> None:
    text = paths.topology_path("ru-to-abroad").read_text()
    anchor = "    role: callee\n"
    assert anchor in text
    path = tmp_path / "t.yaml"
    path.write_text(text.replace(anchor, anchor + "    image: callwall-base:bookworm\n"
                                 "    command: [sleep, infinity]\n"))
    spec = load_topology(path).hosts["callee"]
    assert spec.image == "callwall-base:bookworm" and spec.command == ["sleep", "infinity"]
    path.write_text(text.replace(anchor, anchor + "    image: UPPER CASE\n"))
    with pytest.raises(SpecError) as caught:
        load_topology(path)
    assert caught.value.field == "hosts.callee.image" and caught.value.line is not None
