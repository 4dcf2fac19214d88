"""Injected faults end as results, never as hangs: each call below breaks
something in a real lab and checks that the record says what failed and when,
and that the whole call ended within its hard budget.

Times in a record (failed_at_s) and in its fault events (started_s, done_s,
ended_s, media_started_s) are seconds from the call's start, on one clock.
Every fault is due AT_S seconds after media started (both peers decoded a
frame), so it lands inside the media window; a peer declares a stall
STALL_S after its last decoded frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.calls import CallSettings
from harness.calls.peer import AudioSink, CallState, PeerConfig, watch_window
from harness.faults import Fault, FaultError, link_towards, restore_services, running
from harness.measure.peer import PeerReport, PeerTimeline
from harness.measure.record import CallRecord
from harness.measure.verdict import CallEvidence, peer_failures
from harness.netns.endpoint import Endpoint
from harness.services.lab_services import RELAY, SERVICES
from harness.session import judged_call
from harness.spec.policy import load_policy
from harness.testbed import Lab

SETTINGS = CallSettings(media_s=6.0, setup_timeout_s=10.0, stall_timeout_s=3.0)
STALL_S = SETTINGS.stall_timeout_s
AT_S = 1.5
# How late after the fault's start a stall may be declared: frames already in
# flight (a few tens of ms), the injector's polling and the event loop.
STALL_SLACK_S = 0.6


@pytest.fixture
def fault_lab(lab: Lab) -> Iterator[Lab]:
    """The module's lab; afterwards, whatever service a fault stopped is started
    again. A swapped policy needs nothing: judged_call applies its policy when
    it differs from the lab's."""
    yield lab
    restore_services(lab)
    assert all(running(lab, what) for what in SERVICES)


def faulty_call(lab: Lab, call_dir: Path, strategy: str, fault: Fault,
                policy: str = "baseline") -> CallRecord:
    started = time.monotonic()
    record = judged_call(lab, load_policy(paths.policy_path(policy)), strategy, call_dir,
                         SETTINGS, fault)
    wall = time.monotonic() - started
    assert wall < SETTINGS.budget_s, f"the call took {wall:.1f}s, budget {SETTINGS.budget_s}s"
    return record


def performed(record: CallRecord) -> dict[str, Any]:
    """The single fault event, checked to have been performed on time."""
    (event,) = record.faults
    assert event["performed"] and event["error"] is None, event
    if event["fault"]["kind"] != "signalling-down":
        assert event["media_started_s"] is not None
        assert event["started_s"] >= event["media_started_s"] + AT_S - 0.01, event
        assert event["started_s"] < event["media_started_s"] + AT_S + 0.5, event
    return event


def assert_stalled_after(record: CallRecord, event: dict[str, Any]) -> None:
    assert record.failure_kind == "media-stalled", record
    assert record.failed_at_s is not None
    assert event["started_s"] + STALL_S - 0.1 <= record.failed_at_s, (record.failed_at_s, event)
    assert record.failed_at_s <= event["done_s"] + STALL_S + STALL_SLACK_S, (record.failed_at_s,
                                                                            event)


def test_relay_killed_mid_call_stalls_a_udp_relay_call(fault_lab: Lab, run_files: Path) -> None:
    # Over UDP nothing tells the peers that the relay died: media just stops,
    # and the stall detector ends the call STALL_S later (ICE consent freshness
    # would take ~30 s).
    record = faulty_call(fault_lab, run_files / "kill-relay-udp", "turn-udp",
                         Fault("kill-relay", at_s=AT_S))
    event = performed(record)
    assert record.connected  # media flowed both ways before the kill
    assert_stalled_after(record, event)
    assert record.outcome == "fails" and record.verdict == "fail", record.judgement
    assert not running(fault_lab, RELAY)
    assert record.directions  # both directions were still scored


def test_relay_killed_mid_call_drops_a_tcp_relay_call_at_once(fault_lab: Lab,
                                                              run_files: Path) -> None:
    # Over TCP the kernel closes the dead relay's connections: the peers see
    # their relay connection close within milliseconds ("relay-lost"; aiortc
    # alone would make it look like the other side hung up).
    record = faulty_call(fault_lab, run_files / "kill-relay-tcp", "turn-tcp",
                         Fault("kill-relay", at_s=AT_S))
    event = performed(record)
    assert record.failure_kind == "relay-lost", record
    assert record.failed_at_s is not None
    assert event["started_s"] <= record.failed_at_s < event["started_s"] + 1.0
    # Media had flowed, then the call dropped: it did not work, and nothing broke
    # in the harness, so it is judged (a fail against baseline's connects).
    assert record.outcome == "fails" and record.verdict == "fail", record.judgement


