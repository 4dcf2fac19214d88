"""Each shipped policy has its effect on real packets, measured with probe
flows through the censor (harness.measure.probe), not inferred from rules."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import paths
from harness.censor.applier import root_qdisc_kinds
from harness.censor.compiler import bindings_for, compile_policy
from harness.censor.plan import TcQdisc
from harness.netns.process import wait_listening
from harness.spec.policy import load_policy
from harness.testbed import Lab

PROBE = [sys.executable, "-m", "harness.measure.probe"]
PORT = 40000
SECONDS = 2.0


def _apply(lab: Lab, name: str) -> None:
    lab.apply_policy(load_policy(paths.policy_path(name), lab.topology.sets.keys()))


def _start(lab: Lab, host: str, args: list[str], files: Path) -> subprocess.Popen[bytes]:
    proc = lab.host(host).start([*PROBE, *args], what="probe", log=files / f"{host}.log",
                                stdout=subprocess.PIPE)
    assert not wait_listening(proc.pid, [("udp", PORT)], 5.0), "probe did not bind"
    return proc


def _finish(proc: subprocess.Popen[bytes]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=SECONDS + 15)
    result: dict[str, float] = json.loads(out)
    return result


def upstream(lab: Lab, target: str, files: Path, *send_args: str) -> tuple[int, int]:
    """(sent, received) for a UDP stream from the caller to `target`."""
    address = lab.topology.address_of(target)
    sink = _start(lab, target, ["sink", "--listen", f"{address}:{PORT}",
                                "--seconds", str(SECONDS + 1)], files)
    sent = lab.host("caller").run([*PROBE, "send", "--to", f"{address}:{PORT}",
                                   "--seconds", str(SECONDS), *send_args])
    received = _finish(sink)
    return json.loads(sent.stdout)["sent"], int(received["packets"])


def downstream_kbit(lab: Lab, source: str, rate_kbit: float, files: Path) -> float:
    """The bitrate the caller receives from a stream `source` sends at `rate_kbit`."""
    address = lab.topology.address_of(source)
    streamer = _start(lab, source, ["stream", "--listen", f"{address}:{PORT}",
                                    "--rate-kbit", str(rate_kbit), "--seconds", str(SECONDS)],
                      files)
    fetched = lab.host("caller").run([*PROBE, "fetch", "--to", f"{address}:{PORT}",
                                      "--seconds", str(SECONDS + 0.5)])
    _finish(streamer)
    return float(json.loads(fetched.stdout)["kbit_per_s"])


def test_baseline_passes_every_probe(lab: Lab, run_files: Path) -> None:
    _apply(lab, "baseline")
    sent, received = upstream(lab, "relay", run_files, "--rate-kbit", "64", "--stun-cookie")
    assert received == sent


def test_relay_block_drops_udp_to_relays_only(lab: Lab, run_files: Path) -> None:
    _apply(lab, "relay-block")
    sent, received = upstream(lab, "relay", run_files, "--rate-kbit", "64")
    assert sent > 50 and received == 0
    sent, received = upstream(lab, "stun", run_files, "--rate-kbit", "64")
    assert received == sent


def test_relay_block_leaves_tcp_to_relays(lab: Lab) -> None:
    _apply(lab, "relay-block")
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
    args = ["--rate-kbit", "32", "--plain-first", str(plain_first)]
    sent, received = upstream(lab, "stun", run_files, *args,
                              *(["--stun-cookie"] if stun else []))
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
    sent, received = upstream(lab, "relay", run_files, "--rate-kbit", "128", "--size", "200")
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
