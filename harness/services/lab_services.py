"""The lab's servers, started as real processes inside their hosts: a coturn
relay (UDP and TCP 3478, TLS 443), a STUN-only coturn, the signalling
server, and the app-like relays of harness.apps (in the hosts named
``wa-relay`` and ``tg-relay``, when the topology has them). Credentials and
the TLS CA are generated per run, in the run's private directory, and removed
with it.

Where the topology has them, also: the app-like profiles' own chat servers
(signalling and text; instances of harness.services.signalling) in hosts
``wa-chat`` (TCP 5222, falling back to 443) and ``tg-server`` (TCP 443); the
domestic app server ``max`` (its chat server on TCP 443 and its media relay,
harness.services.max_relay, on UDP 3478); and the subscribers' resolver
(dnsmasq, harness.services.resolver) in the host with role ``resolver``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.logtail import log_tail
from harness.netns.directory import RESOLVER, ResolverFiles, ServiceDirectory
from harness.netns.host import LabHost
from harness.netns.network import LabNetwork
from harness.netns.process import wait_listening
from harness.services import max_relay
from harness.services.pki import issue_run_certificates
from harness.services.resolver import RESOLVER_SOCKETS, dnsmasq_argv, prepare_resolver
from harness.services.turn import TurnServerConfig, generate_credentials, turnserver_argv

TURN_PORT = 3478
TURNS_PORT = 443
STUN_PORT = 3478
SIGNALLING_PORT = 443
READY_TIMEOUT_S = 15.0


class ServiceStartError(RuntimeError):
    pass


RELAY = "coturn relay"
STUN = "coturn stun"
SIGNALLING = "signalling server"
SERVICES = (RELAY, STUN, SIGNALLING)
# The app-like relays (harness.services.app_relays), found by host name: a topology
# that has a host `wa-relay` / `tg-relay` (role app-relay) gets them.
WA_RELAY = "whatsapp-like relay"
TG_RELAY = "telegram-like reflector"
APP_RELAY_HOSTS = {WA_RELAY: "wa-relay", TG_RELAY: "tg-relay"}
WA_RELAY_SOCKETS = tuple(("udp", port) for port in range(3478, 3498))
TG_RELAY_SOCKETS = (*(("udp", port) for port in (596, 597, 598, 599, 1400)), ("tcp", 443))
RELAY_SOCKETS = (("udp", TURN_PORT), ("tcp", TURN_PORT), ("tcp", TURNS_PORT))
STUN_SOCKETS = (("udp", STUN_PORT),)
# The app-like profiles' own servers, found by host name like the relays: a
# chat server (harness.services.signalling: call signalling and text) per
# app, and the domestic app's media relay. WhatsApp's chat protocol uses TCP
# 5222 and falls back to 443 (docs/sources.md S70); Telegram's clients reach
# its servers on TCP 443 (S71); Max's ports are not reported ([S] 443 and UDP
# 3478).
WA_CHAT = "whatsapp-like chat server"
TG_SERVER = "telegram-like chat server"
MAX_SERVER = "max-like chat server"
MAX_RELAY = "max-like relay"
APP_SERVER_HOSTS = {WA_CHAT: "wa-chat", TG_SERVER: "tg-server", MAX_SERVER: "max",
                    MAX_RELAY: "max"}
CHAT_PORTS: dict[str, tuple[int, ...]] = {WA_CHAT: (5222, 443), TG_SERVER: (443,),
                                          MAX_SERVER: (443,)}
MAX_RELAY_PORT = max_relay.PORT


def start_lab_services(lab: LabNetwork) -> ServiceDirectory:
    root = _services_root(lab)
    root.mkdir(mode=0o700, exist_ok=True)
    relay = lab.host_with_role("relay")
    relay_ip = str(lab.topology.address_of(relay.name))
    username, password = generate_credentials()
    certs = issue_run_certificates(root / "pki", ip_sans=[relay_ip])
    turn = _relay_config(lab, username, password, certs.server_cert, certs.server_key)
    _start_coturn(relay, turn, RELAY, RELAY_SOCKETS)
    stun = lab.host_with_role("stun")
    stun_ip = str(lab.topology.address_of(stun.name))
    _start_coturn(stun, _stun_config(lab), STUN, STUN_SOCKETS)
    signalling = lab.host_with_role("signalling")
    signalling_ip = str(lab.topology.address_of(signalling.name))
    _start_signalling(signalling, signalling_ip, root)
    start_app_relays(lab)
    start_app_servers(lab)
    resolver = prepare_resolver(lab, root)
    if resolver is not None:
        _start_resolver(lab.host(resolver[0]), resolver[1], resolver[2])
    return ServiceDirectory(
        relay_ip=relay_ip, turn_port=TURN_PORT, turns_port=TURNS_PORT, turn_username=username,
        turn_password=password, ca_file=str(certs.ca_cert), stun_ip=stun_ip,
        stun_port=STUN_PORT, signalling_ip=signalling_ip, signalling_port=SIGNALLING_PORT,
        resolver_ip=resolver[1] if resolver else None,
        resolver_dir=str(resolver[2].directory) if resolver else None,
    )


def start_service(lab: LabNetwork, services: ServiceDirectory, what: str) -> None:
    """Start one of the lab's services (`what` is one of SERVICES, as recorded in
    the registry) again, exactly as `start_lab_services` configured it: same
    host, address, ports, credentials and certificate. For a service that was
    stopped (e.g. by an injected fault); the caller makes sure the old process
    is gone. The new process is recorded in the registry like the first."""
    root = _services_root(lab)
    if what == RELAY:
        pki = Path(services.ca_file).parent
        turn = _relay_config(lab, services.turn_username, services.turn_password,
                             pki / "server.pem", pki / "server.key")
        _start_coturn(lab.host_with_role("relay"), turn, RELAY, RELAY_SOCKETS)
    elif what == STUN:
        _start_coturn(lab.host_with_role("stun"), _stun_config(lab), STUN, STUN_SOCKETS)
    elif what == SIGNALLING:
        _start_signalling(lab.host_with_role("signalling"), services.signalling_ip, root)
    elif what in APP_RELAY_HOSTS:
        _start_app_relay(lab, what)
    elif what in APP_SERVER_HOSTS:
        _start_app_server(lab, what)
    elif what == RESOLVER and services.resolver_files is not None \
            and services.resolver_ip is not None:
        # As it was: the zone it serves keeps the removal of the policy in force.
        name = lab.topology.hosts_with_role("resolver")[0]
        _start_resolver(lab.host(name), services.resolver_ip, services.resolver_files)
    else:
        raise ValueError(f"unknown service {what!r}; services are: {', '.join(SERVICES)}")


def expected_services(lab: LabNetwork) -> list[str]:
    """Every service this lab runs: the relay, STUN and signalling, and the
    app relays whose hosts the topology has."""
    return [*SERVICES, *(what for what, name in APP_RELAY_HOSTS.items()
                         if name in lab.topology.hosts),
            *(what for what, name in APP_SERVER_HOSTS.items() if name in lab.topology.hosts),
            *([RESOLVER] if lab.topology.hosts_with_role("resolver") else [])]


def restore_services(lab: LabNetwork, services: ServiceDirectory) -> list[str]:
    """Start again, as configured, every service of the lab that is not
    running (its dead records dropped first); returns what was restarted.
    ServiceStartError when one does not come back."""
    restarted = []
    for what in expected_services(lab):
        if not lab.registry.running(what):
            lab.registry.stop(what)  # drop dead records
            start_service(lab, services, what)
            restarted.append(what)
    return restarted


def _services_root(lab: LabNetwork) -> Path:
    return lab.registry.files / "services"


def _relay_config(lab: LabNetwork, username: str, password: str, cert: Path,
                  key: Path) -> TurnServerConfig:
    relay = lab.host_with_role("relay")
    relay_ip = str(lab.topology.address_of(relay.name))
    return TurnServerConfig(listen_ip=relay_ip, relay_ip=relay_ip,
                            workdir=_services_root(lab) / relay.name, port=TURN_PORT,
                            tls_port=TURNS_PORT, username=username, password=password,
                            cert=cert, key=key)


def _stun_config(lab: LabNetwork) -> TurnServerConfig:
    stun = lab.host_with_role("stun")
    stun_ip = str(lab.topology.address_of(stun.name))
    return TurnServerConfig.stun_server(stun_ip, _services_root(lab) / stun.name,
                                        port=STUN_PORT)


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
    proc = host.start(argv, what=SIGNALLING, log=log)
    _await_sockets(host, proc, SIGNALLING, [("tcp", SIGNALLING_PORT)], [log])


def start_app_relays(lab: LabNetwork) -> None:
    """Start the app-like relays whose hosts the topology has."""
    for what, name in APP_RELAY_HOSTS.items():
        if name in lab.topology.hosts:
            _start_app_relay(lab, what)


def _start_app_relay(lab: LabNetwork, what: str) -> None:
    name = APP_RELAY_HOSTS[what]
    host = lab.host(name)
    ip = str(lab.topology.address_of(name))
    log = _services_root(lab) / f"{name}.log"
    if what == WA_RELAY:
        argv = [sys.executable, "-m", "harness.services.app_relays.whatsapp_relay",
                "--listen", ip]
        sockets: Sequence[tuple[str, int]] = WA_RELAY_SOCKETS
    else:
        argv = [sys.executable, "-m", "harness.services.app_relays.telegram_reflector",
                "--listen", ip]
        sockets = TG_RELAY_SOCKETS
    proc = host.start(argv, what=what, log=log)
    _await_sockets(host, proc, what, sockets, [log])


def start_app_servers(lab: LabNetwork) -> None:
    """Start the app-like profiles' servers whose hosts the topology has."""
    for what, name in APP_SERVER_HOSTS.items():
        if name in lab.topology.hosts:
            _start_app_server(lab, what)


