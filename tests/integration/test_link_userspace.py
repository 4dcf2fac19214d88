"""Link impairments on real packets between lab hosts (root).

One-way delays are measured by probes whose send timestamps ride in the
payload (sender and receiver share the machine's clock), losses and
duplicates by sequence numbers: nothing here reads the configuration back."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from harness import cli, paths
from harness.link.apply import backend_for, find_link, set_impairment, target_for
from harness.link.netem import NetemBackend
from harness.link.selection import NoLinkBackend, choose_backend, probe_netem
from harness.link.userspace import UserspaceBackend
from harness.measure.traffic.lab import one_way_delays
from harness.measure.traffic.owd import OwdTrace
from harness.netns.registry import Registry
from harness.spec.impairment import Impairment
from harness.testbed import Lab
from harness.testing.emulator_window import clean_windows

CALLER_SIDE = "100.64.1.2"
CGNAT_SIDE = "100.64.1.1"
Z99 = 2.5758


def _caller_to_cgnat(lab: Lab, count: int = 600, pps: float = 1000) -> OwdTrace:
    return one_way_delays(lab.host("caller"), lab.host("cgnat"), CGNAT_SIDE, count=count,
                          pps=pps)


def _daemons_of(lab: Lab) -> list[int]:
    """PIDs of impairment daemons whose config lives in this run's directory."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "callwall-impaird" in text and str(lab.registry.dir) + "/" in text:
            found.append(int(cmdline.parent.name))
    return found


def _median(trace: OwdTrace) -> float:
    return statistics.median(trace.delays_ms())


def _nfqueue_rules(lab: Lab, host: str) -> list[str]:
    rules = lab.host(host).run(["iptables", "-t", "mangle", "-S", "POSTROUTING"]).stdout
    return [line for line in rules.splitlines() if "NFQUEUE" in line]


def test_delay_is_applied_changed_live_and_cleared(lab: Lab) -> None:
    set_impairment(lab.network, "caller", "cgnat", Impairment(delay_ms=20))
    assert lab.registry.state.link_backend in ("userspace", "netem")
    assert _median(_caller_to_cgnat(lab)) == pytest.approx(20, abs=1.0)
    index, direction = find_link(lab.topology, "caller", "cgnat")
    target = target_for(lab.network, index, direction)
    backend = backend_for(lab.network)
    pids = [p.pid for p in lab.registry.running(f"link impaird {target.label}")]

    set_impairment(lab.network, "caller", "cgnat", Impairment(delay_ms=40))
    assert _median(_caller_to_cgnat(lab)) == pytest.approx(40, abs=1.0)
    if isinstance(backend, UserspaceBackend):  # changed by SIGHUP, not a restart
        assert [p.pid for p in lab.registry.running(f"link impaird {target.label}")] == pids
        assert len(_nfqueue_rules(lab, "caller")) == 1

    set_impairment(lab.network, "caller", "cgnat", None)
    assert _median(_caller_to_cgnat(lab)) < 1.0
    assert not backend.is_applied(target)
    assert _nfqueue_rules(lab, "caller") == []


def test_loss_and_duplicates_counted_by_the_receiver(lab: Lab) -> None:
    sent, p = 3000, 0.2
    set_impairment(lab.network, "caller", "cgnat", Impairment(loss_pct=p * 100, seed=4))
    try:
        lost = len(_caller_to_cgnat(lab, count=sent, pps=2000).lost())
        assert abs(lost - sent * p) <= Z99 * math.sqrt(sent * p * (1 - p)), lost
        set_impairment(lab.network, "caller", "cgnat", None)  # a fresh daemon: see the next test
        set_impairment(lab.network, "caller", "cgnat", Impairment(duplicate_pct=10, seed=4))
        trace = _caller_to_cgnat(lab, count=sent, pps=2000)
        assert trace.lost() == []
        assert abs(trace.duplicates() - sent * 0.1) <= Z99 * math.sqrt(sent * 0.1 * 0.9)
    finally:
        set_impairment(lab.network, "caller", "cgnat", None)