def test_signalling_down_fails_the_call_at_once(fault_lab: Lab, run_files: Path) -> None:
    record = faulty_call(fault_lab, run_files / "signalling-down", "turn-udp",
                         Fault("signalling-down"))
    event = performed(record)
    assert event["started_s"] < 0.5  # before the peers started
    assert not record.connected
    assert record.failure_kind == "signalling-unreachable", record
    # The peers fail as soon as they try to connect (refused): a Python start-up away.
    assert record.failed_at_s is not None and record.failed_at_s < 5.0


def test_killed_callee_is_reported_not_lost(fault_lab: Lab, run_files: Path) -> None:
    call_dir = run_files / "kill-callee"
    record = faulty_call(fault_lab, call_dir, "turn-udp", Fault("kill-callee", at_s=AT_S))
    event = performed(record)
    assert not (call_dir / "callee.json").exists()  # SIGKILL: it wrote nothing
    assert record.failure_kind == "peer-killed", record
    assert record.failed_at_s == event["started_s"]
    assert not record.connected
    # The caller saw its media stop and said so in its own result.
    assert record.error == "media-stalled"
    # The fault killed it on purpose: a dropped call, not a harness error.
    assert record.outcome == "fails" and record.verdict == "fail", record.judgement


def test_dpi_stun_drop_swapped_in_mid_call_spares_the_established_flow(
        fault_lab: Lab, run_files: Path) -> None:
    # The classifier only looks at a UDP flow while the censor's conntrack
    # counts at most 3 packets (`ct packets <= 3`). The swap replaces the nft
    # ruleset but keeps conntrack, so the call's relay flow, thousands of
    # packets in, is never classified: its later STUN messages (consent checks,
    # refreshes) pass. Only flows that start after the swap are judged.
    record = faulty_call(fault_lab, run_files / "swap-dpi", "turn-udp",
                         Fault("swap-policy", at_s=AT_S, policy="dpi-stun-drop"))
    performed(record)
    assert fault_lab.registry.state.policy == "dpi-stun-drop"
    assert record.connected and record.failure_kind is None, record
    assert record.failed_at_s is None
    assert record.mos is not None and record.mos >= 4.0


def test_relay_block_swapped_in_mid_call_stalls_a_udp_relay_call(fault_lab: Lab,
                                                                 run_files: Path) -> None:
    # turn-relay-block drops UDP towards the relay set with no regard to flow
    # state: the caller's media stops at once, the callee stalls.
    record = faulty_call(fault_lab, run_files / "swap-relay-block", "turn-udp",
                         Fault("swap-policy", at_s=AT_S, policy="turn-relay-block"))
    event = performed(record)
    assert fault_lab.registry.state.policy == "turn-relay-block"
    # The rule is in force only once the ruleset is applied (done_s).
    assert_stalled_after(record, event)


def test_udp_throttle_swapped_in_mid_call_spares_a_tcp_relay_call(fault_lab: Lab,
                                                                  run_files: Path) -> None:
    record = faulty_call(fault_lab, run_files / "swap-throttle", "turn-tcp",
                         Fault("swap-policy", at_s=AT_S, policy="udp-throttle"))
    performed(record)
    assert fault_lab.registry.state.policy == "udp-throttle"
    assert record.connected and record.failure_kind is None, record
    assert record.loss_pct == 0.0
    assert record.mos is not None and record.mos >= 4.0


def test_short_flap_of_the_censor_uplink_is_survived_by_tcp(fault_lab: Lab,
                                                            run_files: Path) -> None:
    # One second without the censor's link to the internet: TCP retransmits
    # what was lost once the link is back, the peers see a gap shorter than
    # the stall timeout and nothing is lost at the RTP level.
    call_dir = run_files / "flap-tcp"
    link = link_towards(fault_lab.topology, "censor", "inet")
    record = faulty_call(fault_lab, call_dir, "turn-tcp",
                         Fault("link-flap", at_s=AT_S, duration_s=1.0, link=link))
    event = performed(record)
    assert event["ended_s"] - event["done_s"] == pytest.approx(1.0, abs=0.3)
    assert record.connected and record.failure_kind is None, record
    assert record.loss_pct == 0.0
    assert _default_route(fault_lab, "censor")


def test_long_flap_of_the_censor_uplink_stalls_a_udp_call(fault_lab: Lab, run_files: Path) -> None:
    link = link_towards(fault_lab.topology, "censor", "inet")
    record = faulty_call(fault_lab, run_files / "flap-udp", "turn-udp",
                         Fault("link-flap", at_s=AT_S, duration_s=STALL_S + 2.0, link=link))
    event = performed(record)
    assert_stalled_after(record, event)
    assert event["ended_s"] is not None  # the link came back up
    assert _default_route(fault_lab, "censor")


