"""One call under one policy, from lab to judged record: the step that
`callwall run` and the scenario matrix share."""

from __future__ import annotations

import json
from pathlib import Path

from harness.clients.call import CallSettings, place_call
from harness.faults import Fault
from harness.lab.lab import Lab
from harness.measure.record import CallRecord, build_record
from harness.spec.policy import Policy


def judged_call(lab: Lab, policy: Policy, strategy: str, call_dir: Path,
                settings: CallSettings | None = None, fault: Fault | None = None) -> CallRecord:
    """Place a call with `strategy` on `lab`, whose censor runs `policy` (at
    least when the call starts: a swap-policy `fault` changes it mid-call)."""
    if lab.registry.state.policy != policy.name:
        lab.apply_policy(policy)
    output = place_call(lab, strategy, call_dir, settings or CallSettings(), fault)
    record = build_record(topology=lab.topology.name, policy=policy.name, strategy=strategy,
                          caller=output.caller, callee=output.callee,
                          expectation=policy.expect.get(strategy),
                          timelines=list(output.timelines.values()),
                          faults=[event.to_dict() for event in output.faults])
    record.run_id, record.call_id = lab.run_id, call_dir.name
    (call_dir / "record.json").write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    return record
