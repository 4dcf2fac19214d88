"""Placing one call in a running lab: an aiortc peer process in the callee
host and one in the caller host, meeting through the signalling server, and
each writing what it saw as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.lab.host import LabHost
from harness.lab.lab import Lab
from harness.lab.registry import OwnedProcess, process_start_ticks, terminate
from harness.measure.refsignal import generate_reference_wav

REFERENCE_SECONDS = 10.0
GRACE_S = 20.0


@dataclass(frozen=True)
class CallSettings:
    media_seconds: float = 6.0
    setup_timeout_s: float = 15.0
    record_audio: bool = True

    @property
    def budget_s(self) -> float:
        """The hard limit for the whole call, peers included."""
        return self.setup_timeout_s + self.media_seconds + GRACE_S


@dataclass(frozen=True)
class CallOutput:
    caller: dict[str, Any]
    callee: dict[str, Any]
    directory: Path


def place_call(lab: Lab, strategy: str, call_dir: Path,
               settings: CallSettings = CallSettings()) -> CallOutput:
    call_dir.mkdir(parents=True, exist_ok=True)
    audio = reference_audio(lab)
    room = f"{lab.run_id}-{call_dir.name}"
    procs = {}
    for role in ("callee", "caller"):
        host = lab.host_with_role(role)
        argv = _peer_argv(lab, role, strategy, room, audio, call_dir, settings)
        procs[role] = host.start(argv, what=f"{role} peer", log=call_dir / f"{role}.log",
                                 env=_peer_env(lab))
    _wait_all(procs, settings.budget_s)
    return CallOutput(caller=_read_result(call_dir, "caller", strategy),
                      callee=_read_result(call_dir, "callee", strategy),
                      directory=call_dir)


def reference_audio(lab: Lab) -> Path:
    path = lab.registry.files / "reference.wav"
    if not path.exists():
        generate_reference_wav(path, REFERENCE_SECONDS)
    return path


def _peer_argv(lab: Lab, role: str, strategy: str, room: str, audio: Path, call_dir: Path,
               settings: CallSettings) -> list[str]:
    services = lab.services
    assert services is not None, "the lab's services are not running"
    host: LabHost = lab.host_with_role(role)
    argv = [
        sys.executable, "-m", "harness.clients.peer", "--role", role,
        "--signal", f"{services.signalling_ip}:{services.signalling_port}",
        "--room", room, "--strategy", strategy,
        "--stun", f"{services.stun_ip}:{services.stun_port}",
        "--turn", services.relay_ip, "--turn-port", str(services.turn_port),
        "--turns-port", str(services.turns_port),
        "--turn-user", services.turn_username, "--turn-pass", services.turn_password,
        "--ca-file", services.ca_file, "--audio", str(audio),
        "--media-seconds", str(settings.media_seconds),
        "--setup-timeout", str(settings.setup_timeout_s),
        "--out", str(call_dir / f"{role}.json"),
        "--host-ip", str(lab.topology.address_of(host.name)),
    ]
    if settings.record_audio:
        argv += ["--record", str(call_dir / f"{role}-received.wav")]
    return argv


def _peer_env(lab: Lab) -> dict[str, str]:
    env = dict(os.environ)
    assert lab.services is not None
    env["SSL_CERT_FILE"] = lab.services.ca_file
    return env


def _wait_all(procs: dict[str, subprocess.Popen[bytes]], budget_s: float) -> None:
    deadline = time.monotonic() + budget_s
    for proc in procs.values():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    ticks = process_start_ticks(proc.pid)
    if ticks is not None:
        terminate(OwnedProcess(proc.pid, ticks, "", "peer"))
    proc.wait(timeout=5)


def _read_result(call_dir: Path, role: str, strategy: str) -> dict[str, Any]:
    path = call_dir / f"{role}.json"
    try:
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    except (OSError, ValueError):
        return {"role": role, "strategy": strategy, "connected": False,
                "error": "peer-crashed-or-timed-out",
                "failure_stage": "process", "log": str(call_dir / f"{role}.log")}
