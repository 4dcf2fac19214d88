"""The testbed (harness.testbed.Lab) on the fake backend: what bringing a lab
up asks of each host, that a failure in any step removes everything the run
recorded, and that taking it down is complete and idempotent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import paths
from harness.netns.host import HostCommandError
from harness.netns.nat import nat_ruleset
from harness.netns.registry import OwnedProcess, list_runs
from harness.services.lab_services import RELAY, SIGNALLING, STUN, ServiceStartError
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.testing.fake import FakeBackend, FakeError, Reply, Scripted
from harness.testing.labs import LabLeftBehind, check_nothing_left

TOPOLOGY = paths.topology_path(paths.DEFAULT_TOPOLOGY)
# (host, service), in the order they start.
SERVICE_HOSTS = [("relay", RELAY), ("stun", STUN), ("signal", SIGNALLING),
                 ("wa-relay", "whatsapp-like relay"), ("tg-relay", "telegram-like reflector"),
                 ("wa-chat", "whatsapp-like chat server"),
                 ("tg-server", "telegram-like chat server"), ("max", "max-like chat server"),
                 ("max", "max-like relay"), ("isp-dns", "national resolver")]


def _lab(tmp_path: Path, backend: FakeBackend) -> Lab:
    return Lab.create(TOPOLOGY, root=tmp_path / "runs", backend=backend)


def _owned(lab: Lab) -> list[OwnedProcess]:
    return [*lab.registry.state.hosts.values(), *lab.registry.state.processes]


def test_every_host_gets_its_sysctls_offloads_off_and_nothing_else(
        fake_lab: Lab, fake_backend: FakeBackend) -> None:
    for name in fake_lab.topology.hosts:
        runs = fake_backend.script.argvs(name)
        interfaces = [i.name for i in fake_lab.topology.interfaces(name)]
        expected_sysctls = ["net.ipv6.conf.all.disable_ipv6=1"]
        if name in ("cgnat", "censor", "inet", "homenat", "vpn"):  # nat, censor, router, vpn
            expected_sysctls.append("net.ipv4.ip_forward=1")
        if name == "censor":
            expected_sysctls.append("net.netfilter.nf_conntrack_acct=1")
        expected = [["sysctl", "-q", "-w", *expected_sysctls],
                    *(["ethtool", "-K", i, "tso", "off", "gso", "off"] for i in interfaces)]
        if name in ("cgnat", "homenat"):
            expected.append(["nft", "-f", "-"])
        assert runs == expected, name


def test_nat_hosts_masquerade_towards_their_outside_interface(
        fake_lab: Lab, fake_backend: FakeBackend) -> None:
    (cgnat_nft,) = [r for r in fake_backend.host("cgnat").runs if r.argv[0] == "nft"]
    spec = fake_lab.topology.hosts["cgnat"].nat
    assert spec is not None
    # cgnat's outside address 198.18.0.2 sits on its second link: eth1.
    assert cgnat_nft.input_text == nat_ruleset(spec, "eth1")
    assert 'oifname "eth1" masquerade' in (cgnat_nft.input_text or "")


def test_addresses_links_and_routes_come_from_the_topology(
        fake_lab: Lab, fake_backend: FakeBackend) -> None:
    censor = fake_backend.host("censor")
    assert {name: (i.state, i.addresses) for name, i in censor.interfaces.items()} == {
        "lo": ("up", []),
        "eth0": ("up", ["198.18.0.1/30"]),
        "eth1": ("up", ["198.18.0.5/30"]),
    }
    assert censor.routes == [{"dst": "0.0.0.0/0", "gateway": "198.18.0.6"}]
    callee = fake_backend.host("callee")
    assert callee.routes == [{"dst": "0.0.0.0/0", "gateway": "192.0.2.1"}]
    assert fake_backend.host("inet").routes == [{"dst": "198.18.0.0/30",
                                                 "gateway": "198.18.0.5"}]
    assert callee.interfaces["eth0"].addresses == ["192.0.2.10/24"]


def test_hosts_and_services_are_recorded_and_running(fake_lab: Lab,
                                                     fake_backend: FakeBackend) -> None:
    state = fake_lab.registry.state
    assert state.status == "ready"
    assert {name: owned.pid for name, owned in state.hosts.items()} == {
        name: shell.pid for name, shell in fake_backend.shells.items()}
    assert set(state.hosts) == set(fake_lab.topology.hosts)
    assert sorted((p.host, p.what) for p in state.processes) == sorted(SERVICE_HOSTS)
    assert all(p.alive() for p in _owned(fake_lab))
    assert fake_lab.services is not None and fake_lab.services.relay_ip == "198.18.1.2"
    assert state.services == fake_lab.services


def test_services_start_only_once_every_host_is_configured(fake_backend: FakeBackend,
                                                           fake_lab: Lab) -> None:
    journal = fake_backend.journal
    kinds = [type(call).__name__ for call in journal]
    last_configure = max(i for i, kind in enumerate(kinds) if kind != "StartCall")
    first_start = kinds.index("StartCall")
    assert first_start > last_configure
    assert [call.what for call in fake_backend.script.starts()] == [
        what for _, what in SERVICE_HOSTS]


def test_down_removes_everything_and_a_second_down_is_harmless(tmp_path: Path) -> None:
    backend = FakeBackend()
    lab = _lab(tmp_path, backend)
    lab.up()
    owned = _owned(lab)
    assert len(owned) == len(lab.topology.hosts) + len(SERVICE_HOSTS)
    lab.down()
    assert not any(o.alive() for o in owned)
    assert not lab.registry.dir.exists()
    assert lab.run_id not in [run.state.run_id for run in list_runs(tmp_path / "runs")]
    assert backend.stopped and backend.leftovers == []
    assert all(shell.poll() is not None for shell in backend.shells.values())
    lab.down()
    with lab:
        pass  # __exit__ takes it down a third time
    check_nothing_left(lab, owned, tmp_path / "runs")


def _fail_build(backend: FakeBackend) -> type[BaseException]:
    backend.fail_build_at = "censor"
    return FakeError


def _fail_sysctl(backend: FakeBackend) -> type[BaseException]:
    backend.script.on_run(["sysctl"], Reply(255, stderr="sysctl: permission denied"),
                          host="inet")
    return HostCommandError


def _fail_ethtool(backend: FakeBackend) -> type[BaseException]:
    backend.script.on_run(["ethtool", "-K", "eth1"], Reply(1, stderr="Operation not supported"),
                          host="homenat")
    return HostCommandError


def _fail_nat(backend: FakeBackend) -> type[BaseException]:
    backend.script.on_run(["nft", "-f", "-"], Reply(1, stderr="Error: syntax error"),
                          host="homenat")
    return HostCommandError


def _fail_netlink(backend: FakeBackend) -> type[BaseException]:
    backend.script.on_netlink("route", OSError(101, "Network is unreachable"), host="relay")
    return OSError


def _fail_stun(backend: FakeBackend) -> type[BaseException]:
    backend.script.on_start(["turnserver"], Scripted(exit_after_s=0.0, returncode=1,
                                                     log_text="cannot bind UDP 3478\n"),
                            host="stun")
    return ServiceStartError


def _fail_last_service(backend: FakeBackend) -> type[BaseException]:
    backend.script.on_start([sys.executable, "-m",
                             "harness.services.app_relays.telegram_reflector"],
                            Scripted(exit_after_s=0.0, returncode=2), host="tg-relay")
    return ServiceStartError


@pytest.mark.parametrize("failure", [_fail_build, _fail_sysctl, _fail_ethtool, _fail_nat,
                                     _fail_netlink, _fail_stun, _fail_last_service])
def test_a_failure_in_any_step_removes_everything_recorded(
        tmp_path: Path, failure: Callable[[FakeBackend], type[BaseException]]) -> None:
    backend = FakeBackend()
    error = failure(backend)
    lab = _lab(tmp_path, backend)
    try:
        with pytest.raises(error):
            lab.up()
        # Every process of the lab came from the backend: its host shells and
        # the stand-ins of what was started in the hosts.
        assert backend.shells
        assert all(shell.poll() is not None for shell in backend.shells.values())
        assert all(call.proc.poll() is not None for call in backend.script.starts())
        assert backend.leftovers == [], "the registry, not the backend's safety net, stops them"
        assert not lab.registry.dir.exists()
        assert list_runs(tmp_path / "runs") == []
    finally:
        lab.down()  # and once more is harmless


def test_a_failed_build_creates_no_host_after_the_failing_one(tmp_path: Path) -> None:
    backend = FakeBackend(fail_build_at="censor")
    with _lab(tmp_path, backend) as lab, pytest.raises(FakeError):
        lab.up()
    assert list(backend.shells) == ["caller", "cgnat", "censor"]
    assert backend.script.journal == [], "nothing was configured"


def test_apply_policy_loads_the_ruleset_in_one_nft_transaction(fake_lab: Lab,
                                                               fake_backend: FakeBackend,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "drop-udp-to-relays.yaml"
    path.write_text(DROP_UDP_TO_RELAYS)
    plan = fake_lab.apply_policy(load_policy(path, fake_lab.topology.sets.keys()))
    censor = fake_backend.host("censor")
    (load,) = [r for r in censor.runs if r.argv == ("nft", "-f", "-")]
    assert load.input_text == plan.nft_ruleset
    assert 'comment "drop-udp"' in plan.nft_ruleset and "198.18.1.0/24" in plan.nft_ruleset
    assert fake_lab.registry.state.policy == "drop-udp-to-relays"
    assert (fake_lab.registry.files / "policy.nft").read_text() == plan.nft_ruleset


def test_a_refused_ruleset_is_an_error_and_changes_no_state(fake_lab: Lab,
                                                             fake_backend: FakeBackend,
                                                             tmp_path: Path) -> None:
    fake_backend.host("censor").on_run(["nft", "-f", "-"], Reply(1, stderr="Error: bad rule"))
    path = tmp_path / "drop-udp-to-relays.yaml"
    path.write_text(DROP_UDP_TO_RELAYS)
    with pytest.raises(RuntimeError, match="nft refused the ruleset.*bad rule"):
        fake_lab.apply_policy(load_policy(path))
    assert fake_lab.registry.state.policy is None
    assert not (fake_lab.registry.files / "policy.nft").exists()


def test_check_nothing_left_names_what_a_lab_left(tmp_path: Path) -> None:
    with _lab(tmp_path, FakeBackend()) as lab:
        lab.up()
    survivor = subprocess.Popen(["sleep", "30"])
    try:
        ticks = int(Path(f"/proc/{survivor.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        lab.registry.dir.mkdir(parents=True)
        with pytest.raises(LabLeftBehind) as raised:
            check_nothing_left(lab, [OwnedProcess(survivor.pid, ticks, "relay", RELAY)],
                               tmp_path / "runs")
        assert "state directory" in str(raised.value)
        assert f"coturn relay in relay (pid {survivor.pid})" in str(raised.value)
    finally:
        survivor.kill()
        survivor.wait()


DROP_UDP_TO_RELAYS = """\
name: drop-udp-to-relays
description: A unit-test policy.
provenance:
  sources: ["tests/unit/test_testbed.py"]
  reported: A test fixture, not a reported policy.
rules:
  - id: drop-udp
    explain: UDP to the relays is dropped.
    match: {protocol: udp, dst_set: relays, direction: both}
    action: {kind: drop}
"""
