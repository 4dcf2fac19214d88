"""The userspace link daemon's own lateness, as the harness reads it: its
stats document parsed into LinkLateness, windows between two snapshots,
tolerances judged from the histogram, and the bucket layout shared with
harness/link/impaird/lateness.c. No root, no packets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.link.backend import LinkLateness, LinkTarget, bucket_high_us
from harness.link.netem import NetemBackend
from harness.link.userspace import LATE_TOLERANCE_US, parse_lateness

# What callwall-impaird writes on SIGUSR1 (one line; abridged buckets).
DOCUMENT = json.loads(
    '{"received": 2003, "passed": 2003, "dropped_loss": 0, "dropped_limit": 0,'
    ' "duplicated": 0, "reordered": 0, "held": 20, "enobufs": 0, "netlink_errors": 0,'
    ' "duplicates_failed": 0,'
    ' "lateness": {"tolerance_us": 500, "count": 1983, "early": 1500, "over_tolerance": 12,'
    ' "p50_us": 0, "p99_us": 433, "p999_us": 2111, "max_us": 4135,'
    ' "buckets": [[0, 1700], [1, 150], [40, 80], [400, 41], [1024, 8], [4096, 4]]},'
    ' "scheduling": {"policy": "fifo", "priority": 10, "realtime_refused": "",'
    ' "memory_locked": true, "memory_lock_error": "", "timer_slack_ns": 0, "wakers": 2,'
    ' "flood": false, "per_waker": [{"cpu": 0, "realtime": true, "released": 940,'
    ' "reads": 895, "early_us": 49, "wakeup": {"tolerance_us": 500, "count": 1500,'
    ' "early": 1400, "over_tolerance": 3, "p50_us": 0, "p99_us": 120, "p999_us": 900,'
    ' "max_us": 4366}}]},'
    ' "machine": {"cpus": 2, "elapsed_ms": 4000, "steal_ms": 240}}')


def lateness(**changes: Any) -> LinkLateness:
    return parse_lateness({**DOCUMENT, **changes})


def test_the_document_parses_into_figures_and_scheduling() -> None:
    got = lateness()
    assert (got.packets, got.p50_us, got.p99_us, got.p999_us, got.max_us) == (
        1983, 0, 433, 2111, 4135)
    assert (got.tolerance_us, got.over_tolerance) == (500, 12)
    assert got.buckets[0] == (0, 1700) and got.buckets[-1] == (4096, 4)
    assert got.realtime and got.realtime_refused == "" and got.wakers == 2
    assert got.memory_locked
    assert got.steal_share == pytest.approx(240 / (4000 * 2))


def test_a_refused_real_time_class_and_an_unknown_steal_are_said() -> None:
    got = lateness(scheduling={"policy": "other", "realtime_refused": "Operation not permitted",
                               "wakers": 1, "memory_locked": False},
                   machine={"cpus": 2, "elapsed_ms": 10, "steal_ms": -1})
    assert not got.realtime and got.realtime_refused == "Operation not permitted"
    assert got.wakers == 1 and not got.memory_locked
    assert got.steal_ms is None and got.steal_share is None


def test_a_daemon_that_does_not_measure_itself_is_an_error() -> None:
    old = {key: value for key, value in DOCUMENT.items() if key != "lateness"}
    with pytest.raises(ValueError, match="rebuild callwall-impaird"):
        parse_lateness(old)


def test_buckets_are_exact_below_64_us_then_32_per_doubling() -> None:
    assert [bucket_high_us(low) for low in (0, 1, 63)] == [0, 1, 63]
    assert bucket_high_us(64) == 65 and bucket_high_us(126) == 127
    assert bucket_high_us(128) == 131 and bucket_high_us(1024) == 1055
    assert bucket_high_us(4096) == 4223
    # Every bucket is at most 1/32 of its lower bound wide.
    for low in (64, 100, 128, 1000, 4096, 1 << 20):
        assert (bucket_high_us(low) + 1 - low) <= max(1, low // 32)


def test_quantiles_from_the_buckets_are_upper_bounds_capped_at_the_max() -> None:
    got = lateness()
    total = sum(count for _, count in got.buckets)
    assert got.quantile_us(0.5) == 0  # 1700 of 1983 at 0 us
    assert got.quantile_us(0.99) == bucket_high_us(400)  # ranks 1931..1971
    assert got.quantile_us(1.0) == got.max_us  # the top bucket, capped at the max
    assert total == 1983
    with pytest.raises(ValueError):
        got.quantile_us(0)


def test_tolerances_other_than_the_daemons_come_from_the_histogram() -> None:
    got = lateness()
    assert got.late_beyond(500) == 8 + 4  # buckets starting above 500 us
    assert got.late_beyond(2000) == 4
    assert got.missed() is False  # 12 of 1983 over 500 us: under 1%
    assert got.missed(tolerance_us=30) is True  # 133 over 30 us: over 1%
    assert got.missed(allowed=0.005) is True  # 12 > 0.5% of 1983
    empty = LinkLateness(0, 0, 0, 0, 0, LATE_TOLERANCE_US, 0)
    assert empty.missed() is False and empty.quantile_us(0.99) == 0


def test_a_window_between_two_snapshots_counts_only_its_packets() -> None:
    earlier = lateness(
        lateness={"tolerance_us": 500, "count": 1000, "early": 900, "over_tolerance": 2,
                  "p50_us": 0, "p99_us": 40, "p999_us": 400, "max_us": 450,
                  "buckets": [[0, 900], [1, 60], [40, 38], [400, 2]]},
        machine={"cpus": 2, "elapsed_ms": 1500, "steal_ms": 40})
    window = lateness().since(earlier)
    assert window.packets == 983 and window.over_tolerance == 10
    assert window.buckets == ((0, 800), (1, 90), (40, 42), (400, 39), (1024, 8), (4096, 4))
    assert window.elapsed_ms == 2500 and window.steal_ms == 200
    assert window.p50_us == 0 and window.p99_us == bucket_high_us(1024)
    assert window.max_us == 4135  # the top bucket's upper bound, capped at the max
    nothing = lateness().since(lateness())
    assert nothing.packets == 0 and nothing.buckets == () and nothing.max_us == 0
    assert nothing.missed() is False


def test_netem_has_no_emulator_lateness_of_its_own() -> None:
    target = LinkTarget(host=None, interface="eth0", link_index=0, direction=0)  # type: ignore[arg-type]
    assert NetemBackend().lateness(target) is None