def test_flap_of_the_nat_uplink_is_a_race_for_tcp(fault_lab: Lab, run_files: Path) -> None:
    # When the CGNAT's outside link goes down, Linux deletes the conntrack
    # entries it masqueraded through it: the NAT forgets the call's mapping.
    # After the link is back, if the caller's retransmission reaches the NAT
    # first, a new mapping with the same port is made and the call survives;
    # if the relay's does, it lands on the NAT itself, which answers with a
    # reset, and the relay connection dies. Both happen (about half the runs
    # each): the record must say which, in time.
    link = link_towards(fault_lab.topology, "cgnat", "censor")
    record = faulty_call(fault_lab, run_files / "flap-nat", "turn-tcp",
                         Fault("link-flap", at_s=AT_S, duration_s=1.0, link=link))
    event = performed(record)
    assert record.failure_kind in (None, "relay-lost"), record
    if record.failure_kind == "relay-lost":
        assert record.failed_at_s is not None
        assert event["done_s"] < record.failed_at_s < event["ended_s"] + STALL_S
    assert _default_route(fault_lab, "cgnat")


def _default_route(lab: Lab, host: str) -> bool:
    with lab.host(host).netlink() as ns:
        return any(route.get("dst_len") == 0 for route in ns.get_routes(family=2, table=254))


# --------------------------------------------------------------------------- no lab needed


def test_a_fault_says_what_it_needs() -> None:
    with pytest.raises(FaultError):
        Fault("link-flap", at_s=1.0, duration_s=1.0)
    with pytest.raises(FaultError):
        Fault("link-flap", at_s=1.0, link=("cgnat", "eth1"))
    with pytest.raises(FaultError):
        Fault("swap-policy", at_s=1.0)
    with pytest.raises(FaultError):
        Fault("kill-relay", at_s=-1.0)
    assert Fault("signalling-down").origin == "call"
    assert Fault("kill-callee", at_s=2.0).origin == "media"


def test_the_first_failure_on_the_call_clock_is_the_calls() -> None:
    def first(caller: PeerReport, callee: PeerReport,
              timelines: list[PeerTimeline]) -> tuple[str | None, float | None]:
        failures = peer_failures(CallEvidence(caller, callee, 6.0, timelines))
        return (failures[0].kind, failures[0].at_s) if failures else (None, None)

    caller = PeerReport("caller", connected=True, error="media-stalled", failed_at_s=4.0)
    callee = PeerReport.absent("callee", "peer-killed")
    timelines = [PeerTimeline("caller", wrote_result=True, failed_s=6.5, exited_s=7.0),
                 PeerTimeline("callee", wrote_result=False, exited_s=3.6, killed_s=3.5)]
    assert first(caller, callee, timelines) == ("peer-killed", 3.5)
    # A peer that wrote nothing, and was not killed by a fault, crashed.
    crashed = PeerReport.absent("callee", "peer-crashed-or-timed-out")
    assert first(caller, crashed, [timelines[0], PeerTimeline(
        "callee", wrote_result=False, exited_s=2.0)]) == ("peer-crashed", 2.0)
    assert first(PeerReport("caller"), PeerReport("callee"), []) == (None, None)
    # Without timelines, the peers' own failed_at_s stand in.
    assert first(caller, PeerReport("callee", error="internal-error: x", failed_at_s=1.0),
                 []) == ("internal-error", 1.0)


def _peer_config(stall_timeout: float) -> PeerConfig:
    return PeerConfig(role="caller", signal=Endpoint("127.0.0.1", 1), room="r",
                      strategy="direct", stun=None, turn=None, credentials=None,
                      audio=Path("ref.wav"), media_seconds=5.0, setup_timeout=5.0,
                      total_timeout=20.0, linger=0.0, out=Path("out.json"), record=None,
                      host_ips=(), ca_file=None, stall_timeout=stall_timeout)


def test_media_window_ends_on_a_stall_and_not_while_frames_flow() -> None:
    async def window(feed_frames: bool) -> tuple[bool, float]:
        sink = AudioSink(None, 48000)
        now = time.monotonic()
        state = CallState(cfg=_peer_config(0.3), t_process=now, started_at=time.time(),
                          sink=sink)
        sink.t_first = sink.t_last = now

        async def feed() -> None:
            while feed_frames:
                sink._on_frame(None)
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(feed())
        stalled = await watch_window(state, end=now + 0.8)
        feeder.cancel()
        return stalled, time.monotonic() - now

    stalled, took = asyncio.run(window(feed_frames=False))
    assert stalled and 0.3 <= took < 0.5
    stalled, took = asyncio.run(window(feed_frames=True))
    assert not stalled and took >= 0.8