def test_a_live_change_loses_no_packet(lab: Lab) -> None:
    """Switching a running link from loss to duplication (the daemon then needs
    whole packets, not headers) must not lose the packets that follow."""
    set_impairment(lab.network, "caller", "cgnat", Impairment(loss_pct=20, seed=4))
    try:
        _caller_to_cgnat(lab, count=300, pps=2000)
        set_impairment(lab.network, "caller", "cgnat", Impairment(duplicate_pct=10, seed=4))
        lost = _caller_to_cgnat(lab, count=1000, pps=2000).lost()
        assert lost == [], f"{len(lost)} packets lost after the change, first {lost[:5]}"
    finally:
        set_impairment(lab.network, "caller", "cgnat", None)


def test_link_set_command_impairs_the_reverse_direction(lab: Lab) -> None:
    code = cli.main(["link", "set", "--lab", lab.run_id, "caller", "cgnat",
                     "--direction", "b-a", "--delay", "15ms"])
    assert code == 0
    try:
        for window in clean_windows(lab, "cgnat", "caller", lambda: one_way_delays(
                lab.host("cgnat"), lab.host("caller"), CALLER_SIDE, count=500, pps=1000)):
            assert _median(window.result) == pytest.approx(15, abs=1.0), window.said()
        assert _median(_caller_to_cgnat(lab, count=300)) < 1.0  # a-b untouched
        assert cli.main(["link", "set", "--lab", lab.run_id, "caller", "cgnat",
                         "--direction", "b-a", "--delay", "fast"]) == cli.EXIT_BAD_INPUT
    finally:
        assert cli.main(["link", "set", "--lab", lab.run_id, "caller", "cgnat",
                         "--direction", "b-a", "--clear"]) == 0
    # The lab's own process rewrote the run's state meanwhile (the probes it
    # started); the daemon the command started was still found and stopped.
    assert _daemons_of(lab) == []


def test_netem_backend_where_the_kernel_has_it(lab: Lab) -> None:
    probe = probe_netem(lab.host("caller"))
    if not probe.usable:
        pytest.skip(f"needs sch_netem: {probe.reason}")
    index, direction = find_link(lab.topology, "caller", "cgnat")
    target = target_for(lab.network, index, direction)
    backend = NetemBackend()
    backend.apply(target, Impairment(delay_ms=20))
    try:
        assert _median(_caller_to_cgnat(lab)) == pytest.approx(20, abs=1.0)
    finally:
        backend.clear(target)


def test_forcing_netem_where_it_is_missing_is_refused(lab: Lab) -> None:
    caller = lab.host("caller")
    if probe_netem(caller).usable:
        pytest.skip("this kernel has sch_netem: nothing to refuse")
    with pytest.raises(NoLinkBackend, match="netem was asked for, but .*sch_netem"):
        choose_backend(f"{lab.run_id}-forced", caller, "netem")


def test_topology_impairments_live_with_the_lab() -> None:
    """ru-to-abroad-lte impairs four directions at bring-up; a daemon another
    process started (as `callwall link set` does) goes at teardown too."""
    with Lab.create(paths.topology_path("ru-to-abroad-lte")) as lab:
        lab.up()
        owned = [p for p in lab.registry.state.processes if p.what.startswith("link impaird")]
        assert sorted(p.host for p in owned) == ["caller", "censor", "cgnat", "inet"]
        trace = _caller_to_cgnat(lab, count=500)
        assert 15.0 < _median(trace) < 40.0  # ru-mobile-lte: 25 ms, jitter 6 ms
        other = Lab.attach(Registry.load(lab.registry.dir))
        set_impairment(other.network, "inet", "relay", Impairment(delay_ms=5))
        started_elsewhere = other.registry.running("link impaird inet:eth1")
        assert len(started_elsewhere) == 1
    for process in [*owned, *started_elsewhere]:
        assert not process.alive(), process
    assert _daemons_of(lab) == []
