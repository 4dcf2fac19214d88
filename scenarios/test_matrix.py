"""The scenario matrix (scenarios/matrix.yaml, or the file CALLWALL_MATRIX
names): policy × profile × strategy × link profile on the matrix's topology.

Each policy declares in its `expect:` block what every profile and strategy
should see under it; each case places one real call through the censor and
checks the observed outcome against that declaration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import paths
from harness.calls import CallSettings, missing_profile_tools
from harness.calls.descriptor import prepare_descriptor
from harness.measure.record import CallIdentity, CallRecord, skipped_record
from harness.session import judged_call
from harness.spec.matrix import Cell
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.tunnels import missing_tools
from scenarios.matrix_file import cells


def _flag(name: str) -> bool:
    return os.environ.get(name, "1").lower() not in ("0", "no", "false", "off")


# CALLWALL_AUDIO=0 / CALLWALL_PCAP=0 switch off the received WAVs (and so PESQ)
# and the censor pcaps, for long runs.
SETTINGS = CallSettings(record_audio=_flag("CALLWALL_AUDIO"), capture_pcap=_flag("CALLWALL_PCAP"))


# Every cell of the matrix; under `make scenarios SHARD=k/N` the conftest
# deselects those of other shards.
@pytest.mark.parametrize("cell", cells(), ids=lambda c: c.slug)
def test_call(lab: Lab, results_dir: Path, keep_record: list[CallRecord],
              record_property: object, cell: Cell) -> None:
    policy = load_policy(paths.policy_path(cell.policy), lab.topology.sets.keys())
    missing = missing_tools(cell.strategy) + missing_profile_tools(cell.profile)
    # A descriptor's image, built before the call (not inside its timing);
    # dockerd that will not start is a missing engine, a skip like a tool.
    unusable = None if missing else prepare_descriptor(cell.profile)
    if missing or unusable:
        reason = f"missing {', '.join(missing)}" if missing else str(unusable)
        keep_record.append(skipped_record(
            CallIdentity(lab.topology.name, cell.policy, cell.profile, cell.strategy,
                         lab.run_id, cell.slug, cell.link_profile),
            policy.expectation(cell.profile, cell.strategy), reason))
        pytest.skip(f"skipped ({reason})")
    call_dir = results_dir / "calls" / cell.slug
    record = judged_call(lab, policy, cell.strategy, call_dir, SETTINGS, profile=cell.profile,
                         link_profile=cell.link_profile)
    keep_record.append(record)
    for key in ("profile", "link_profile", "connected", "path", "setup_s", "loss_pct",
                "jitter_ms", "rtt_ms", "mos", "outcome", "failure_kind", "tunnel_up_s"):
        record_property(key, getattr(record, key))  # type: ignore[operator]
    record_property("pesq", (record.pesq or {}).get("mos_lqo"))  # type: ignore[operator]
    record_property("basis", (record.expected or {}).get("basis"))  # type: ignore[operator]
    bound = record.judgement.get("mos_bound") or {}
    record_property("min_mos_applied", bound.get("min_mos"))  # type: ignore[operator]
    record_property("min_mos_from", bound.get("source"))  # type: ignore[operator]
    record_property("deciding_rules", ", ".join(  # type: ignore[operator]
        f"{c['rule']}={c['packets']}" for c in record.judgement.get("deciding_rules", [])))
    why = "; ".join(record.judgement.get("reasons", []))
    assert record.outcome != "error", (
        f"{cell.slug}: could not be judged: {why}; logs in {call_dir}")
    assert record.verdict == "pass", (
        f"{cell.slug}: expected {record.expected}, observed {record.outcome}: {why} "
        f"(connected={record.connected}, path={record.path}, mos={record.mos}, "
        f"loss={record.loss_pct}%, error={record.error}); logs in {call_dir}"
    )
