"""One call under one policy, from lab to judged record: the step that
`callwall run` and the scenario matrix share."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.calls.place import WEBRTC, call_paths, place_profile_call
from harness.calls.webrtc import (
    CallOutput,
    CallSettings,
    is_speech_reference,
    reference_audio,
)
from harness.censor.counters import counters_since, read_counters
from harness.faults import Fault
from harness.measure.capture import censor_capture
from harness.measure.pesq_score import pesq_wb
from harness.measure.record import CallRecord, attach_timelines, build_record
from harness.spec.policy import Policy
from harness.testbed import Lab

PCAP_NAME = "censor.pcap"


def judged_call(lab: Lab, policy: Policy, strategy: str, call_dir: Path,
                settings: CallSettings | None = None, fault: Fault | None = None,
                profile: str = WEBRTC) -> CallRecord:
    """Place a call with `strategy` on `lab`, whose censor runs `policy` (at
    least when the call starts: a swap-policy `fault` changes it mid-call).
    `profile` (harness.calls.place) picks the client; the call is judged
    against the policy's expectation for that profile and strategy."""
    settings = settings or CallSettings()
    # Loaded anew for every call, so each starts from a fresh censor: verdicts
    # an earlier call left behind (a server blackholed for ten minutes, a
    # flow set) must not decide this one.
    lab.apply_policy(policy)
    call_dir.mkdir(parents=True, exist_ok=True)
    censor = lab.host_with_role("censor")
    before = read_counters(censor)
    with _capture(lab, call_dir, settings) as pcap:
        output = place_profile_call(lab, profile, strategy, settings, call_dir, fault)
    expectation = policy.expectation(profile, strategy)
    record = build_record(topology=lab.topology.name, policy=policy.name, strategy=strategy,
                          caller=output.caller, callee=output.callee,
                          expectation=expectation,
                          timelines=list(output.timelines.values()),
                          faults=[event.to_dict() for event in output.faults])
    record.run_id, record.call_id = lab.run_id, call_dir.name
    record.profile = profile
    record.path, record.path_changes = call_paths(output)
    record.failure_detail = output.caller.get("detail") or output.callee.get("detail")
    attach_timelines(record, output.caller, output.callee, output.started_monotonic)
    record.censor_counters = [asdict(c) for c in counters_since(before, read_counters(censor))]
    record.files = _files(output, pcap)
    record.pesq = _pesq(lab, output, settings)
    (call_dir / "record.json").write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    return record


def _pesq(lab: Lab, output: CallOutput, settings: CallSettings) -> dict[str, Any] | None:
    """PESQ-WB of what the callee heard of the caller's speech (the direction
    out of the censored network), against the reference that was sent."""
    if not settings.record_audio:
        return None
    reference = reference_audio(lab)
    if not is_speech_reference(reference):
        return {"mos_lqo": None, "status": "no-speech-reference",
                "detail": "espeak-ng is missing: the peers sent a synthetic signal"}
    score = pesq_wb(reference, output.directory / "callee-received.wav",
                    expected_s=settings.media_seconds)
    return {"mos_lqo": round(score.mos_lqo, 3), "status": score.status,
            "detail": score.detail}


def _capture(lab: Lab, call_dir: Path, settings: CallSettings
             ) -> contextlib.AbstractContextManager[Path | None]:
    if not settings.capture_pcap:
        return contextlib.nullcontext(None)
    return censor_capture(lab, call_dir / PCAP_NAME, settings.pcap_max_packets)


def _files(output: CallOutput, pcap: Path | None) -> dict[str, str | None]:
    """The call's files, relative to the run's results directory (the parent
    of calls/), so a report can link them."""
    run_dir = output.directory.parent.parent

    def relative(path: Path | None) -> str | None:
        if path is None or not path.exists():
            return None
        return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)

    return {"received_wav": relative(output.directory / "callee-received.wav"),
            "received_wav_reverse": relative(output.directory / "caller-received.wav"),
            "pcap": relative(pcap)}
