"""Container images as lab hosts: a topology host with `image:` is a container
(`--network none`) whose namespace holds the host's veth ends; it serves in
the lab like any host, and every way a run can end removes exactly the
containers it recorded: a normal end, Ctrl-C while the lab is being built,
Ctrl-C in the middle of a call, and SIGKILL followed by `callwall clean`."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from harness import paths
from harness.calls import CallSettings
from harness.containers.images import BASE_IMAGE
from harness.containers.runtime import RUN_LABEL, Docker
from harness.netns.registry import HOST_CONTAINER, RUNS_ROOT, process_start_ticks
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testing.labs import running_lab
from tests.integration.docker_support import (
    CALLWALL,
    Run,
    assert_nothing_left,
    container_topology,
    docker,
    endpoint_containers_running,
    kill_now,
    root_links,
)

__all__ = ["docker"]  # the fixture, imported for the tests below

SHORT = CallSettings(media_s=4.0, setup_timeout_s=15.0)


def test_a_container_host_serves_in_the_lab(docker: Docker, tmp_path: Path) -> None:
    links = root_links()
    topology = container_topology(tmp_path)
    with running_lab(topology) as lab:
        (record,) = lab.registry.state.containers
        assert (record.host, record.what, record.run_id) == ("callee", HOST_CONTAINER, lab.run_id)
        container = docker.client.containers.get(record.id)
        assert container.status == "running" and container.labels[RUN_LABEL] == lab.run_id
        assert container.attrs["HostConfig"]["NetworkMode"] == "none"
        assert container.attrs["State"]["Pid"] == record.pid == lab.host("callee").pid
        assert container.attrs["Config"]["Image"] == BASE_IMAGE
        # The image's own program holds the host: sleep, PID 1 of the container.
        assert Path(f"/proc/{record.pid}/comm").read_text().strip() == "sleep"
        # Its veth end, addressed and routed inside the container's namespace.
        addresses = lab.host("callee").run(["ip", "-br", "addr", "show", "eth0"]).stdout
        assert "192.0.2.10/24" in addresses and "UP" in addresses
        routes = lab.host("callee").run(["ip", "route", "show", "default"]).stdout
        assert "via 192.0.2.1 dev eth0" in routes
        seen = docker.client.containers.get(record.id).exec_run(["cat", "/proc/net/dev"])
        assert b"eth0" in seen.output  # the container itself sees the interface
        record_of_call = judged_call(lab, load_policy(paths.policy_path("baseline")), "direct",
                                     tmp_path / "call", SHORT)
        assert record_of_call.verdict == "pass", record_of_call.judgement
        held = record
    assert not docker.exists(held)
    assert process_start_ticks(held.pid) != held.start_ticks
    assert root_links() == links


def test_ctrl_c_while_the_lab_is_built_leaves_nothing(docker: Docker, tmp_path: Path) -> None:
    links = root_links()
    run = Run("-t", str(container_topology(tmp_path)), "-p", "baseline", "--seconds", "3")
    run.wait_for_run_id()
    # The container is recorded and running, the lab not yet ready.
    run.wait_until(lambda s: any(c.pid for c in s.containers) and s.status != "ready",
                   "host container during bring-up")
    run.signal(signal.SIGINT)
    out = run.finish()
    assert run.proc.returncode == 130, out
    assert_nothing_left(docker, run.seen, links)


def _baresip_call_in_a_container_lab(tmp_path: Path) -> Run:
    """`callwall run` of a baresip call in the container-callee lab, once both
    endpoint containers are running."""
    run = Run("-t", str(container_topology(tmp_path)), "-p", "baseline", "--profile",
              "baresip", "-s", "direct", "--seconds", "20")
    run.wait_for_run_id()
    run.wait_until(endpoint_containers_running, "endpoint containers", timeout_s=400)
    return run


def test_ctrl_c_mid_call_removes_host_and_endpoint_containers(docker: Docker,
                                                              tmp_path: Path) -> None:
    links = root_links()
    run = _baresip_call_in_a_container_lab(tmp_path)
    run.wait_until(lambda s: any(p.what.endswith("endpoint program") for p in s.processes),
                   "the endpoint programs")
    assert {c.what for c in run.seen.containers} == {"host", "caller endpoint",
                                                     "callee endpoint"}
    run.signal(signal.SIGINT)
    out = run.finish()
    assert run.proc.returncode == 130, out
    assert_nothing_left(docker, run.seen, links)


def test_sigkill_then_clean_removes_exactly_what_was_recorded(docker: Docker,
                                                              tmp_path: Path) -> None:
    links = root_links()
    run = _baresip_call_in_a_container_lab(tmp_path)
    kill_now(run)
    run.seen.read()
    assert (RUNS_ROOT / run.seen.run_id).exists(), "SIGKILL cannot clean up: state remains"
    still = [c.name for c in run.seen.containers if docker.exists(c)]
    assert len(still) == 3, f"expected the host and two endpoint containers, got {still}"
    clean = subprocess.run([*CALLWALL, "clean"], capture_output=True, text=True, timeout=180)
    assert clean.returncode == 0, clean.stderr
    assert f"removed stale lab {run.seen.run_id}" in clean.stderr
    assert_nothing_left(docker, run.seen, links)
