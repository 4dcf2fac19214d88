"""The policy × strategy matrix on the default topology.

Each policy file declares what every strategy should see under it
(`expect:`); each case places one real call through the censor and checks
the observed outcome against that declaration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import paths
from harness.clients.call import CallSettings
from harness.lab.lab import Lab
from harness.measure.record import CallRecord
from harness.session import judged_call
from harness.spec.policy import load_policy


def _flag(name: str) -> bool:
    return os.environ.get(name, "1").lower() not in ("0", "no", "false", "off")


# CALLWALL_AUDIO=0 / CALLWALL_PCAP=0 switch off the received WAVs (and so PESQ)
# and the censor pcaps, for long runs.
SETTINGS = CallSettings(record_audio=_flag("CALLWALL_AUDIO"), capture_pcap=_flag("CALLWALL_PCAP"))


def _cases() -> list[tuple[str, str]]:
    cases = []
    for path in paths.all_policies():
        policy = load_policy(path)
        cases += [(policy.name, strategy) for strategy in policy.expect]
    return cases


@pytest.mark.parametrize("policy_name, strategy", _cases())
def test_call(lab: Lab, results_dir: Path, keep_record: list[CallRecord],
              record_property: object, policy_name: str, strategy: str) -> None:
    policy = load_policy(paths.policy_path(policy_name), lab.topology.sets.keys())
    call_dir = results_dir / "calls" / f"{policy_name}--{strategy}"
    record = judged_call(lab, policy, strategy, call_dir, SETTINGS)
    keep_record.append(record)
    for key in ("connected", "setup_s", "loss_pct", "jitter_ms", "rtt_ms", "mos", "outcome",
                "failure_kind"):
        record_property(key, getattr(record, key))  # type: ignore[operator]
    record_property("pesq", (record.pesq or {}).get("mos_lqo"))  # type: ignore[operator]
    assert record.verdict == "pass", (
        f"{policy_name}/{strategy}: expected {record.expected}, observed {record.outcome} "
        f"(connected={record.connected}, mos={record.mos}, loss={record.loss_pct}%, "
        f"error={record.error}); logs in {call_dir}"
    )
