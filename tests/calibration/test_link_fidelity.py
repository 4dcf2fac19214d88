"""Link emulation fidelity (issue 4), measured on real packets between two lab
hosts (caller -> cgnat), never by reading the configuration back.

Targets: delay median error <= 0.5 ms and p99 <= 2 ms at 1,000 pps; jitter std
within 10%; Bernoulli loss inside the 99% binomial interval over >= 20,000
packets; Gilbert-Elliott mean burst and gap lengths within 10% of the model's;
rate within 3%; the same seed gives the same loss sequence.

The short form (make test) sends fewer packets; where a bound depends on the
sample size it is the 99% interval for the size used, so it can still fail.
"""

from __future__ import annotations

import math
import statistics

import pytest

from harness.link.apply import backend_for, find_link, set_impairment, target_for
from harness.link.impaird_binary import ImpairdMissing, impaird_path
from harness.link.userspace import UserspaceBackend
from harness.measure.traffic.lab import one_way_delays
from harness.measure.traffic.owd import OwdTrace, percentile
from harness.spec.impairment import GilbertElliott, Impairment
from harness.testbed import Lab
from harness.testing.emulator_window import clean_windows
from tests.calibration.conftest import Level

pytestmark = pytest.mark.root  # `lab` is callwall's plugin fixture
RECEIVER = "100.64.1.1"
Z99 = 2.5758


@pytest.fixture(scope="module", autouse=True)
def impaird() -> None:
    """Before the module's lab is built: the userspace backend's daemon."""
    try:
        impaird_path()
    except ImpairdMissing as exc:
        pytest.skip(f"needs callwall-impaird: {exc}")


def _impair(lab: Lab, impairment: Impairment | None) -> None:
    """A fresh daemon each time (clear, then apply), so each test starts its
    random streams from its seed."""
    set_impairment(lab.network, "caller", "cgnat", None)
    if impairment is not None:
        set_impairment(lab.network, "caller", "cgnat", impairment)


def _probe(lab: Lab, count: int, pps: float, size: int = 200) -> OwdTrace:
    trace = one_way_delays(lab.host("caller"), lab.host("cgnat"), RECEIVER, count=count,
                           pps=pps, size=size)
    assert trace.receiver_dropped == 0, (
        f"the receiving socket dropped {trace.receiver_dropped} packets: the measurement "
        "is void (the machine is too loaded to measure)")
    return trace


def _daemon_counters(lab: Lab) -> dict[str, int]:
    """The daemon's own counters, to tell its drops from drops elsewhere (e.g. a
    full NFQUEUE when the daemon gets too little CPU) in a failure message."""
    index, direction = find_link(lab.topology, "caller", "cgnat")
    backend = backend_for(lab.network)
    if not isinstance(backend, UserspaceBackend):
        return {}
    return backend.stats(target_for(lab.network, index, direction))


def _figure(name: str, **values: float) -> None:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
    print(f"[link fidelity] {name}: {shown}")


def test_delay(lab: Lab, level: Level) -> None:
    """Every probe window the host left to the emulator (harness.testing.
    emulator_window: steal under STOLEN_WINDOW, by the daemon's own count)
    must meet the bounds; a window the hypervisor took is probed again."""
    configured = 20.0
    _impair(lab, Impairment(delay_ms=configured))
    count = 10_000 if level == "full" else 2000
    for window in clean_windows(lab, "caller", "cgnat",
                                lambda: _probe(lab, count=count, pps=1000).delays_ms()):
        errors = [d - configured for d in window.result]
        median_error, p99_error = statistics.median(errors), percentile(errors, 0.99)
        _figure("delay 20 ms at 1000 pps", median_error_ms=median_error,
                p99_error_ms=p99_error, packets=len(errors))
        if window.lateness is not None:
            own = window.lateness
            _figure("delay 20 ms: emulator's own lateness", p50_us=own.p50_us,
                    p99_us=own.p99_us, max_us=own.max_us,
                    steal_pct=100 * (own.steal_share or 0.0))
        assert abs(median_error) <= 0.5, f"median error {median_error:.2f} ms; {window.said()}"
        assert abs(p99_error) <= 2.0, f"p99 error {p99_error:.2f} ms; {window.said()}"


def test_jitter(lab: Lab, level: Level) -> None:
    impairment = Impairment(delay_ms=30, jitter_ms=5, distribution="normal", keep_order=False,
                            seed=21)
    _impair(lab, impairment)
    delays = _probe(lab, count=10_000 if level == "full" else 2000, pps=1000).delays_ms()
    std = statistics.pstdev(delays)
    _figure("jitter 5 ms normal", std_ms=std, mean_ms=statistics.fmean(delays))
    assert std == pytest.approx(impairment.delay_std_ms, rel=0.10)


def test_bernoulli_loss(lab: Lab, level: Level) -> None:
    sent, p = (20_000, 0.02) if level == "full" else (5000, 0.05)
    _impair(lab, Impairment(loss_pct=p * 100, seed=31))
    lost = len(_probe(lab, count=sent, pps=2000).lost())
    half_width = Z99 * math.sqrt(sent * p * (1 - p))
    _figure("Bernoulli loss", sent=sent, expected=sent * p, lost=lost, interval=half_width)
    assert abs(lost - sent * p) <= half_width, _daemon_counters(lab)


def test_gilbert_elliott_bursts_and_gaps(lab: Lab, level: Level) -> None:
    model = GilbertElliott(p_pct=2, r_pct=25)
    sent = 60_000 if level == "full" else 10_000
    _impair(lab, Impairment(gemodel=model, seed=41))
    bursts, gaps = _probe(lab, count=sent, pps=3000).runs()
    for name, runs, expected, leave in (("burst", bursts, model.mean_burst_packets, 0.25),
                                        ("gap", gaps, model.mean_gap_packets, 0.02)):
        mean = statistics.fmean(runs)
        bound = 0.10 * expected
        if level == "short":  # fewer runs: the 99% interval of a geometric mean, if wider
            bound = max(bound, Z99 * math.sqrt(1 - leave) / leave / math.sqrt(len(runs)))
        _figure(f"Gilbert-Elliott mean {name}", measured=mean, model=expected, runs=len(runs),
                bound=bound)
        assert abs(mean - expected) <= bound, name


def test_rate(lab: Lab, level: Level) -> None:
    rate_kbit = 4000
    _impair(lab, Impairment(rate_kbit=rate_kbit, limit_packets=100))
    seconds = 10 if level == "full" else 3
    trace = _probe(lab, count=700 * seconds, pps=700, size=1000)  # offers 5.8 Mbit/s
    measured = trace.receive_rate_bps() / 1000
    _figure("rate 4 Mbit/s", measured_kbit=measured, error_pct=100 * (measured / rate_kbit - 1))
    assert measured == pytest.approx(rate_kbit, rel=0.03)


def test_same_seed_same_losses(lab: Lab, level: Level) -> None:
    sent = 10_000 if level == "full" else 3000

    def lost(seed: int) -> list[int]:
        _impair(lab, Impairment(loss_pct=10, seed=seed))
        return _probe(lab, count=sent, pps=2000).lost()

    first, again, other = lost(51), lost(51), lost(52)
    _figure("same seed", lost_first=len(first), lost_again=len(again), lost_other=len(other))
    assert first == again, _daemon_counters(lab)
    assert first != other
