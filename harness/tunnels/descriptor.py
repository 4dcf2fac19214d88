"""Tunnels described by endpoint descriptors (harness.spec.descriptor): a
user's own circumvention tool, run for real beside wireguard and openvpn
behind the same Tunnel protocol.

The server side runs in the `vpn` host and the client side in the `caller`
host, each with its descriptor argv (placeholders filled in element by
element, never through a shell), each recorded in the run's registry under
the tunnel's label (harness.tunnels.plumbing) and waited for as the
descriptor says: a listening port, or a line in its log. A descriptor tunnel
carries the caller's TURN traffic (``carries: turn-udp`` or ``turn-tcp``):
its client side listens on 127.0.0.1:``local_port`` and forwards to the
lab's TURN relay through the server, and the caller's peer uses that local
port as its TURN server (TunnelledEndpoints.turn), as with shadowsocks.

`down` runs each side's ``stop`` argv if it has one, then stops exactly the
processes `up` started and removes the files it wrote.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from pathlib import Path

from harness.logtail import log_tail
from harness.netns.endpoint import Endpoint
from harness.netns.host import LabHost
from harness.netns.process import wait_listening
from harness.services.pki import issue_run_certificates
from harness.spec.descriptor import (
    Descriptor,
    DescriptorError,
    TunnelSide,
    TunnelSpec,
    substitute,
)
from harness.testbed import Lab
from harness.tunnels.base import TunnelError, TunnelledEndpoints
from harness.tunnels.plumbing import Plumbing, Started

LOCAL_IP = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
_SERIAL = itertools.count()


class DescriptorTunnel:
    """The Tunnel of one tunnel descriptor; its strategy is the descriptor's name."""

    def __init__(self, lab: Lab, found: Descriptor, workdir: Path) -> None:
        if found.tunnel is None:
            raise ValueError(f"descriptor {found.name} is a client, not a tunnel")
        self.name = found.name
        self.descriptor = found
        self.spec: TunnelSpec = found.tunnel
        self.lab = lab
        self.workdir = workdir
        self.endpoints = TunnelledEndpoints()
        self.established = False
        self.plumbing = Plumbing(lab, "", workdir)
        self.values: dict[str, str] = {}
        self._stops: list[tuple[LabHost, list[str], str]] = []

    def up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # No interface of its own; the label keeps its processes apart in the registry.
        self.plumbing.label = f"{self.lab.run_id}d{next(_SERIAL)}"
        caller, vpn = self.lab.host_with_role("caller"), self.lab.host_with_role("vpn")
        self.values = self._values(vpn)
        self._start(vpn, "server", self.spec.server)
        self._start(caller, "client", self.spec.client)
        self.endpoints = TunnelledEndpoints(turn=Endpoint(LOCAL_IP, self.spec.local_port))
        self.established = True

    def _values(self, vpn: LabHost) -> dict[str, str]:
        services = self.lab.services
        if services is None:
            raise TunnelError(f"{self.name}: the lab's services are not running")
        server_ip = str(self.lab.topology.address_of(vpn.name))
        pki = issue_run_certificates(self.workdir / f"pki-{self.plumbing.label}",
                                     ip_sans=[server_ip])
        for path in (pki.ca_cert, pki.server_cert, pki.server_key):
            self.plumbing.own_file(path)
        return {
            "server_ip": server_ip, "relay_ip": services.relay_ip,
            "turn_port": str(services.turn_port), "local_port": str(self.spec.local_port),
            "local_ip": LOCAL_IP, "work_dir": str(self.workdir),
            "cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
            "ca_file": str(pki.ca_cert), "secret": secrets.token_urlsafe(18),
            "uuid": str(uuid.uuid4()), "descriptor_dir": str(self.descriptor.directory),
        }

    def _fill(self, argv: list[str]) -> list[str]:
        try:
            return substitute(argv, self.values)
        except DescriptorError as exc:
            raise TunnelError(f"{self.name}: {exc}") from exc

    def _start(self, host: LabHost, side: str, spec: TunnelSide) -> None:
        started = self.plumbing.start(host, self._fill(spec.argv), what=side)
        if spec.stop:
            self._stops.append((host, self._fill(spec.stop), side))
        ready = spec.ready
        if ready.log is not None:
            self.plumbing.wait_for_log(started, ready.log, ready.timeout_s)
        else:
            assert ready.port is not None
            self._wait_port(started, host, ready.proto, ready.port, ready.timeout_s)

    def _wait_port(self, started: Started, host: LabHost, proto: str, port: int,
                   timeout_s: float) -> None:
        missing = wait_listening(started.proc.pid, [(proto, port)], timeout_s,
                                 probe=host.listening_ports,
                                 running=lambda: started.proc.poll() is None)
        self.plumbing.check_alive(started)
        if missing:
            raise TunnelError(f"{started.what} in {host.name}: nothing on {proto} {port} after "
                              f"{timeout_s:.0f} s; its log says:\n{log_tail(started.log)}")

    def down(self) -> None:
        problems: list[str] = []
        for host, argv, side in reversed(self._stops):
            result = host.run(argv, timeout=STOP_TIMEOUT_S, check=False)
            if result.returncode != 0:
                problems.append(f"{side} stop command exited {result.returncode}: "
                                f"{(result.stderr or result.stdout).strip()[:200]}")
        self._stops.clear()
        problems += self.plumbing.undo()
        self.established = False
        if problems:
            raise TunnelError(f"{self.name} left behind: " + "; ".join(problems))
