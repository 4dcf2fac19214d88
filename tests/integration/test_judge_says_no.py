"""The judge can say no: five broken calls, each in a real lab, none of which
may pass, whatever their cell expects.

- a client that crashes mid-call;
- a tunnel whose program is not installed;
- the relay killed before the call, and unable to come back;
- a call dropped after media started, under a `fails` expectation whose
  rule never counted a packet (the censor did not cause it);
- a result with one direction's figures missing.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.calls import CLIENTS, CallSettings
from harness.calls.base import CallOutput
from harness.calls.procs import reference_audio, run_peers
from harness.calls.webrtc import WebRtcClient, peer_argv
from harness.faults import Fault, restore_services, running
from harness.services.lab_services import RELAY, SERVICES
from harness.session import judged_call
from harness.spec.names import Profile
from harness.spec.policy import Expectation, Policy, load_policy
from harness.testbed import Lab
from harness.tunnels.base import TunnelledEndpoints

pytestmark = pytest.mark.root

SETTINGS = CallSettings(media_s=5.0, setup_timeout_s=12.0, stall_timeout_s=3.0)
WRAPPER = Path(__file__).with_name("peer_wrapper.py")


class BrokenCallee(WebRtcClient):
    """The real aiortc client, with its callee run under peer_wrapper.py."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def place(self, lab: Lab, strategy: str, settings: CallSettings, call_dir: Path,
              fault: Fault | None = None,
              endpoints: TunnelledEndpoints | None = None) -> CallOutput:
        audio = reference_audio(lab)
        room = f"{lab.run_id}-{call_dir.name}"

        def argv(role: str) -> list[str]:
            real = peer_argv(lab, role, strategy, room, audio, call_dir, settings)
            if role == "caller":
                return real
            return [sys.executable, str(WRAPPER), self.mode,
                    str(call_dir / "callee.events.jsonl"), str(call_dir / "callee.json"), "--",
                    *real]

        return run_peers(lab, argv, call_dir, settings, fault, strategy)


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Place webrtc calls with a broken callee for the test's duration."""
    def install(mode: str) -> None:
        monkeypatch.setitem(CLIENTS, Profile.WEBRTC, BrokenCallee(mode))

    return install


@pytest.fixture
def services_back(lab: Lab) -> Iterator[Lab]:
    yield lab
    restore_services(lab)
    assert all(running(lab, what) for what in SERVICES)


def _path_without(program: str, farm: Path) -> Path:
    """A directory of links to every program on PATH but `program`: a PATH
    on which it is really not installed."""
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            link = farm / entry.name
            if entry.name != program and not link.exists() and not link.is_symlink():
                link.symlink_to(entry)
    assert not (farm / program).exists()
    return farm


def _policy(name: str) -> Policy:
    return load_policy(paths.policy_path(name))


def _expecting(policy: Policy, strategy: str, expectation: Expectation) -> Policy:
    """`policy` with one cell's expectation replaced (the rules are unchanged)."""
    expect = {profile: dict(cells) for profile, cells in policy.expect.items()}
    expect.setdefault("webrtc", {})[strategy] = expectation
    return dataclasses.replace(policy, expect=expect)


def test_a_client_that_crashes_mid_call_is_an_error(lab: Lab, run_files: Path,
                                                    broken: Callable[[str], None]) -> None:
    broken("crash-after-media")
    # Even where the cell expects the call to fail, a crash is no pass.
    policy = _expecting(_policy("baseline"), "direct",
                        Expectation("fails", basis="mechanism", decided_by=["link"]))
    record = judged_call(lab, policy, "direct", run_files / "crash", SETTINGS)
    assert not (run_files / "crash" / "callee.json").exists()
    assert record.outcome == "error" and record.verdict == "error", record.judgement
    assert "callee: peer-crashed" in record.judgement["reasons"]


def test_a_result_with_one_direction_missing_is_an_error(lab: Lab, run_files: Path,
                                                         broken: Callable[[str], None]) -> None:
    broken("drop-direction")
    record = judged_call(lab, _policy("baseline"), "direct", run_files / "half", SETTINGS)
    assert record.outcome == "error" and record.verdict == "error", record.judgement
    assert any("no loss figures from the callee" in r for r in record.judgement["reasons"])


def test_a_missing_tunnel_program_is_an_error_not_a_pass(lab: Lab, run_files: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # rkn-2025-calls-vpn-block expects wireguard to fail: without wireguard-go
    # it would "fail" too, for a reason that has nothing to do with the censor.
    monkeypatch.setenv("PATH", str(_path_without("wireguard-go", run_files / "bin")))
    policy = _policy("rkn-2025-calls-vpn-block")
    expected = policy.expectation("webrtc", "wireguard")
    assert expected is not None and expected.outcome == "fails"
    record = judged_call(lab, policy, "wireguard", run_files / "no-wg", SETTINGS)
    assert record.outcome == "error" and record.verdict == "error", record.judgement
    assert record.failure_kind == "tool-missing"
    assert "wireguard-go (Debian package wireguard-go)" in (record.failure_detail or "")


def test_a_relay_that_died_and_cannot_restart_makes_the_call_an_error(
        services_back: Lab, run_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = services_back
    assert lab.registry.stop(RELAY, signal.SIGKILL)
    # The relay's program now exits at once, so the health check cannot bring it back.
    bin_dir = run_files / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "turnserver"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ["PATH"]]))
    policy = _policy("turn-relay-block")
    assert (policy.expectation("webrtc", "turn-udp") or Expectation("connects", "mechanism")
            ).outcome == "fails"
    record = judged_call(lab, policy, "turn-udp", run_files / "dead-relay", SETTINGS)
    assert record.outcome == "error" and record.verdict == "error", record.judgement
    assert "did not restart" in record.judgement["reasons"][-1]


def test_a_killed_relay_is_restarted_before_the_next_call(services_back: Lab,
                                                          run_files: Path) -> None:
    lab = services_back
    assert lab.registry.stop(RELAY, signal.SIGKILL)
    record = judged_call(lab, _policy("baseline"), "turn-udp", run_files / "revived", SETTINGS)
    assert running(lab, RELAY)
    assert record.outcome == "connects" and record.verdict == "pass", record.judgement


def test_a_drop_no_rule_caused_does_not_pass_a_fails_cell(services_back: Lab,
                                                          run_files: Path) -> None:
    # dpi-stun-drop inspects UDP only: a TURN-over-TCP call is not touched by
    # its rule. Declare (wrongly) that the call fails because of that rule,
    # then drop the call by killing the relay: the call did fail, but the
    # rule counted nothing, so the verdict is error, never pass.
    lab = services_back
    policy = _expecting(_policy("dpi-stun-drop"), "turn-tcp", Expectation(
        "fails", basis="mechanism", decided_by=["stun-at-flow-start"]))
    record = judged_call(lab, policy, "turn-tcp", run_files / "uncaused", SETTINGS,
                         Fault("kill-relay", at_s=1.0))
    assert record.connected and record.failure_kind == "relay-lost", record.judgement
    assert record.outcome == "fails" and record.verdict == "error", record.judgement
    assert record.judgement["deciding_rules"] == [
        {"rule": "stun-at-flow-start", "packets": 0, "bytes": 0}]
