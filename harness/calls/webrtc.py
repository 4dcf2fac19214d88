"""Placing one call in a running lab: an aiortc peer process in the callee
host and one in the caller host, meeting through the signalling server, and
each writing what it saw as JSON.

The whole call has a hard budget (CallSettings.budget_s) counted from when the
peers start: a peer still running then is stopped, so a call always ends.
Optionally one injected fault (harness.faults) is performed during the call;
whatever happens, both sides get a result dict (a peer that wrote none gets
one saying so) and a timeline of what the harness saw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.faults import Fault, FaultEvent, FaultInjector, peer_event
from harness.measure.record import PeerTimeline
from harness.measure.refsignal import generate_reference_wav
from harness.measure.speech import SpeechSynthesisError, reference_speech
from harness.netns.endpoint import Endpoint
from harness.netns.host import LabHost
from harness.netns.registry import OwnedProcess, process_start_ticks, terminate
from harness.testbed import Lab
from harness.tunnels.base import TunnelledEndpoints

REFERENCE_SECONDS = 10.0
REFERENCE_NAME = "reference-speech.wav"
SYNTHETIC_NAME = "reference-synthetic.wav"
GRACE_S = 20.0
POLL_S = 0.05
ROLES = ("callee", "caller")


@dataclass(frozen=True)
class CallSettings:
    media_seconds: float = 6.0
    setup_timeout_s: float = 15.0
    record_audio: bool = True
    # A peer fails its call ("media-stalled") when no audio frame is decoded for this long.
    stall_timeout_s: float = 3.0
    # A pcap of the censor's interfaces per call: headers only, at most this many packets.
    capture_pcap: bool = True
    pcap_max_packets: int = 100_000

    @property
    def budget_s(self) -> float:
        """The hard limit for the whole call, peers included."""
        return self.setup_timeout_s + self.media_seconds + GRACE_S


@dataclass(frozen=True)
class CallOutput:
    caller: dict[str, Any]
    callee: dict[str, Any]
    directory: Path
    faults: list[FaultEvent] = field(default_factory=list)
    timelines: dict[str, PeerTimeline] = field(default_factory=dict)
    wall_s: float | None = None
    # The call's start (the harness started the peers) on the monotonic clock.
    started_monotonic: float = 0.0


def place_call(lab: Lab, strategy: str, call_dir: Path,
               settings: CallSettings = CallSettings(), fault: Fault | None = None,
               endpoints: TunnelledEndpoints | None = None) -> CallOutput:
    """Run one call to its end (at most settings.budget_s once the peers
    start); with `fault`, inject it during the call. `strategy` is an ICE
    strategy; inside a tunnel (harness.calls.place opens it), `endpoints`
    says what the caller uses instead of the lab's own addresses."""
    call_dir.mkdir(parents=True, exist_ok=True)
    audio = reference_audio(lab)
    room = f"{lab.run_id}-{call_dir.name}"
    events = {role: call_dir / f"{role}.events.jsonl" for role in ROLES}
    for path in events.values():
        path.unlink(missing_ok=True)
    injector = FaultInjector(lab, fault) if fault is not None else None
    t0 = time.monotonic()
    if injector is not None:
        injector.before_call(t0)
    procs = {}
    for role in ROLES:
        host = lab.host_with_role(role)
        argv = _peer_argv(lab, role, strategy, room, audio, call_dir, settings,
                          endpoints if role == "caller" else None)
        argv += ["--events", str(events[role])]
        procs[role] = host.start(argv, what=f"{role} peer", log=call_dir / f"{role}.log",
                                 env=_peer_env(lab))
    if injector is not None:
        injector.start(procs, events)
    try:
        exits = _wait_all(procs, t0 + settings.budget_s, t0)
    finally:
        fault_events = injector.stop() if injector is not None else []
    killed = injector.killed if injector is not None else {}
    results = {role: _read_result(call_dir, role, strategy, role in killed) for role in ROLES}
    timelines = {role: _timeline(role, results[role], events[role], t0, exits[role],
                                 killed.get(role)) for role in ROLES}
    return CallOutput(caller=results["caller"], callee=results["callee"],
                      directory=call_dir, faults=fault_events, timelines=timelines,
                      wall_s=round(time.monotonic() - t0, 3), started_monotonic=t0)


def reference_audio(lab: Lab) -> Path:
    """What both peers send: reference speech from espeak-ng (so PESQ applies),
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


def _peer_argv(lab: Lab, role: str, strategy: str, room: str, audio: Path, call_dir: Path,
               settings: CallSettings, endpoints: TunnelledEndpoints | None = None) -> list[str]:
    services = lab.services
    assert services is not None, "the lab's services are not running"
    host: LabHost = lab.host_with_role(role)
    endpoints = endpoints or TunnelledEndpoints()
    turn = endpoints.turn or Endpoint(services.relay_ip, services.turn_port)
    host_ip = endpoints.host_ip or str(lab.topology.address_of(host.name))
    argv = [
        sys.executable, "-m", "harness.calls.peer", "--role", role,
        "--signal", f"{services.signalling_ip}:{services.signalling_port}",
        "--room", room, "--strategy", strategy,
        "--stun", f"{services.stun_ip}:{services.stun_port}",
        "--turn", turn.host, "--turn-port", str(turn.port),
        "--turns-port", str(services.turns_port),
        "--turn-user", services.turn_username, "--turn-pass", services.turn_password,
        "--ca-file", services.ca_file, "--audio", str(audio),
        "--media-seconds", str(settings.media_seconds),
        "--setup-timeout", str(settings.setup_timeout_s),
        "--out", str(call_dir / f"{role}.json"),
        "--host-ip", host_ip,
        "--stall-timeout", str(settings.stall_timeout_s),
    ]
    if settings.record_audio:
        argv += ["--record", str(call_dir / f"{role}-received.wav")]
    return argv


def _peer_env(lab: Lab) -> dict[str, str]:
    env = dict(os.environ)
    assert lab.services is not None
    env["SSL_CERT_FILE"] = lab.services.ca_file
    return env


@dataclass(frozen=True)
class _Exit:
    at_s: float
    stopped_at_budget: bool


def _wait_all(procs: dict[str, subprocess.Popen[bytes]], deadline: float,
              t0: float) -> dict[str, _Exit]:
    """Wait for every peer until `deadline`, noting when each ended; stop the rest."""
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


def _read_result(call_dir: Path, role: str, strategy: str,
                 killed: bool = False) -> dict[str, Any]:
    path = call_dir / f"{role}.json"
    try:
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    except (OSError, ValueError):
        return {"role": role, "strategy": strategy, "connected": False,
                "error": "peer-killed" if killed else "peer-crashed-or-timed-out",
                "failure_stage": "process", "log": str(call_dir / f"{role}.log"),
                "wrote_result": False}


def _timeline(role: str, result: dict[str, Any], events: Path, t0: float, exit: _Exit,
              killed_s: float | None) -> PeerTimeline:
    def since_start(event: str) -> float | None:
        at = peer_event(events, event)
        return None if at is None else round(at - t0, 3)

    return PeerTimeline(role=role, wrote_result=result.get("wrote_result", True) is not False,
                        attempt_s=since_start("attempt"), media_s=since_start("media"),
                        failed_s=since_start("failed"), exited_s=exit.at_s, killed_s=killed_s,
                        stopped_at_budget=exit.stopped_at_budget)
