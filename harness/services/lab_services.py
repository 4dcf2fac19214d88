"""The lab's servers, started as real processes inside their hosts: a coturn
relay (UDP and TCP 3478, TLS 443), a STUN-only coturn, and the signalling
server. Credentials and the TLS CA are generated per run, in the run's
private directory, and removed with it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.lab.host import LabHost
from harness.services.certs import issue_run_certificates
from harness.services.directory import ServiceDirectory
from harness.services.readiness import wait_listening
from harness.services.turn import TurnServerConfig, generate_credentials, turnserver_argv

if TYPE_CHECKING:
    from harness.lab.lab import Lab

TURN_PORT = 3478
TURNS_PORT = 443
STUN_PORT = 3478
SIGNALLING_PORT = 443
READY_TIMEOUT_S = 15.0


class ServiceStartError(RuntimeError):
    pass


def start_lab_services(lab: Lab) -> ServiceDirectory:
    root = lab.registry.files / "services"
    root.mkdir(mode=0o700, exist_ok=True)
    relay = lab.host_with_role("relay")
    relay_ip = str(lab.topology.address_of(relay.name))
    stun = lab.host_with_role("stun")
    signalling = lab.host_with_role("signalling")
    username, password = generate_credentials()
    certs = issue_run_certificates(root / "pki", ip_sans=[relay_ip])
    turn = TurnServerConfig(listen_ip=relay_ip, relay_ip=relay_ip, workdir=root / relay.name,
                            port=TURN_PORT, tls_port=TURNS_PORT, username=username,
                            password=password, cert=certs.server_cert, key=certs.server_key)
    _start_coturn(relay, turn, "coturn relay", [("udp", TURN_PORT), ("tcp", TURN_PORT),
                                                ("tcp", TURNS_PORT)])
    stun_ip = str(lab.topology.address_of(stun.name))
    stun_cfg = TurnServerConfig.stun_server(stun_ip, root / stun.name, port=STUN_PORT)
    _start_coturn(stun, stun_cfg, "coturn stun", [("udp", STUN_PORT)])
    signalling_ip = str(lab.topology.address_of(signalling.name))
    _start_signalling(signalling, signalling_ip, root)
    return ServiceDirectory(
        relay_ip=relay_ip, turn_port=TURN_PORT, turns_port=TURNS_PORT, turn_username=username,
        turn_password=password, ca_file=str(certs.ca_cert), stun_ip=stun_ip,
        stun_port=STUN_PORT, signalling_ip=signalling_ip, signalling_port=SIGNALLING_PORT,
    )


def _start_coturn(host: LabHost, cfg: TurnServerConfig, what: str,
                  sockets: Sequence[tuple[str, int]]) -> None:
    cfg.workdir.mkdir(mode=0o700, exist_ok=True)
    log = cfg.workdir / "stderr.log"
    proc = host.start(turnserver_argv(cfg), what=what, log=log)
    _await_sockets(host, proc, what, sockets, [log, cfg.log_file])


def _start_signalling(host: LabHost, ip: str, root: Path) -> None:
    log = root / "signalling.log"
    argv = [sys.executable, "-m", "harness.services.signalling", "--listen", ip,
            "--port", str(SIGNALLING_PORT)]
    proc = host.start(argv, what="signalling server", log=log)
    _await_sockets(host, proc, "signalling server", [("tcp", SIGNALLING_PORT)], [log])


def _await_sockets(host: LabHost, proc: subprocess.Popen[bytes], what: str,
                   sockets: Sequence[tuple[str, int]], logs: Sequence[Path]) -> None:
    missing = wait_listening(proc.pid, sockets, READY_TIMEOUT_S)
    if proc.poll() is not None:
        raise ServiceStartError(f"{what} in {host.name} exited with {proc.returncode}"
                                f"{_log_tail(logs)}")
    if missing:
        ports = ", ".join(f"{p}/{n}" for p, n in missing)
        raise ServiceStartError(f"{what} in {host.name} is not listening on {ports} after "
                                f"{READY_TIMEOUT_S:g}s{_log_tail(logs)}")


def _log_tail(logs: Sequence[Path], lines: int = 8) -> str:
    text = []
    for log in logs:
        if log.is_file():
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            text += [f"\n  {log.name}: {line}" for line in tail]
    return "".join(text)
