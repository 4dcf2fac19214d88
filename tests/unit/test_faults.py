"""Injected faults (harness.faults) on a fake lab: what each fault stops,
starts or changes through the registry and the hosts, the times its
FaultEvent reports on the call's clock, and that an injector never raises
once constructed."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.censor.compiler import bindings_for, compile_policy
from harness.faults import Fault, FaultError, FaultEvent, FaultInjector, restore_services
from harness.services.lab_services import RELAY, SIGNALLING, STUN
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.testing.fake import FakeBackend, NetlinkCall, Reply, Scripted

Peers = tuple[dict[str, subprocess.Popen[bytes]], dict[str, Path]]


def _peers(lab: Lab, backend: FakeBackend, call_dir: Path, *, media_at_s: float | None = 0.1,
           exit_after_s: dict[str, float] | None = None) -> Peers:
    """Both sides of a call, as run_peers starts them: '<role> peer' in the
    host of that role, with an --events file; each emits 'attempt' at once
    and 'media' at `media_at_s` (never if None), then runs until stopped
    (or exits after `exit_after_s[role]`)."""
    call_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    events: dict[str, Path] = {}
    for role in ("callee", "caller"):
        host = lab.host_with_role(role)
        script = [("attempt", 0.0)] + ([("media", media_at_s)] if media_at_s is not None else [])
        backend.host(host.name).on_start(["peer"], Scripted(
            events=script, exit_after_s=(exit_after_s or {}).get(role)))
        events[role] = call_dir / f"{role}.events.jsonl"
        procs[role] = host.start(["peer", "--role", role, "--events", str(events[role])],
                                 what=f"{role} peer", log=call_dir / f"{role}.log")
    return procs, events


def _run(lab: Lab, fault: Fault, peers: Callable[[], Peers] | None,
         until: Callable[[FaultEvent], bool], timeout_s: float = 8.0) -> FaultInjector:
    """A call's life as harness.calls sees it: before_call, the peers start,
    start(), then stop() once `until` holds for the event (or the timeout)."""
    injector = FaultInjector(lab, fault)
    injector.before_call(time.monotonic())
    procs, events = peers() if peers is not None else ({}, {})
    injector.start(procs, events)
    deadline = time.monotonic() + timeout_s
    while not until(injector.event) and time.monotonic() < deadline:
        time.sleep(0.02)
    return injector


def _performed(event: FaultEvent) -> bool:
    return event.performed or event.error is not None


def _reaped(proc: subprocess.Popen[bytes]) -> int:
    return proc.wait(timeout=5)


def _assert_times_follow_media(event: FaultEvent, at_s: float) -> None:
    assert event.media_started_s is not None and 0.05 <= event.media_started_s < 3.0
    assert event.started_s is not None and event.done_s is not None
    assert event.started_s >= event.media_started_s + at_s - 0.01  # ms rounding
    assert event.started_s < event.media_started_s + at_s + 2.0
    assert event.done_s >= event.started_s


def test_kill_relay_sigkills_the_recorded_relay_after_media(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    (relay,) = [c for c in fake_backend.script.starts() if c.what == RELAY]
    fault = Fault("kill-relay", at_s=0.3)
    injector = _run(fake_lab, fault, lambda: _peers(fake_lab, fake_backend, tmp_path),
                    _performed)
    (event,) = injector.stop()
    assert event.error is None and event.performed
    assert event.detail == f"SIGKILL coturn relay (pid {relay.proc.pid})"
    _assert_times_follow_media(event, 0.3)
    assert _reaped(relay.proc) == -signal.SIGKILL
    assert fake_lab.registry.running(RELAY) == []
    assert relay.proc.pid not in [p.pid for p in fake_lab.registry.state.processes]
    assert fake_lab.registry.running(STUN) and fake_lab.registry.running(SIGNALLING)
    assert event.to_dict()["fault"] == {"kind": "kill-relay", "at_s": 0.3, "duration_s": None,
                                        "policy": None, "link": None}


def test_after_a_kill_restore_services_starts_the_relay_as_configured(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    _run(fake_lab, Fault("kill-relay", at_s=0.0),
         lambda: _peers(fake_lab, fake_backend, tmp_path), _performed).stop()
    assert fake_lab.registry.running(RELAY) == []
    assert restore_services(fake_lab) == [RELAY]
    first, again = [c for c in fake_backend.script.starts() if c.what == RELAY]
    assert again.argv == first.argv, "same address, ports, credentials and certificate"
    assert [p.pid for p in fake_lab.registry.running(RELAY)] == [again.proc.pid]
    assert restore_services(fake_lab) == []


def test_signalling_down_before_the_call_is_done_by_before_call(
        fake_lab: Lab, fake_backend: FakeBackend) -> None:
    (server,) = [c for c in fake_backend.script.starts() if c.what == SIGNALLING]
    injector = FaultInjector(fake_lab, Fault("signalling-down", at_s=0.0))
    injector.before_call(time.monotonic())
    assert injector.event.performed, "done before the peers start"
    assert injector.event.started_s is not None and injector.event.started_s < 0.5
    assert _reaped(server.proc) == -signal.SIGTERM
    injector.start({}, {})
    (event,) = injector.stop()
    assert event.detail == f"stopped the signalling server (pid {server.proc.pid})"
    assert event.media_started_s is None
    assert fake_lab.registry.running(SIGNALLING) == []


def test_signalling_down_later_counts_from_the_call_start_not_media(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    fault = Fault("signalling-down", at_s=0.4)
    injector = _run(fake_lab, fault,
                    lambda: _peers(fake_lab, fake_backend, tmp_path, media_at_s=None),
                    _performed)
    (event,) = injector.stop()
    assert event.performed and event.error is None
    assert event.started_s is not None and 0.4 <= event.started_s < 2.0
    assert event.media_started_s is None, "it never waited for media"


def test_kill_callee_sigkills_only_the_callee_peer(fake_lab: Lab, fake_backend: FakeBackend,
                                                   tmp_path: Path) -> None:
    peers = _peers(fake_lab, fake_backend, tmp_path)
    injector = _run(fake_lab, Fault("kill-callee", at_s=0.2), lambda: peers, _performed)
    (event,) = injector.stop()
    procs = peers[0]
    assert event.performed and event.error is None
    assert event.detail == f"SIGKILL callee peer (pid {procs['callee'].pid})"
    _assert_times_follow_media(event, 0.2)
    assert injector.killed == {"callee": event.started_s}
    assert _reaped(procs["callee"]) == -signal.SIGKILL
    assert procs["caller"].poll() is None, "the caller is left to notice"
    assert [p.pid for p in fake_lab.registry.running("caller peer")] == [procs["caller"].pid]


def test_kill_callee_of_a_callee_that_already_ended_is_reported_not_raised(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    peers = _peers(fake_lab, fake_backend, tmp_path, exit_after_s={"callee": 0.2})
    injector = _run(fake_lab, Fault("kill-callee", at_s=0.6), lambda: peers, _performed)
    (event,) = injector.stop()
    assert not event.performed
    assert event.error == (f"FaultError: the callee peer (pid {peers[0]['callee'].pid}) "
                           "already ended")
    assert injector.killed == {}
    assert _reaped(peers[0]["callee"]) == 0


POLICY = """\
name: {name}
description: A unit-test policy.
provenance:
  sources: ["tests/unit/test_faults.py"]
  reported: A test fixture, not a reported policy.
