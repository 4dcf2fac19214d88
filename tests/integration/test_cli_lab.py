"""`callwall up / exec / policy apply / down` and `callwall run`, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.netns.registry import list_runs
from harness.paths import POLICIES
from tests.integration.rootsnapshot import RootSnapshot

CALLWALL = [sys.executable, "-m", "harness.cli"]


def callwall(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CALLWALL, *args], capture_output=True, text=True, timeout=timeout)


def test_up_exec_policy_down(root_snapshot: RootSnapshot, tmp_path: Path) -> None:
    before = {r.state.run_id for r in list_runs()}
    up = callwall("up", "ru-to-abroad", "--policy", "turn-relay-block")
    assert up.returncode == 0, up.stderr
    (run_id,) = {r.state.run_id for r in list_runs()} - before
    try:
        assert f"lab {run_id} is up" in up.stdout
        ping = callwall("exec", "--lab", run_id, "caller", "--", "ping", "-c", "1", "-W", "2",
                        "198.18.3.2")
        assert ping.returncode == 0, ping.stderr
        swap = callwall("policy", "apply", "--lab", run_id, "udp-throttle")
        assert swap.returncode == 0 and "one nft transaction" in swap.stdout
        ruleset = callwall("exec", "--lab", run_id, "censor", "--", "nft", "-s", "list", "ruleset")
        assert "callwall policy udp-throttle" in ruleset.stdout
        bad = tmp_path / "bad-rate.yaml"
        bad.write_text((POLICIES / "udp-throttle.yaml").read_text().replace(
            "rate_kbit: 16,", "rate_kbit: 0,"))
        refused = callwall("policy", "apply", "--lab", run_id, str(bad))
        assert refused.returncode == 2
        assert f"{bad}:" in refused.stderr and "rules[0].action" in refused.stderr
        kept = callwall("exec", "--lab", run_id, "censor", "--", "nft", "-s", "list", "ruleset")
        assert kept.stdout == ruleset.stdout  # the running lab keeps its previous policy
    finally:
        down = callwall("down", "--lab", run_id)
    assert down.returncode == 0, down.stderr
    assert run_id not in {r.state.run_id for r in list_runs()}
    assert RootSnapshot.take() == root_snapshot


def test_run_places_one_call_and_writes_results(root_snapshot: RootSnapshot) -> None:
    run = callwall("run", "-p", "turn-relay-block", "-s", "turn-tcp", "--seconds", "3", "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["connected"] and record["verdict"] == "pass"
    assert record["selected_pair"]["local_relay_protocol"] == "tcp"
    assert RootSnapshot.take() == root_snapshot


def test_bad_topology_creates_nothing(tmp_path: object) -> None:
    before = {r.state.run_id for r in list_runs()}
    up = callwall("up", "/nonexistent/topology.yaml")
    assert up.returncode == 2 and "no such file" in up.stderr
    assert {r.state.run_id for r in list_runs()} == before
