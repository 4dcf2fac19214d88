"""The userspace link daemon measures its own punctuality on real packets
(root): per link direction, how late its verdicts left against the departures
it scheduled, how it was scheduled, and how much CPU the hypervisor took
meanwhile, read through the backend facade as LinkLateness. No timing bound
is asserted here (tests/calibration/test_link_fidelity.py owns those)."""

from __future__ import annotations

import os

import pytest

from harness.link.apply import backend_for, find_link, set_impairment, target_for
from harness.link.backend import bucket_high_us
from harness.link.userspace import LATE_TOLERANCE_US, UserspaceBackend
from harness.measure.traffic.lab import one_way_delays
from harness.spec.impairment import Impairment
from harness.testbed import Lab

PROBES = 500


def test_each_link_reports_its_emulators_own_lateness(lab: Lab) -> None:
    set_impairment(lab.network, "caller", "cgnat", Impairment(delay_ms=20))
    try:
        backend = backend_for(lab.network)
        if not isinstance(backend, UserspaceBackend):
            pytest.skip("the kernel has netem: the userspace daemon is not in use")
        target = target_for(lab.network, *find_link(lab.topology, "caller", "cgnat"))
        before = backend.lateness(target)
        trace = one_way_delays(lab.host("caller"), lab.host("cgnat"), "100.64.1.1",
                               count=PROBES, pps=1000)
        after = backend.lateness(target)
    finally:
        set_impairment(lab.network, "caller", "cgnat", None)

    window = after.since(before)
    assert window.packets >= len(trace.first_copies()) >= PROBES * 0.99
    assert sum(count for _, count in window.buckets) == window.packets
    assert 0 <= window.p50_us <= window.p99_us <= window.p999_us <= window.max_us
    assert window.max_us <= after.max_us
    assert after.tolerance_us == LATE_TOLERANCE_US
    # The daemon counts over the tolerance exactly; the histogram bounds it.
    straddling = sum(count for low, count in window.buckets
                     if low <= LATE_TOLERANCE_US <= bucket_high_us(low))
    beyond = window.late_beyond(LATE_TOLERANCE_US)
    assert beyond <= window.over_tolerance <= beyond + straddling
    # Root may use SCHED_FIFO, unless its cgroup grants no real-time budget
    # (a container's, typically): then the daemon says why it runs without.
    # Either way the record tells how the emulator was scheduled.
    assert after.realtime != bool(after.realtime_refused), after.realtime_refused
    # Memory locking is always open to root; two CPUs give two wakers.
    assert after.memory_locked
    assert after.wakers == (2 if len(os.sched_getaffinity(0)) >= 2 else 1)
    assert after.steal_ms is None or after.steal_ms >= 0
    assert after.elapsed_ms > 0 and after.cpus >= 1