rules:
  - id: drop-{protocol}
    explain: {protocol} to the relays is dropped.
    match: {{protocol: {protocol}, dst_set: relays, direction: both}}
    action: {{kind: drop}}
"""


def _policy(tmp_path: Path, name: str, protocol: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(POLICY.format(name=name, protocol=protocol))
    return path


def test_swap_policy_applies_the_new_ruleset_through_the_censors_nft(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    fake_lab.apply_policy(load_policy(_policy(tmp_path, "drop-tcp", "tcp")))
    new = _policy(tmp_path, "drop-udp", "udp")
    censor = fake_backend.host("censor")
    loads_before = len([r for r in censor.runs if r.argv == ("nft", "-f", "-")])
    injector = _run(fake_lab, Fault("swap-policy", at_s=0.2, policy=str(new)),
                    lambda: _peers(fake_lab, fake_backend, tmp_path / "call"), _performed)
    (event,) = injector.stop()
    assert event.performed and event.error is None
    assert event.detail == "censor policy drop-tcp -> drop-udp"
    _assert_times_follow_media(event, 0.2)
    loads = [r for r in censor.runs if r.argv == ("nft", "-f", "-")]
    assert len(loads) == loads_before + 1
    expected = compile_policy(load_policy(new), bindings_for(fake_lab.topology)).nft_ruleset
    assert loads[-1].input_text == expected
    assert 'drop comment "drop-udp"' in expected
    assert fake_lab.registry.state.policy == "drop-udp"
    assert (fake_lab.registry.files / "policy.nft").read_text() == expected


def test_swap_policy_refused_by_nft_is_reported_and_the_old_policy_stays(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    fake_lab.apply_policy(load_policy(_policy(tmp_path, "drop-tcp", "tcp")))
    fake_backend.host("censor").on_run(["nft", "-f", "-"],
                                       Reply(1, stderr="Error: Could not process rule"))
    fault = Fault("swap-policy", at_s=0.1, policy=str(_policy(tmp_path, "drop-udp", "udp")))
    injector = _run(fake_lab, fault, lambda: _peers(fake_lab, fake_backend, tmp_path / "call"),
                    _performed)
    (event,) = injector.stop()
    assert not event.performed
    assert event.error == ("ApplyError: nft refused the ruleset of policy 'drop-udp': "
                           "Error: Could not process rule")
    assert event.started_s is not None and event.done_s is None
    assert fake_lab.registry.state.policy == "drop-tcp"


def test_swap_policy_to_a_missing_policy_fails_at_construction(fake_lab: Lab) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-policy"):
        FaultInjector(fake_lab, Fault("swap-policy", policy="no-such-policy"))


def _link_changes(backend: FakeBackend, host: str, since: int) -> list[NetlinkCall]:
    return [c for c in backend.script.netlink_calls(host)[since:]
            if c.method in ("link", "route")]


def test_link_flap_takes_the_interface_down_then_up_and_restores_routes(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    cgnat = fake_backend.host("cgnat")
    since = len(cgnat.netlink_calls)
    fault = Fault("link-flap", at_s=0.1, duration_s=0.4, link=("cgnat", "eth1"))
    injector = _run(fake_lab, fault, lambda: _peers(fake_lab, fake_backend, tmp_path),
                    lambda e: e.ended_s is not None or e.error is not None)
    (event,) = injector.stop()
    assert event.performed and event.error is None
    _assert_times_follow_media(event, 0.1)
    assert event.ended_s is not None and event.done_s is not None
    assert 0.38 <= event.ended_s - event.done_s < 2.0
    assert event.detail.startswith("cgnat:eth1 down, up again after 0.")
    eth1 = cgnat.interfaces["eth1"].index
    assert [(c.method, c.args, dict(c.kwargs)) for c in _link_changes(fake_backend, "cgnat",
                                                                      since)] == [
        ("link", ("set",), {"index": eth1, "state": "down"}),
        ("link", ("set",), {"index": eth1, "state": "up"}),
        ("route", ("replace",), {"dst": "0.0.0.0/0", "gateway": "198.18.0.1"}),
    ]
    assert cgnat.interfaces["eth1"].state == "up"


def test_link_flap_is_cut_short_when_the_call_ends(fake_lab: Lab, fake_backend: FakeBackend,
                                                  tmp_path: Path) -> None:
    fault = Fault("link-flap", at_s=0.0, duration_s=60.0, link=("censor", "eth0"))
    injector = _run(fake_lab, fault, lambda: _peers(fake_lab, fake_backend, tmp_path),
                    _performed)
    assert fake_backend.host("censor").interfaces["eth0"].state == "down"
    stopped = time.monotonic()
    (event,) = injector.stop()
    assert time.monotonic() - stopped < 3.0
    assert event.ended_s is not None and event.done_s is not None
    assert event.ended_s - event.done_s < 3.0
    assert fake_backend.host("censor").interfaces["eth0"].state == "up"


def test_link_flap_that_netlink_refuses_is_reported_not_raised(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    fake_backend.script.on_netlink("link", OSError(19, "No such device"), host="cgnat")
    fault = Fault("link-flap", at_s=0.0, duration_s=0.2, link=("cgnat", "eth0"))
    injector = _run(fake_lab, fault, lambda: _peers(fake_lab, fake_backend, tmp_path),
                    _performed)
    (event,) = injector.stop()
    assert not event.performed
    assert event.error == "OSError: [Errno 19] No such device"


def test_link_flap_on_an_interface_the_host_lacks_fails_at_construction(fake_lab: Lab) -> None:
    with pytest.raises(FaultError,
                       match=r"cgnat has no interface 'eth7' \(eth0, eth1, eth2, eth3\)"):
        FaultInjector(fake_lab, Fault("link-flap", duration_s=1.0, link=("cgnat", "eth7")))


def test_no_media_no_fault(fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    (relay,) = [c for c in fake_backend.script.starts() if c.what == RELAY]
    injector = _run(fake_lab, Fault("kill-relay", at_s=0.0),
                    lambda: _peers(fake_lab, fake_backend, tmp_path, media_at_s=None),
                    lambda e: False, timeout_s=0.5)
    (event,) = injector.stop()
    assert not event.performed and event.error is None
    assert event.detail == "media never started in both directions: fault not injected"
    assert event.started_s is None and event.media_started_s is None
    assert relay.proc.poll() is None
    assert [p.pid for p in fake_lab.registry.running(RELAY)] == [relay.proc.pid]


def test_the_call_ending_before_the_fault_is_due_leaves_everything(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    injector = _run(fake_lab, Fault("kill-relay", at_s=30.0),
                    lambda: _peers(fake_lab, fake_backend, tmp_path),
                    lambda e: e.media_started_s is not None)
    (event,) = injector.stop()
    assert not event.performed and event.error is None
    assert event.media_started_s is not None
    assert event.detail == "the call ended before the fault was due"
    assert fake_lab.registry.running(RELAY)


def test_kill_relay_without_a_running_relay_is_reported_not_raised(
        fake_lab: Lab, fake_backend: FakeBackend, tmp_path: Path) -> None:
    fake_lab.registry.stop(RELAY)
    injector = _run(fake_lab, Fault("kill-relay", at_s=0.0),
                    lambda: _peers(fake_lab, fake_backend, tmp_path), _performed)
    (event,) = injector.stop()
    assert not event.performed
    assert event.error == "FaultError: no running coturn relay is recorded"


@pytest.mark.parametrize(("fault", "message"), [
    (dict(kind="pull-the-plug"), "unknown fault 'pull-the-plug'"),
    (dict(kind="kill-relay", at_s=-1.0), "kill-relay: at_s must be >= 0"),
    (dict(kind="swap-policy"), "swap-policy needs policy"),
    (dict(kind="link-flap", duration_s=1.0), "link-flap needs link"),
    (dict(kind="link-flap", link=("cgnat", "eth0")), "link-flap needs duration_s > 0"),
    (dict(kind="link-flap", link=("cgnat", "eth0"), duration_s=0.0),
     "link-flap needs duration_s > 0"),
])
def test_a_fault_that_cannot_be_done_is_refused_when_it_is_made(fault: dict[str, object],
                                                                 message: str) -> None:
    with pytest.raises(FaultError, match=message):
        Fault(**fault)  # type: ignore[arg-type]


def test_signalling_down_may_be_due_before_the_call() -> None:
    fault = Fault("signalling-down", at_s=-1.0)
    assert fault.origin == "call"
    assert fault.describe() == "signalling-down at call+-1s"