def listen_address(lab: LabNetwork, name: str) -> str:
    """Where a server in host `name` listens: its service address, or every
    address when the host has a leg on more than one network (the domestic
    app server, reached from the subscribers' side and from abroad)."""
    if len(lab.topology.interfaces(name)) > 1:
        return "0.0.0.0"
    return str(lab.topology.address_of(name))


def _start_app_server(lab: LabNetwork, what: str) -> None:
    name = APP_SERVER_HOSTS[what]
    host = lab.host(name)
    listen = listen_address(lab, name)
    log = _services_root(lab) / f"{name}-{'relay' if what == MAX_RELAY else 'chat'}.log"
    if what == MAX_RELAY:
        argv = [sys.executable, "-m", "harness.services.max_relay", "--listen", listen,
                "--port", str(MAX_RELAY_PORT)]
        sockets: Sequence[tuple[str, int]] = (("udp", MAX_RELAY_PORT),)
    else:
        argv = [sys.executable, "-m", "harness.services.signalling", "--listen", listen]
        for port in CHAT_PORTS[what]:
            argv += ["--port", str(port)]
        sockets = tuple(("tcp", port) for port in CHAT_PORTS[what])
    proc = host.start(argv, what=what, log=log)
    _await_sockets(host, proc, what, sockets, [log])


def _start_resolver(host: LabHost, ip: str, files: ResolverFiles) -> None:
    log = files.directory / "stderr.log"
    proc = host.start(dnsmasq_argv(ip, files), what=RESOLVER, log=log)
    _await_sockets(host, proc, RESOLVER, RESOLVER_SOCKETS, [log, files.query_log])


def _await_sockets(host: LabHost, proc: subprocess.Popen[bytes], what: str,
                   sockets: Sequence[tuple[str, int]], logs: Sequence[Path]) -> None:
    missing = wait_listening(proc.pid, sockets, READY_TIMEOUT_S, probe=host.listening_ports,
                             running=lambda: proc.poll() is None)
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
            text += [f"\n  {log.name}: {line}" for line in log_tail(log, lines).splitlines()]
    return "".join(text)
