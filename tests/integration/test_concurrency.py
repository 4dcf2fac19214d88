"""Four runs at once do not collide, and give the verdicts serial runs give.

Labs share nothing: each run's hosts are namespaces of its own, so even the
same addresses and ports are reused safely; only the run id (which names the
Mininet shells, state and files) has to be unique."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.rootsnapshot import RootSnapshot

CALLWALL = [sys.executable, "-m", "harness.cli"]
CASES = [
    ("baseline", "direct", "connects"),
    ("relay-block", "turn-udp", "fails"),
    ("udp-throttle", "turn-udp", "degraded"),
    ("dpi-stun-drop", "turn-tls-443", "connects"),
]


def test_four_concurrent_runs_match_the_serial_verdicts(root_snapshot: RootSnapshot) -> None:
    procs = [subprocess.Popen([*CALLWALL, "run", "-p", policy, "-s", strategy, "--seconds", "4",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for policy, strategy, _ in CASES]
    records = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert out, err
        records.append(json.loads(out))
    run_ids = {r["run_id"] for r in records}
    assert len(run_ids) == len(CASES)
    for record, (policy, strategy, outcome) in zip(records, CASES, strict=True):
        assert (record["policy"], record["strategy"]) == (policy, strategy)
        assert record["outcome"] == outcome, record
        assert record["verdict"] == "pass", record
    assert RootSnapshot.take() == root_snapshot
