"""Four runs at once do not collide: each gives what the same call gives run
alone (outcome, failure kind and the rules that decided it).

Labs share nothing: each run's hosts are namespaces of its own, so even the
same addresses and ports are reused safely; only the run id (which names the
Mininet shells, state and files) has to be unique. A collision would show as
a call that differs from its serial twin: a crash, a different failure, or a
censor rule of another run counting its packets."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.integration.rootsnapshot import RootSnapshot

CALLWALL = [sys.executable, "-m", "harness.cli"]
CASES = [
    ("baseline", "direct"),
    ("turn-relay-block", "turn-udp"),
    ("udp-throttle", "turn-udp"),
    ("dpi-stun-drop", "turn-tls-443"),
]


def _argv(policy: str, strategy: str) -> list[str]:
    return [*CALLWALL, "run", "-p", policy, "-s", strategy, "--seconds", "4", "--json"]


def _record(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=180)
    assert out, err
    record: dict[str, Any] = json.loads(out)
    return record


def _essence(record: dict[str, Any]) -> tuple[str, str | None, frozenset[str], str]:
    """What must not depend on other runs: the outcome, the failure kind, the
    deciding rules that counted, and the verdict."""
    counted = frozenset(c["rule"] for c in record["judgement"]["deciding_rules"]
                        if c["packets"] > 0)
    return record["outcome"], record["failure_kind"], counted, record["verdict"]


def test_four_concurrent_runs_match_serial_runs(root_snapshot: RootSnapshot) -> None:
    serial = []
    for policy, strategy in CASES:
        serial.append(_record(subprocess.Popen(_argv(policy, strategy), stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)))
    procs = [subprocess.Popen(_argv(policy, strategy), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for policy, strategy in CASES]
    concurrent = [_record(proc) for proc in procs]
    assert len({r["run_id"] for r in concurrent}) == len(CASES)
    for alone, together, (policy, strategy) in zip(serial, concurrent, CASES, strict=True):
        assert (together["policy"], together["strategy"]) == (policy, strategy)
        assert alone["outcome"] != "error", alone["judgement"]
        assert _essence(together) == _essence(alone), (policy, strategy, alone["judgement"],
                                                       together["judgement"])
    # The cases cover each outcome, so a run that always said the same would fail here.
    assert {r["outcome"] for r in serial} == {"connects", "fails", "degraded"}
    assert RootSnapshot.take() == root_snapshot
