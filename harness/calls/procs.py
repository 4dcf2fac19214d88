"""Running the two processes of one call attempt, for every call client: start
the callee then the caller in their hosts, hand them to the fault injector,
wait for both within the budget (stopping what is still running then), and
read back each side's typed report and the harness's view of its process.

Also the pieces every client shares: the reference audio both sides send,
and the environment the processes get."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.calls.base import CallOutput, CallSettings
from harness.faults import Fault, FaultInjector, peer_event
from harness.measure.peer import PeerReport, PeerTimeline
from harness.measure.refsignal import generate_reference_wav
from harness.measure.speech import SpeechSynthesisError, reference_speech
from harness.netns.registry import OwnedProcess, process_start_ticks, terminate
from harness.spec.names import ROLES
from harness.testbed import Lab

REFERENCE_SECONDS = 10.0
REFERENCE_NAME = "reference-speech.wav"
SYNTHETIC_NAME = "reference-synthetic.wav"
POLL_S = 0.05

# role -> the argv of that side's process (the events file is added here).
ArgvFor = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class _Exit:
    at_s: float
    stopped_at_budget: bool


def process_name(role: str) -> str:
    """How a call's process is named in the registry, for every client (the
    fault injector finds the callee by it)."""
    return f"{role} peer"


def run_peers(lab: Lab, argv_for: ArgvFor, call_dir: Path, settings: CallSettings,
              fault: Fault | None = None, strategy: str | None = None) -> CallOutput:
    """One attempt: both processes to their end (at most settings.budget_s
    after they start); with `fault`, inject it. Each side's result is read
    from `<call_dir>/<role>.json`; a side that wrote none gets a report that
    says so."""
    call_dir.mkdir(parents=True, exist_ok=True)
    events: dict[str, Path] = {role: call_dir / f"{role}.events.jsonl" for role in ROLES}
    for path in events.values():
        path.unlink(missing_ok=True)
    injector = FaultInjector(lab, fault) if fault is not None else None
    t0 = time.monotonic()
    if injector is not None:
        injector.before_call(t0)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = peer_env(lab)
    for role in ROLES:
        argv = [*argv_for(role), "--events", str(events[role])]
        procs[role] = lab.host_with_role(role).start(
            argv, what=process_name(role), log=call_dir / f"{role}.log", env=env)
    if injector is not None:
        injector.start(procs, events)
    try:
        exits = _wait_all(procs, t0 + settings.budget_s, t0)
    finally:
        fault_events = injector.stop() if injector is not None else []
    killed = injector.killed if injector is not None else {}
    reports: dict[str, PeerReport] = {
        role: read_report(call_dir, role, strategy, killed=role in killed) for role in ROLES}
    timelines: dict[str, PeerTimeline] = {
        role: _timeline(role, reports[role], events[role], t0, exits[role], killed.get(role))
        for role in ROLES}
    return CallOutput(caller=reports["caller"], callee=reports["callee"], directory=call_dir,
                      faults=fault_events, timelines=timelines,
                      wall_s=round(time.monotonic() - t0, 3), started_monotonic=t0,
                      killed_by_fault=frozenset(killed))


def read_report(call_dir: Path, role: str, strategy: str | None = None, *,
                killed: bool = False) -> PeerReport:
    report = PeerReport.read(call_dir / f"{role}.json", role)
    if report is not None:
        return report
    return PeerReport.absent(role, "peer-killed" if killed else "peer-crashed-or-timed-out",
                             f"no result; see {call_dir / f'{role}.log'}", strategy=strategy)


def reference_audio(lab: Lab) -> Path:
    """What both sides send: reference speech from espeak-ng (so PESQ applies),
    or, where espeak-ng is missing, the synthetic speech-like signal."""
    path = lab.registry.files / REFERENCE_NAME
    if not path.exists():
        try:
            speech = reference_speech(lab.registry.files / "speech")
        except SpeechSynthesisError:
            generate_reference_wav(path.with_name(SYNTHETIC_NAME), REFERENCE_SECONDS)
            return path.with_name(SYNTHETIC_NAME)
        shutil.copyfile(speech.wav_48k, path)
    return path


def is_speech_reference(path: Path) -> bool:
    return path.name == REFERENCE_NAME


def peer_env(lab: Lab) -> dict[str, str]:
    """The call processes' environment: the harness's, trusting the run's CA."""
    env = dict(os.environ)
    if lab.services is not None:
        env["SSL_CERT_FILE"] = lab.services.ca_file
    return env


def _wait_all(procs: Mapping[str, subprocess.Popen[bytes]], deadline: float,
              t0: float) -> dict[str, _Exit]:
    """Wait for every process until `deadline`, noting when each ended; stop the rest."""
    exits: dict[str, _Exit] = {}
    while len(exits) < len(procs):
        for role, proc in procs.items():
            if role not in exits and proc.poll() is not None:
                exits[role] = _Exit(round(time.monotonic() - t0, 3), False)
        if len(exits) == len(procs) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    for role, proc in procs.items():
        if role not in exits:
            _stop(proc)
            exits[role] = _Exit(round(time.monotonic() - t0, 3), True)
    return exits


def _stop(proc: subprocess.Popen[bytes]) -> None:
    ticks = process_start_ticks(proc.pid)
    if ticks is not None:
        terminate(OwnedProcess(proc.pid, ticks, "", "peer"))
    proc.wait(timeout=5)


def _timeline(role: str, report: PeerReport, events: Path, t0: float, exit: _Exit,
              killed_s: float | None) -> PeerTimeline:
    def since_start(event: str) -> float | None:
        at = peer_event(events, event)
        return None if at is None else round(at - t0, 3)

    return PeerTimeline(role=role, wrote_result=report.wrote_result,
                        attempt_s=since_start("attempt"), media_s=since_start("media"),
                        failed_s=since_start("failed"), exited_s=exit.at_s, killed_s=killed_s,
                        stopped_at_budget=exit.stopped_at_budget)
