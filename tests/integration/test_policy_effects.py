"""Each shipped policy has its effect on real packets, measured with probe
flows through the censor (harness.measure.traffic), not inferred from rules."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import paths
from harness.censor.applier import root_qdisc_kinds
from harness.censor.compiler import bindings_for, compile_policy
from harness.censor.plan import TcQdisc
from harness.measure.traffic.udp import IP_UDP_OVERHEAD
from harness.netns.process import wait_listening
from harness.spec.policy import load_policy
from harness.testbed import Lab
from harness.wire import stun

PROBE = [sys.executable, "-m", "harness.measure.traffic"]
PORT = 40000
SECONDS = 2.0
SIZE = 200  # UDP payload bytes per packet


def _apply(lab: Lab, name: str) -> None:
    lab.apply_policy(load_policy(paths.policy_path(name), lab.topology.sets.keys()))


def _start(lab: Lab, host: str, args: list[str], files: Path) -> subprocess.Popen[bytes]:
    proc = lab.host(host).start([*PROBE, *args], what="probe", log=files / f"{host}.log",
                                stdout=subprocess.PIPE)
    assert not wait_listening(proc.pid, [("udp", PORT)], 5.0), "probe did not bind"
    return proc


def _finish(proc: subprocess.Popen[bytes]) -> dict[str, dict[str, dict[str, int]]]:
    out, _ = proc.communicate(timeout=SECONDS + 15)
    result: dict[str, dict[str, dict[str, int]]] = json.loads(out)
    return result


def _pps(rate_kbit: float, size: int) -> str:
    """Packets per second for `rate_kbit` of UDP payload."""
    return str(rate_kbit * 1000 / (8 * size))


def _stun_args(plain_first: int, size: int) -> list[str]:
    """Every packet after the first `plain_first` starts with a STUN Binding
    Request header (the magic cookie at byte 4, the length of the rest)."""
    header = stun.HEADER.pack(stun.BINDING_REQUEST, size - stun.HEADER.size,
                              stun.MAGIC_COOKIE, os.urandom(12))
    return ["--signature-hex", header.hex(), "--signature-at", str(plain_first + 1),
            "--signature-every"]


def upstream(lab: Lab, target: str, files: Path, rate_kbit: float, size: int = SIZE,
             stun_cookie: bool = False, plain_first: int = 0) -> tuple[int, int]:
    """(sent, received) for a UDP stream from the caller to `target`: `rate_kbit`
    of UDP payload; with `stun_cookie`, STUN-looking after `plain_first` packets."""
    address = lab.topology.address_of(target)
    sink = _start(lab, target, ["udp-sink", "--listen", f"{address}:{PORT}",
                                "--seconds", str(SECONDS + 1)], files)
    sent = lab.host("caller").run([*PROBE, "udp-send", "--to", f"{address}:{PORT}",
                                   "--pps", _pps(rate_kbit, size), "--size", str(size),
                                   "--seconds", str(SECONDS),
                                   *(_stun_args(plain_first, size) if stun_cookie else [])])
    received = _finish(sink)["flows"]
    return (sum(json.loads(sent.stdout)["sent"].values()),
            sum(int(flow["packets"]) for flow in received.values()))


def downstream_kbit(lab: Lab, source: str, rate_kbit: float, files: Path) -> float:
    """The bitrate (UDP payload over the caller's receiving window) the caller
    receives from a stream `source` sends at `rate_kbit`."""
    address = lab.topology.address_of(source)
    streamer = _start(lab, source, ["udp-serve", "--listen", f"{address}:{PORT}",
                                    "--pps", _pps(rate_kbit, SIZE), "--size", str(SIZE),
                                    "--seconds", str(SECONDS)], files)
    window = SECONDS + 0.5
    fetched = lab.host("caller").run([*PROBE, "udp-fetch", "--to", f"{address}:{PORT}",
                                      "--seconds", str(window)])
    _finish(streamer)
    flows = json.loads(fetched.stdout)["flows"].values()
    payload = sum(int(f["ip_bytes"]) - IP_UDP_OVERHEAD * int(f["packets"]) for f in flows)
    return payload * 8 / 1000 / window


def test_baseline_passes_every_probe(lab: Lab, run_files: Path) -> None:
    _apply(lab, "baseline")
    sent, received = upstream(lab, "relay", run_files, 64, stun_cookie=True)
    assert received == sent


def test_relay_block_drops_udp_to_relays_only(lab: Lab, run_files: Path) -> None:
    _apply(lab, "turn-relay-block")
    sent, received = upstream(lab, "relay", run_files, 64)
    assert sent > 50 and received == 0
    sent, received = upstream(lab, "stun", run_files, 64)
    assert received == sent


def test_relay_block_leaves_tcp_to_relays(lab: Lab) -> None:
    _apply(lab, "turn-relay-block")
    relay = lab.topology.address_of("relay")
    probe = ["python3", "-c", "import socket,sys; socket.create_connection((sys.argv[1], 443), "
             "timeout=3).close()", str(relay)]
    assert lab.host("caller").run(probe, check=False).returncode == 0


@pytest.mark.parametrize("stun, plain_first, blocked", [
    (True, 0, True),     # STUN from the first packet: classified and dropped
    (False, 0, False),   # no STUN at all: untouched
    (True, 5, False),    # STUN only after the inspected first 3 packets: missed
])
def test_dpi_stun_drop_judges_flow_start(lab: Lab, run_files: Path, stun: bool,
                                         plain_first: int, blocked: bool) -> None:
    _apply(lab, "dpi-stun-drop")
    sent, received = upstream(lab, "stun", run_files, 32, stun_cookie=stun,
                              plain_first=plain_first)
    if blocked:
        assert sent > 20 and received == 0
    else:
        assert received == sent


def test_udp_throttle_polices_each_direction(lab: Lab, run_files: Path) -> None:
    policy = load_policy(paths.policy_path("udp-throttle"))
    rate = policy.rules[0].action.rate_kbit
    burst = policy.rules[0].action.burst_bytes
    assert rate is not None and burst is not None
    _apply(lab, "udp-throttle")
    sent, received = upstream(lab, "relay", run_files, 128, size=200)
    # Policed bits over the window: rate × time plus one bucket, IP+UDP headers counted.
    allowed = (rate * 1000 / 8 * SECONDS + burst) / (200 + 28)
    assert sent > 3 * allowed
    assert 0.7 * allowed <= received <= 1.15 * allowed
    down = downstream_kbit(lab, "stun", 64, run_files)
    assert 0.5 * rate <= down <= 1.5 * rate + burst * 8 / 1000 / SECONDS


def test_policy_swap_is_one_table(lab: Lab) -> None:
    _apply(lab, "dpi-stun-drop")
    _apply(lab, "udp-throttle")
    listing = lab.host("censor").run(["nft", "list", "tables"]).stdout.split()
    assert listing.count("callwall") == 1
    ruleset = lab.host("censor").run(["nft", "list", "ruleset"]).stdout
    assert "udp-throttle" in ruleset and "stun-at-flow-start" not in ruleset


def test_tc_operations_reach_the_censor_and_are_undone(lab: Lab) -> None:
    """The tc half of a plan goes through pyroute2 into the censor's namespace;
    the next plan without it takes the qdisc away again."""
    bindings = bindings_for(lab.topology)
    base = compile_policy(load_policy(paths.policy_path("baseline")), bindings)
    dev = bindings.subscriber_interfaces[0]
    shaped = dataclasses.replace(base, tc_ops=(
        TcQdisc(dev=dev, kind="tbf",
                params=(("rate", "1mbit"), ("burst", 20000), ("latency", "50ms"))),))
    censor = lab.host_with_role("censor")
    lab.apply_plan(shaped)
    assert root_qdisc_kinds(censor, dev) == ["tbf"]
    lab.apply_plan(base)
    assert root_qdisc_kinds(censor, dev) != ["tbf"]
