"""The lab's services (harness.services.lab_services) on fake hosts: the
argv each service gets in which host, the per-run credentials and
certificates, readiness, and a service that fails at start."""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from harness.netns.directory import RESOLVER
from harness.netns.network import LabNetwork
from harness.netns.process import wait_listening
from harness.services import lab_services
from harness.services.lab_services import (
    MAX_RELAY,
    MAX_SERVER,
    RELAY,
    SIGNALLING,
    STUN,
    TG_RELAY,
    TG_SERVER,
    WA_CHAT,
    WA_RELAY,
    ServiceStartError,
    restore_services,
    start_lab_services,
    start_service,
)
from harness.testing.fake import FakeBackend, Scripted, StartCall, fake_network, sockets


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[LabNetwork, FakeBackend]]:
    with fake_network(tmp_path / "runs") as built:
        yield built


def _started(backend: FakeBackend, what: str) -> list[StartCall]:
    return [call for call in backend.script.starts() if call.what == what]


def _after(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_each_service_runs_in_its_host_with_its_argv(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, backend = net
    services = start_lab_services(lab)
    root = lab.registry.files / "services"
    assert [(c.host, c.what) for c in backend.script.starts()] == [
        ("relay", RELAY), ("stun", STUN), ("signal", SIGNALLING), ("wa-relay", WA_RELAY),
        ("tg-relay", TG_RELAY), ("wa-chat", WA_CHAT), ("tg-server", TG_SERVER),
        ("max", MAX_SERVER), ("max", MAX_RELAY), ("isp-dns", RESOLVER)]
    (relay,) = _started(backend, RELAY)
    assert relay.argv[:3] == ("turnserver", "-n", "--no-cli")
    assert _after(relay.argv, "--listening-ip") == "198.18.1.2"
    assert _after(relay.argv, "--relay-ip") == "198.18.1.2"
    assert _after(relay.argv, "--listening-port") == "3478"
    assert _after(relay.argv, "--tls-listening-port") == "443"
    assert _after(relay.argv, "--user") == f"{services.turn_username}:{services.turn_password}"
    assert _after(relay.argv, "--cert") == str(root / "pki" / "server.pem")
    assert _after(relay.argv, "--pkey") == str(root / "pki" / "server.key")
    assert _after(relay.argv, "--log-file") == str(root / "relay" / "turnserver.log")
    assert "--lt-cred-mech" in relay.argv and "--stun-only" not in relay.argv
    assert relay.log == root / "relay" / "stderr.log"
    (stun,) = _started(backend, STUN)
    assert _after(stun.argv, "--listening-ip") == "198.18.2.2"
    assert "--stun-only" in stun.argv and "--no-tls" in stun.argv
    assert "--user" not in stun.argv and "--cert" not in stun.argv
    (signalling,) = _started(backend, SIGNALLING)
    assert list(signalling.argv) == [sys.executable, "-m", "harness.services.signalling",
                                     "--listen", "198.18.3.2", "--port", "443"]
    assert list(_started(backend, WA_RELAY)[0].argv) == [
        sys.executable, "-m", "harness.services.app_relays.whatsapp_relay", "--listen",
        "198.18.5.2"]
    assert list(_started(backend, TG_RELAY)[0].argv) == [
        sys.executable, "-m", "harness.services.app_relays.telegram_reflector", "--listen",
        "198.18.6.2"]
    # The apps' chat servers are the lab's signalling server, on their own hosts and
    # ports; the domestic one (a leg on each side) listens on every address.
    chat = [sys.executable, "-m", "harness.services.signalling", "--listen"]
    assert list(_started(backend, WA_CHAT)[0].argv) == [*chat, "198.18.8.2", "--port", "5222",
                                                         "--port", "443"]
    assert list(_started(backend, TG_SERVER)[0].argv) == [*chat, "198.18.9.2", "--port", "443"]
    assert list(_started(backend, MAX_SERVER)[0].argv) == [*chat, "0.0.0.0", "--port", "443"]
    assert list(_started(backend, MAX_RELAY)[0].argv) == [
        sys.executable, "-m", "harness.services.max_relay", "--listen", "0.0.0.0", "--port",
        "3478"]
    (dns,) = _started(backend, RESOLVER)
    files = root / "resolver"
    assert dns.argv[0] == "dnsmasq" and "--listen-address=100.64.53.2" in dns.argv
    assert f"--addn-hosts={files / 'zone.hosts'}" in dns.argv and "--local=/lab/" in dns.argv
    assert "--no-resolv" in dns.argv and "--no-hosts" in dns.argv
    assert services.resolver_ip == "100.64.53.2" and services.resolver_dir == str(files)
    served = (files / "zone.hosts").read_text().splitlines()
    assert "100.64.10.2 max.lab" in served and "198.18.8.2 wa-chat.lab" in served
    assert (files / "zone.full").read_text() == (files / "zone.hosts").read_text()
    assert backend.script.runs() == [], "starting services runs no command in a host"


def test_every_service_is_recorded_in_the_registry_as_it_runs(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, backend = net
    start_lab_services(lab)
    for what in (RELAY, STUN, SIGNALLING, WA_RELAY, TG_RELAY):
        (call,) = _started(backend, what)
        assert [p.pid for p in lab.registry.running(what)] == [call.proc.pid]
        assert call.proc.poll() is None


def test_the_directory_names_addresses_ports_and_fresh_credentials(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, _ = net
    services = start_lab_services(lab)
    assert (services.relay_ip, services.turn_port, services.turns_port) == ("198.18.1.2", 3478,
                                                                             443)
    assert (services.stun_ip, services.stun_port) == ("198.18.2.2", 3478)
    assert (services.signalling_ip, services.signalling_port) == ("198.18.3.2", 443)
    assert services.turn_username.startswith("cw") and len(services.turn_password) >= 16
    assert ":" not in services.turn_username
    again = start_lab_services(lab)
    assert (again.turn_username, again.turn_password) != (services.turn_username,
                                                         services.turn_password)


def test_the_run_gets_its_own_ca_and_a_relay_certificate_for_its_address(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, _ = net
    services = start_lab_services(lab)
    pki = lab.registry.files / "services" / "pki"
    assert Path(services.ca_file) == pki / "ca.pem"
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((pki / "server.pem").read_bytes())
    assert server.issuer == ca.subject and server.issuer != server.subject
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("198.18.1.2")]
    assert (pki / "server.key").stat().st_mode & 0o077 == 0
    assert not list(pki.glob("ca*.key")), "the CA's private key is never written"


def test_a_service_that_exits_at_start_is_an_error_with_its_log_tail(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, backend = net
    backend.script.on_start(["turnserver"], Scripted(
        exit_after_s=0.0, returncode=1,
        log_text="0: : socket: Address already in use\n0: : Cannot bind TLS 198.18.1.2:443\n"),
        host="relay")
    started = time.monotonic()
    with pytest.raises(ServiceStartError) as raised:
        start_lab_services(lab)
    assert time.monotonic() - started < lab_services.READY_TIMEOUT_S / 2, \
        "an exited service is reported at once, not after the readiness timeout"
    message = str(raised.value)
    assert message.startswith("coturn relay in relay exited with 1")
    assert "stderr.log: 0: : Cannot bind TLS 198.18.1.2:443" in message
    assert [c.what for c in backend.script.starts()] == [RELAY], "nothing started after it"


def test_a_signalling_server_that_crashes_shows_its_traceback(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, backend = net
    backend.script.on_start([sys.executable, "-m", "harness.services.signalling"], Scripted(
        exit_after_s=0.1, returncode=2,
        log_text="Traceback (most recent call last):\nOSError: [Errno 98] Address in use\n"))
    with pytest.raises(ServiceStartError, match=r"signalling server in signal exited with 2"
                                                r"(.|\n)*signalling.log: OSError: \[Errno 98\]"):
        start_lab_services(lab)


def test_a_service_not_listening_on_every_port_is_an_error_naming_them(
        net: tuple[LabNetwork, FakeBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    lab, backend = net
    monkeypatch.setattr(lab_services, "READY_TIMEOUT_S", 0.3)
    backend.script.on_start(["turnserver"], Scripted(listens=sockets(("udp", 3478),
                                                                     ("tcp", 3478))),
                            host="relay")
    with pytest.raises(ServiceStartError,
                       match=r"coturn relay in relay is not listening on tcp/443 after 0.3s"):
        start_lab_services(lab)


def test_start_service_starts_the_relay_again_exactly_as_configured(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, backend = net
    services = start_lab_services(lab)
    (first,) = _started(backend, RELAY)
    assert lab.registry.stop(RELAY) == [first.proc.pid]
    start_service(lab, services, RELAY)
    second = _started(backend, RELAY)[-1]
    assert second.proc.pid != first.proc.pid
    assert second.argv == first.argv, "same address, ports, credentials and certificate"
    assert [p.pid for p in lab.registry.running(RELAY)] == [second.proc.pid]


def test_start_service_of_an_unknown_service_is_a_value_error(
        net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, _ = net
    services = start_lab_services(lab)
    with pytest.raises(ValueError, match="unknown service 'coturn'"):
        start_service(lab, services, "coturn")


def test_restore_services_starts_only_what_died(net: tuple[LabNetwork, FakeBackend]) -> None:
    lab, backend = net
    services = start_lab_services(lab)
    (stun,) = _started(backend, STUN)
    stun.proc.kill()
    stun.proc.wait()
    assert restore_services(lab, services) == [STUN]
    assert len(_started(backend, STUN)) == 2
    assert all(len(_started(backend, what)) == 1 for what in (RELAY, SIGNALLING, WA_RELAY))
    assert restore_services(lab, services) == []


def test_wait_listening_stops_waiting_when_the_process_ends() -> None:
    probed: list[tuple[int, str]] = []

    def probe(pid: int, proto: str) -> frozenset[int]:
        probed.append((pid, proto))
        return frozenset({53})

    started = time.monotonic()
    missing = wait_listening(4242, [("udp", 53), ("tcp", 443)], 10.0, probe=probe,
                             running=lambda: False)
    assert missing == [("tcp", 443)]
    assert time.monotonic() - started < 1.0
    assert probed == [(4242, "udp"), (4242, "tcp")]
    assert wait_listening(4242, [("udp", 53)], 10.0, probe=probe) == []
