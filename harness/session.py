"""One call under one policy, from lab to judged record: the step that
`callwall run` and the scenario matrix share.

The order: the policy is loaded anew (so every call starts from a fresh
censor), the lab's services are checked and restarted if one died, the
cell's link profile goes on the access link (harness.link.profile; nothing
for `ideal`), the censor's counters are read, the call is placed
(harness.calls.place_call), the counters are read again, the link profile
comes off, PESQ is scored, and the record is built once
(harness.measure.record.build_record) and written next to the call's files."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness.calls import CallOutput, CallSettings, place_call
from harness.calls.procs import is_speech_reference, reference_audio
from harness.censor.counters import RuleCounter, counters_since, read_counters
from harness.faults import Fault
from harness.link.apply import lateness_snapshot
from harness.link.backend import LinkBackendError, LinkLateness
from harness.link.profile import AppliedLinkProfile, link_profile_applied
from harness.measure.capture import censor_capture
from harness.measure.pesq_score import pesq_wb
from harness.measure.record import CallIdentity, CallRecord, build_record
from harness.measure.verdict import CallEvidence, LinkFidelity, RuleCount
from harness.services.lab_services import ServiceStartError, restore_services
from harness.spec.names import Profile
from harness.spec.policy import Policy
from harness.spec.presets import IDEAL_LINK
from harness.testbed import Lab

PCAP_NAME = "censor.pcap"


def judged_call(lab: Lab, policy: Policy, strategy: str, call_dir: Path,
                settings: CallSettings | None = None, fault: Fault | None = None,
                profile: str = Profile.WEBRTC, link_profile: str = IDEAL_LINK) -> CallRecord:
    """Place a call with `profile` and `strategy` on `lab`, whose censor runs
    `policy` (at least when the call starts: a swap-policy `fault` changes it
    mid-call), with `link_profile` on the access link for the call, and judge
    it against the policy's expectation for that cell."""
    settings = settings or CallSettings()
    clock = _Stopwatch()
    lab.apply_policy(policy)
    clock.lap("policy_load")
    call_dir.mkdir(parents=True, exist_ok=True)
    broken = check_services(lab)
    clock.lap("health_check")
    censor = lab.host_with_role("censor")
    with link_profile_applied(lab.network, link_profile, call_dir.name) as link:
        clock.lap("link_profile")
        before = read_counters(censor)
        late_before = _lateness(lab, link)
        clock.lap("counters")
        with _capture(lab, call_dir, settings) as pcap:
            clock.lap("capture")
            output = place_call(lab, profile, strategy, settings, call_dir, fault)
            clock.lap("call")
        clock.lap("capture")
        counters = counters_since(before, read_counters(censor))
        fidelity = _fidelity(late_before, _lateness(lab, link))
        clock.lap("counters")
    clock.lap("link_profile")
    pesq = _pesq(lab, output, settings)
    clock.lap("scoring")
    evidence = CallEvidence(
        caller=output.caller, callee=output.callee, window_s=settings.media_s,
        timelines=list(output.timelines.values()), counters=[_count(c) for c in counters],
        pesq_mos=pesq["mos_lqo"] if pesq else None, killed_by_fault=output.killed_by_fault,
        harness_error=broken,
        link_impaired=lab.topology.impairs_links() or not link.is_ideal,
        link_fidelity=fidelity, link_profile=link.name,
        link_profile_impairment=link.impairment)
    identity = CallIdentity(topology=lab.topology.name, policy=policy.name, profile=profile,
                            strategy=strategy, run_id=lab.run_id, call_id=call_dir.name,
                            link_profile=link.name)
    record = build_record(
        identity, evidence, policy.expectation(profile, strategy),
        faults=[event.to_dict() for event in output.faults],
        started_monotonic=output.started_monotonic, path=output.path,
        path_changes=[c.to_dict() for c in output.path_changes], pesq=pesq,
        files=_files(output, pcap), tunnel_up_s=output.tunnel_up_s,
        setup_offset_s=output.setup_offset_s, link_profile_applied=link.to_dict())
    record.timing_s = call_timing(clock.laps, record, settings.media_s, output.tunnel_up_s)
    (call_dir / "record.json").write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    return record


