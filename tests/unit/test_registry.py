"""The ownership registry removes what it recorded, and nothing else."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from pathlib import Path

from harness.netns.directory import ServiceDirectory
from harness.netns.registry import STATE_FILE, OwnedProcess, Registry, list_runs, stale_runs
from harness.testbed import remove_stale_labs

SERVICES = ServiceDirectory(relay_ip="198.18.1.2", turn_port=3478, turns_port=443,
                            turn_username="u", turn_password="p", ca_file="/x/ca.pem",
                            stun_ip="198.18.2.2", stun_port=3478, signalling_ip="198.18.3.2",
                            signalling_port=443)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])


def test_remove_stops_recorded_processes_and_deletes_files(tmp_path: Path) -> None:
    registry = Registry.create("topo.yaml", root=tmp_path)
    mine, other = _sleeper(), _sleeper()
    try:
        registry.record_process(mine.pid, "caller", "test sleeper")
        (registry.files / "secret.key").write_text("k")
        registry.remove()
        assert mine.wait(timeout=5) is not None
        assert other.poll() is None, "a process the run did not record was touched"
        assert not registry.dir.exists()
    finally:
        other.kill()
        other.wait()


def test_a_recycled_pid_is_not_killed(tmp_path: Path) -> None:
    registry = Registry.create("topo.yaml", root=tmp_path)
    proc = _sleeper()
    try:
        owned = registry.record_process(proc.pid, "caller", "test sleeper")
        # Same PID, different start time: not the process the run started.
        state = json.loads((registry.dir / STATE_FILE).read_text())
        state["processes"] = [asdict(OwnedProcess(owned.pid, owned.start_ticks - 1, "x", "y"))]
        (registry.dir / STATE_FILE).write_text(json.dumps(state))
        Registry.load(registry.dir).remove()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_state_round_trips_and_dead_owners_are_stale(tmp_path: Path) -> None:
    registry = Registry.create("topo.yaml", root=tmp_path)
    registry.state.services = SERVICES
    registry.set_status("ready")
    loaded = Registry.load(registry.dir)
    assert loaded.state.status == "ready" and loaded.state.services == SERVICES
    assert [r.state.run_id for r in list_runs(tmp_path)] == [registry.state.run_id]
    assert stale_runs(tmp_path) == []  # this process owns it and is alive
    loaded.state.owner_start_ticks += 1
    loaded.save()
    assert [r.state.run_id for r in stale_runs(tmp_path)] == [registry.state.run_id]


def test_a_stale_lab_is_removed_even_if_its_topology_file_is_gone(tmp_path: Path) -> None:
    registry = Registry.create(str(tmp_path / "deleted-topology.yaml"), root=tmp_path)
    proc = _sleeper()
    try:
        registry.record_process(proc.pid, "relay", "test sleeper")
        registry.state.owner_start_ticks += 1  # its owner "died"
        registry.save()
        assert remove_stale_labs(tmp_path) == [registry.state.run_id]
        assert proc.wait(timeout=5) is not None
        assert not registry.dir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_process_recorded_by_another_writer_survives_our_save(tmp_path: Path) -> None:
    """`callwall link set` records a daemon into a run the lab's owner also
    writes: the owner's next save must keep it, and its teardown must stop it."""
    owner = Registry.create("topo.yaml", root=tmp_path)
    proc = _sleeper()
    try:
        Registry.load(owner.dir).record_process(proc.pid, "caller", "impairment daemon")
        owner.set_status("ready")
        assert [p.pid for p in Registry.load(owner.dir).state.processes] == [proc.pid]
        owner.remove()
        assert proc.wait(timeout=5) is not None
    finally:
        proc.kill()
        proc.wait()
