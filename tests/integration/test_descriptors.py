"""Endpoint descriptors for real: the shipped baresip client (a container
image built here from Debian packages) and the shipped v2ray-vmess tunnel
each place a judged call under baseline in the default lab, and each leaves
nothing of itself behind (containers, processes, tunnel files), after a
normal end, Ctrl-C in the middle of the call, or SIGKILL followed by
`callwall clean`."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from harness.calls import CallSettings
from harness.calls.descriptor_peer import program_what
from harness.containers.images import ensure_image
from harness.containers.runtime import RUN_LABEL, Docker
from harness.spec.descriptor import descriptor
from harness.testbed import Lab
from harness.testing.labs import CallPlacer
from harness.tunnels import missing_tools
from tests.integration.docker_support import (
    CALLWALL,
    Run,
    Seen,
    assert_no_process_left,
    docker,
    kill_now,
    root_links,
)

__all__ = ["docker"]

SETTINGS = CallSettings(media_s=6.0, setup_timeout_s=15.0)


@pytest.fixture(scope="module")
def baresip_image(docker: Docker) -> str:
    """The baresip endpoint's image, built (once, then cached) from its folder."""
    build = ensure_image(docker, descriptor("baresip"))
    return build.image


def _endpoint_containers(docker: Docker, lab: Lab) -> list[str]:
    return [c.name for c in docker.client.containers.list(
        all=True, filters={"label": f"{RUN_LABEL}={lab.run_id}"})]


@pytest.mark.parametrize("strategy", ["direct", "turn-udp"])
def test_the_baresip_descriptor_connects_under_baseline(
        lab: Lab, call: CallPlacer, docker: Docker, baresip_image: str, strategy: str) -> None:
    record = call("baseline", strategy, profile="baresip", media_s=SETTINGS.media_s)
    call_dir = call.placed[-1]
    assert record.outcome == "connects" and record.verdict == "pass", record.judgement
    assert record.profile == "baresip" and record.mos is not None and record.mos >= 4.0
    # What the program wrote became each side's report, audio included.
    for role in ("caller", "callee"):
        assert (call_dir / f"{role}-out" / "result.json").is_file()
        assert (call_dir / f"{role}-received.wav").stat().st_size > 50_000
    assert record.pesq is not None and record.pesq.get("mos_lqo") is not None
    # Its containers and programs went with the call.
    assert _endpoint_containers(docker, lab) == []
    assert [c for c in lab.registry.state.containers if c.what.endswith("endpoint")] == []
    for role in ("caller", "callee"):
        assert lab.registry.running(program_what(role)) == []
        assert lab.registry.running(f"{role} peer") == []


def test_the_v2ray_descriptor_tunnel_carries_a_call_under_baseline(
        lab: Lab, call: CallPlacer) -> None:
    missing = missing_tools("v2ray-vmess")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    record = call("baseline", "v2ray-vmess", media_s=SETTINGS.media_s)
    call_dir = call.placed[-1]
    assert record.outcome == "connects" and record.verdict == "pass", record.judgement
    assert record.tunnel_up_s is not None and record.tunnel_up_s > 0
    # The caller's TURN traffic went into the tunnel and out of the VPN exit to the relay.
    relay = lab.services.relay_ip if lab.services else ""
    server_log = (call_dir / "tunnel-vpn-server.log").read_text()
    assert f"accepted udp:{relay}:3478" in server_log, server_log[-2000:]
    client_log = (call_dir / "tunnel-caller-client.log").read_text()
    assert f"accepted udp:{relay}:3478" in client_log
    # Nothing of the tunnel is left running.
    assert [p for p in lab.registry.state.processes
            if p.what.startswith("tunnel ") and p.alive()] == []


def test_a_descriptor_program_that_writes_no_result_is_an_error(
        lab: Lab, call: CallPlacer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's program that breaks the contract is the harness's error,
    never a pass: here one that exits at once without result.json."""
    from harness.spec import descriptor as d

    folder = tmp_path / "endpoints" / "silent"
    folder.mkdir(parents=True)
    (folder / d.DESCRIPTOR_FILE).write_text(
        "name: silent\ndescription: writes nothing\nclient:\n  command: ['true']\n"
        "  caller: ['{out_dir}']\n  callee: ['{out_dir}']\n  strategies: [direct]\n")
    monkeypatch.setenv(d.ENV_ENDPOINTS, str(tmp_path / "endpoints"))
    from harness.calls import place_call

    output = place_call(lab, "silent", "direct", CallSettings(media_s=2.0, setup_timeout_s=5.0),
                        tmp_path / "call")
    for peer in (output.caller, output.callee):
        assert not peer.wrote_result and peer.error == "peer-crashed"
        assert "wrote no" in (peer.detail or "")


def _tunnel_mid_call(seen: Seen) -> bool:
    """Both ends of the descriptor's tunnel and the caller's peer are running."""
    alive = [p.what for p in seen.processes if p.alive()]
    return (sum(1 for what in alive if what.startswith("tunnel ")) >= 2
            and "caller peer" in alive)


def _tunnel_run() -> Run:
    missing = missing_tools("v2ray-vmess")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    run = Run("-p", "baseline", "-s", "v2ray-vmess", "--seconds", "20", "--no-pcap")
    run.wait_for_run_id()
    run.wait_until(_tunnel_mid_call, "the tunnel's two ends and the caller's peer")
    return run


def test_ctrl_c_in_a_descriptor_tunnels_call_leaves_nothing() -> None:
    links = root_links()
    run = _tunnel_run()
    run.signal(signal.SIGINT)
    out = run.finish()
    assert run.proc.returncode == 130, out
    assert_no_process_left(run.seen, links)


def test_sigkill_in_a_descriptor_tunnels_call_then_clean_leaves_nothing() -> None:
    links = root_links()
    run = _tunnel_run()
    kill_now(run)
    run.seen.read()
    tunnel = [p for p in run.seen.processes if p.what.startswith("tunnel ") and p.alive()]
    assert tunnel, "SIGKILL cannot stop the tunnel's programs: they must still run here"
    clean = subprocess.run([*CALLWALL, "clean"], capture_output=True, text=True, timeout=180)
    assert clean.returncode == 0, clean.stderr
    assert f"removed stale lab {run.seen.run_id}" in clean.stderr
    assert_no_process_left(run.seen, links)