def check_services(lab: Lab) -> str | None:
    """Before a call: every lab service must be running. One that died is
    started again; one that does not come back makes the call an error (the
    returned text says which)."""
    if lab.services is None:
        return "the lab's services were never started"
    try:
        restarted = restore_services(lab.network, lab.services)
    except ServiceStartError as exc:
        return f"a lab service is down and did not restart: {exc}"
    for what in restarted:
        print(f"[{lab.run_id}] {what} was not running: restarted it before the call",
              file=sys.stderr, flush=True)
    return None


class _Stopwatch:
    """Wall time of the steps of one judged call, added up by name."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


def call_timing(laps: dict[str, float], record: CallRecord, media_s: float,
                tunnel_up_s: float | None) -> dict[str, float | None]:
    """Where one judged call's wall time went, in seconds: the harness's steps
    (policy load, service health check, putting on and taking off the link
    profile, counter reads, capture start and stop,
    PESQ scoring) and the call itself, split into tunnel bring-up, setup (ICE
    or the app's own), the media window, the wait for a failure verdict (a
    call that never connected: from its start to its first failure) and
    teardown (what is left of the call after those)."""
    call_s = laps.get("call", 0.0)
    tunnel = tunnel_up_s or 0.0
    if record.connected and record.setup_s is not None:
        setup, media, failure_wait = record.setup_s - tunnel, media_s, None
    else:
        at = record.failed_at_s
        setup, media = None, 0.0
        failure_wait = None if at is None else max(0.0, at)
    used = tunnel + (setup or 0.0) + media + (failure_wait or 0.0)
    rows: dict[str, float | None] = {
        "policy_load": laps.get("policy_load"), "health_check": laps.get("health_check"),
        "counters": laps.get("counters"), "capture": laps.get("capture"),
        "link_profile": laps.get("link_profile"), "tunnel_up": tunnel_up_s, "setup": setup,
        "failure_wait": failure_wait,
        "media": media, "teardown": max(0.0, call_s - used), "call": call_s,
        "scoring": laps.get("scoring"), "total": sum(laps.values())}
    return {k: None if v is None else round(v, 3) for k, v in rows.items()}


def _lateness(lab: Lab, link: AppliedLinkProfile) -> dict[str, LinkLateness]:
    """The link emulator's own lateness so far (the topology's impaired links
    and the link profile's); a daemon that cannot say (it died with the lab's
    links) gives nothing, and the call's record then carries no fidelity
    figures for it."""
    try:
        return lateness_snapshot(lab.network, link.directions)
    except LinkBackendError as exc:
        print(f"[{lab.run_id}] no link lateness figures: {exc}", file=sys.stderr, flush=True)
        return {}


def _fidelity(before: dict[str, LinkLateness], after: dict[str, LinkLateness]
              ) -> list[LinkFidelity]:
    """Per impaired link direction, how late the emulator was during the call."""
    rows = []
    for label, now in sorted(after.items()):
        window = now.since(before[label]) if label in before else now
        share = window.steal_share
        rows.append(LinkFidelity(
            link=label, packets=window.packets, p99_late_us=window.p99_us,
            max_late_us=window.max_us, tolerance_us=window.tolerance_us,
            over_tolerance=window.over_tolerance,
            steal_pct=None if share is None else round(100 * share, 2),
            missed=window.missed()))
    return rows


def _count(counter: RuleCounter) -> RuleCount:
    return RuleCount(counter.rule, counter.packets, counter.bytes)


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
                    expected_s=settings.media_s)
    return {"mos_lqo": round(score.mos_lqo, 3), "status": score.status,
            "detail": score.detail}


def _capture(lab: Lab, call_dir: Path, settings: CallSettings
             ) -> contextlib.AbstractContextManager[Path | None]:
    if not settings.capture_pcap:
        return contextlib.nullcontext(None)
    return censor_capture(lab.network, call_dir / PCAP_NAME, settings.pcap_max_packets)


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
