"""End-to-end calls on loopback: real coturn (relay + STUN-only), the signalling
server and two peer processes, for every strategy.

Addresses: services on 127.0.0.1 (free high ports), caller host candidates on
127.0.0.2 and callee host candidates on 127.0.0.3 (all of 127/8 is local on Linux).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.calls.strategies import DIRECT, STRATEGIES
from harness.measure.refsignal import generate_reference_wav
from harness.services.pki import issue_run_certificates
from harness.services.turn import (
    TurnServerConfig,
    generate_credentials,
    turnserver_argv,
    wait_stun_ready,
    wait_tcp_ready,
)

SERVICE_IP = "127.0.0.1"
CALLER_IP = "127.0.0.2"
CALLEE_IP = "127.0.0.3"
MEDIA_SECONDS = 5.0
SETUP_TIMEOUT = 20.0
PEER_WAIT_S = SETUP_TIMEOUT + MEDIA_SECONDS + 30.0
READY_TIMEOUT_S = 10.0

def free_port() -> int:
    """A port free for both UDP and TCP on SERVICE_IP (best effort)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((SERVICE_IP, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((SERVICE_IP, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass(frozen=True)
class Services:
    turn_port: int
    turns_port: int
    stun_port: int
    signal_port: int
    username: str
    password: str
    ca_file: Path
    audio: Path

    @classmethod
    def without_coturn(cls, signal_port: int, audio: Path) -> Services:
        """Only signalling is real; the TURN/STUN ports point at nothing."""
        return cls(free_port(), free_port(), free_port(), signal_port, "u", "p",
                   Path("/nonexistent-ca.pem"), audio)


class ProcessGroup:
    """Processes started by one fixture; all stopped in its finalizer."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as handle:
            proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


def start_coturn(group: ProcessGroup, cfg: TurnServerConfig) -> None:
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    proc = group.start(turnserver_argv(cfg), cfg.workdir / "stdout.log")
    if not wait_stun_ready(SERVICE_IP, cfg.port, READY_TIMEOUT_S):
        raise RuntimeError(f"coturn on port {cfg.port} not ready (rc={proc.poll()})")
    if cfg.tls_port is not None and not wait_tcp_ready(SERVICE_IP, cfg.tls_port, READY_TIMEOUT_S):
        raise RuntimeError(f"coturn TLS port {cfg.tls_port} not ready")


def start_signalling(group: ProcessGroup, port: int, log: Path) -> None:
    argv = [sys.executable, "-m", "harness.services.signalling",
            "--listen", SERVICE_IP, "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    group.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if line != "ready":
        raise RuntimeError(f"signalling server did not start: {line!r}")
    log.write_text("ready\n")


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_reference_wav(tmp_path_factory.mktemp("audio") / "ref.wav", 6.0)


@pytest.fixture(scope="module")
def signal_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    group = ProcessGroup()
    port = free_port()
    try:
        start_signalling(group, port, tmp_path_factory.mktemp("signalling") / "signalling.log")
        yield port
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, signal_port: int, audio: Path
) -> Iterator[Services]:
    if shutil.which("turnserver") is None:
        pytest.skip("needs coturn (turnserver) on PATH")
    root = tmp_path_factory.mktemp("loopback")
    group = ProcessGroup()
    try:
        yield _start_services(root, group, signal_port, audio)
    finally:
        group.stop_all()


def _start_services(root: Path, group: ProcessGroup, signal_port: int, audio: Path) -> Services:
    username, password = generate_credentials()
    certs = issue_run_certificates(root / "pki", ip_sans=[SERVICE_IP])
    turn = TurnServerConfig(
        listen_ip=SERVICE_IP, relay_ip=SERVICE_IP, workdir=root / "turn",
        port=free_port(), tls_port=free_port(), username=username, password=password,
        cert=certs.server_cert, key=certs.server_key, allow_loopback_peers=True,
    )
    stun = TurnServerConfig.stun_server(SERVICE_IP, root / "stun", port=free_port())
    start_coturn(group, turn)
    start_coturn(group, stun)
    assert turn.tls_port is not None
    return Services(turn.port, turn.tls_port, stun.port, signal_port, username, password,
                    certs.ca_cert, audio)


def peer_argv(svc: Services, role: str, strategy: str, room: str, out: Path,
              setup_timeout: float = SETUP_TIMEOUT,
              media_seconds: float = MEDIA_SECONDS) -> list[str]:
    return [
        sys.executable, "-m", "harness.calls.peer", "--role", role,
        "--signal", f"{SERVICE_IP}:{svc.signal_port}", "--room", room,
        "--strategy", strategy, "--stun", f"{SERVICE_IP}:{svc.stun_port}",
        "--turn", SERVICE_IP, "--turn-port", str(svc.turn_port),
        "--turns-port", str(svc.turns_port),
        "--turn-user", svc.username, f"--turn-pass={svc.password}",
        "--audio", str(svc.audio), "--media-seconds", str(media_seconds),
        "--setup-timeout", str(setup_timeout), "--out", str(out / f"{role}.json"),
        "--record", str(out / f"{role}-received.wav"),
        "--host-ip", CALLER_IP if role == "caller" else CALLEE_IP,
    ]


def peer_env(ca_file: Path | None) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin"}
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    return env


def run_call(svc: Services, strategy: str, out: Path, caller_first: bool = True,
             trust_ca: bool = True) -> dict[str, Any]:
    group = ProcessGroup()
    roles = ["caller", "callee"] if caller_first else ["callee", "caller"]
    env = peer_env(svc.ca_file if trust_ca else None)
    try:
        procs = {}
        for role in roles:
            argv = peer_argv(svc, role, strategy, f"room-{strategy}", out)
            procs[role] = group.start(argv, out / f"{role}.log", env=env)
            time.sleep(0.5)
        codes = {role: proc.wait(timeout=PEER_WAIT_S) for role, proc in procs.items()}
    finally:
        group.stop_all()
    results = {role: json.loads((out / f"{role}.json").read_text()) for role in roles}
    return {"codes": codes, **results}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_call_connects_with_media(services: Services, strategy: str, tmp_path: Path) -> None:
    # Alternate start order: the call must not depend on who joins first.
    caller_first = STRATEGIES.index(strategy) % 2 == 0
    outcome = run_call(services, strategy, tmp_path, caller_first)
    assert outcome["codes"] == {"caller": 0, "callee": 0}, _logs(tmp_path)
    for role in ("caller", "callee"):
        result = outcome[role]
        print(role, json.dumps(result))
        _check_result(result, role, strategy)


def _check_result(result: dict[str, Any], role: str, strategy: str) -> None:
    assert result["role"] == role and result["strategy"] == strategy
    assert result["error"] is None, result
    assert result["connected"] is True
    assert result["packets_received"] > 100
    assert result["loss_pct"] is not None and result["loss_pct"] < 2.0
    assert 0 < result["setup_s"] < SETUP_TIMEOUT
    assert result["codec"] == "audio/opus"
    pair = result["selected_pair"]
    assert pair is not None
    if strategy == DIRECT:
        assert pair["local_type"] != "relay" and pair["remote_type"] != "relay"
    else:
        assert pair["local_type"] == "relay"
        expected = {"turn-udp": "udp", "turn-tcp": "tcp", "turn-tls-443": "tls"}[strategy]
        assert pair["local_relay_protocol"] == expected


def _logs(directory: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(directory.glob("*.log")))


# ----------------------------------------------------------------------------- failures


def run_alone(svc: Services, role: str, out: Path, setup_timeout: float,
              sigterm_after: float | None = None) -> tuple[int, dict[str, Any], float]:
    """One peer without a partner; returns (exit code, result, seconds)."""
    group = ProcessGroup()
    argv = peer_argv(svc, role, DIRECT, f"alone-{out.name}", out, setup_timeout)
    started = time.monotonic()
    try:
        proc = group.start(argv, out / f"{role}.log", env=peer_env(None))
        if sigterm_after is not None:
            time.sleep(sigterm_after)
            proc.terminate()
        code = proc.wait(timeout=setup_timeout + 30)
    finally:
        group.stop_all()
    elapsed = time.monotonic() - started
    return code, json.loads((out / f"{role}.json").read_text()), elapsed


def test_signalling_unreachable_is_reported(audio: Path, tmp_path: Path) -> None:
    svc = Services.without_coturn(free_port(), audio)
    code, result, elapsed = run_alone(svc, "caller", tmp_path, setup_timeout=5)
    assert code == 0
    assert result["error"] == "signalling-unreachable"
    assert result["failure_stage"] == "signalling"
    assert result["connected"] is False
    assert elapsed < 10


def test_peer_without_partner_times_out(signal_port: int, audio: Path, tmp_path: Path) -> None:
    svc = Services.without_coturn(signal_port, audio)
    code, result, elapsed = run_alone(svc, "callee", tmp_path, setup_timeout=3)
    assert code == 0
    assert (result["error"], result["failure_stage"]) == ("setup-timeout", "signalling")
    assert elapsed < 15


def test_sigterm_still_writes_result(signal_port: int, audio: Path, tmp_path: Path) -> None:
    svc = Services.without_coturn(signal_port, audio)
    code, result, elapsed = run_alone(svc, "caller", tmp_path, setup_timeout=60,
                                      sigterm_after=2.0)
    assert code == 0
    assert result["error"] == "terminated"
    assert elapsed < 15


def test_unreachable_relay_fails_in_gathering(services: Services, tmp_path: Path) -> None:
    svc = Services(free_port(), free_port(), services.stun_port, services.signal_port,
                   services.username, services.password, services.ca_file, services.audio)
    outcome = run_call(svc, "turn-udp", tmp_path)
    assert outcome["codes"] == {"caller": 0, "callee": 0}
    for role in ("caller", "callee"):
        assert outcome[role]["error"] == "no-local-candidates", outcome[role]
        assert outcome[role]["failure_stage"] == "gathering"


def test_untrusted_relay_certificate_fails(services: Services, tmp_path: Path) -> None:
    outcome = run_call(services, "turn-tls-443", tmp_path, trust_ca=False)
    assert outcome["codes"] == {"caller": 0, "callee": 0}
    for role in ("caller", "callee"):
        assert outcome[role]["error"] == "no-local-candidates", outcome[role]
        assert outcome[role]["connected"] is False


def test_hangup_during_media_is_reported(services: Services, tmp_path: Path) -> None:
    group = ProcessGroup()
    env = peer_env(services.ca_file)
    procs = {}
    try:
        for role in ("callee", "caller"):
            argv = peer_argv(services, role, DIRECT, "room-hangup", tmp_path, media_seconds=30)
            procs[role] = group.start(argv, tmp_path / f"{role}.log", env=env)
        time.sleep(5.0)
        procs["caller"].terminate()
        codes = {role: proc.wait(timeout=20) for role, proc in procs.items()}
    finally:
        group.stop_all()
    assert codes == {"caller": 0, "callee": 0}
    caller = json.loads((tmp_path / "caller.json").read_text())
    callee = json.loads((tmp_path / "callee.json").read_text())
    assert (caller["error"], caller["failure_stage"]) == ("terminated", "media")
    assert (callee["error"], callee["failure_stage"]) == ("peer-hung-up", "media")
    for result in (caller, callee):
        assert result["connected"] is True
        assert result["packets_received"] > 50
        assert 0 < result["media_seconds"] < 10
