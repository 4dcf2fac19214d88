"""The link-impairment model: validation, the Gilbert-Elliott expectations, the
daemon config it renders, and (through `callwall-impaird --simulate`, no root)
that the daemon's scheduling and loss models give what the model promises."""

from __future__ import annotations

import math
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.link.impaird_binary import ImpairdMissing, impaird_path
from harness.link.userspace import render_config
from harness.spec.impairment import (
    GilbertElliott,
    Impairment,
    ImpairmentSpec,
    parse_duration_ms,
    parse_gemodel,
    parse_percent,
    parse_rate_kbit,
)

Z99 = 2.5758  # two-sided 99% normal quantile


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"delay_ms": 10, "jitter_ms": 20}, "jitter_ms", "larger than delay_ms"),
    ({"loss_pct": 101}, "loss_pct", "percentage"),
    ({"duplicate_pct": -1}, "duplicate_pct", "percentage"),
    ({"reorder_pct": 5}, "reorder_pct", "needs delay_ms"),
    ({"loss_pct": 1, "gemodel": GilbertElliott(1, 25)}, "loss_pct", "not both"),
    ({"rate_kbit": 2}, "rate_kbit", "too slow"),
    ({"limit_packets": 0}, "limit_packets", "outside"),
    ({"delay_ms": -1}, "delay_ms", "outside"),
    ({"distribution": "lognormal"}, "distribution", "not one of"),
])
def test_bad_impairments_name_the_field(changes: dict[str, object], field: str,
                                        words: str) -> None:
    with pytest.raises(ValueError) as caught:
        Impairment(**changes)  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"{field}: ")
    assert words in str(caught.value)


@pytest.mark.parametrize(("args", "field"), [
    ((0, 25), "p_pct"), ((1, 0), "r_pct"), ((1, 25, 10, 20), "bad_loss_pct"),
    ((1, 250), "r_pct"),
])
def test_bad_gilbert_elliott(args: tuple[float, ...], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        GilbertElliott(*args)


# ---------------------------------------------------------------- expectations

def test_gilbert_elliott_simple_case_is_geometric() -> None:
    model = GilbertElliott(p_pct=2, r_pct=25)
    assert model.mean_burst_packets == pytest.approx(4.0)
    assert model.mean_gap_packets == pytest.approx(50.0)
    assert model.loss_rate == pytest.approx(0.02 / 0.27)


def _simulate_ge(model: GilbertElliott, packets: int, seed: int) -> list[bool]:
    """The stated convention, directly: lose with the state's probability, then move."""
    rng = random.Random(seed)
    bad, lost = False, []
    for _ in range(packets):
        lost.append(rng.random() < (model.bad_loss_pct if bad else model.good_loss_pct) / 100)
        bad = rng.random() >= model.r_pct / 100 if bad else rng.random() < model.p_pct / 100
    return lost


def _runs(lost: list[bool]) -> tuple[list[int], list[int]]:
    runs: list[list[int]] = []
    for item in lost:
        if runs and runs[-1][0] == item:
            runs[-1][1] += 1
        else:
            runs.append([item, 1])
    inner = runs[1:-1]
    return [n for s, n in inner if s], [n for s, n in inner if not s]


def test_gilbert_elliott_general_case_matches_the_chain() -> None:
    """With loss in both states, bursts and gaps are no longer geometric in r and
    p; the model's exact expectation must match a direct simulation."""
    model = GilbertElliott(p_pct=5, r_pct=30, bad_loss_pct=70, good_loss_pct=2)
    lost = _simulate_ge(model, 400_000, seed=7)
    bursts, gaps = _runs(lost)
    assert sum(lost) / len(lost) == pytest.approx(model.loss_rate, rel=0.03)
    assert sum(bursts) / len(bursts) == pytest.approx(model.mean_burst_packets, rel=0.03)
    assert sum(gaps) / len(gaps) == pytest.approx(model.mean_gap_packets, rel=0.03)
    assert model.mean_burst_packets != pytest.approx(1 / 0.30, rel=0.05)  # not the naive 1/r


def test_delay_std_follows_the_distribution() -> None:
    assert Impairment(delay_ms=20, jitter_ms=6, distribution="uniform").delay_std_ms == \
        pytest.approx(6 / math.sqrt(3))
    assert Impairment(delay_ms=20, jitter_ms=6).delay_std_ms == 6


# ---------------------------------------------------------------- specs and values

def test_preset_with_overrides() -> None:
    base = Impairment(delay_ms=25, jitter_ms=5, gemodel=GilbertElliott(1, 30))
    resolved = ImpairmentSpec(preset="lte", delay_ms=40, loss_pct=2).resolve({"lte": base})
    assert resolved == Impairment(delay_ms=40, jitter_ms=5, loss_pct=2)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="^preset: unknown preset 'ltx'; presets are: lte"):
        ImpairmentSpec(preset="ltx").resolve({"lte": Impairment()})


def test_command_line_values() -> None:
    assert parse_duration_ms("50ms") == 50
    assert parse_duration_ms("500us") == 0.5
    assert parse_duration_ms("0.1s") == 100
    assert parse_rate_kbit("10mbit") == 10_000
    assert parse_rate_kbit("64kbit") == 64
    assert parse_percent("1.5%") == 1.5
    assert parse_percent("2") == 2
    assert parse_gemodel("1%,25%") == GilbertElliott(1, 25)
    for bad, parse in (("50", parse_duration_ms), ("fast", parse_rate_kbit),
                       ("x%", parse_percent), ("1,2,3,4,5", parse_gemodel)):
        with pytest.raises(ValueError):
            parse(bad)


def test_daemon_config_text() -> None:
    impairment = Impairment(delay_ms=20, jitter_ms=2.5, distribution="uniform",
                            keep_order=False, gemodel=GilbertElliott(2, 25, 90, 1),
                            rate_kbit=512, duplicate_pct=1, limit_packets=200, seed=42)
    lines = render_config(impairment, 1003).splitlines()
    assert lines[1:] == [
        "queue=1003", "delay_us=20000", "jitter_us=2500", "jitter_dist=uniform",
        "keep_order=0", "loss_model=gilbert-elliott", "loss_p=0.02", "ge_r=0.25",
        "ge_loss_good=0.01", "ge_loss_bad=0.9", "rate_bps=512000", "limit_packets=200",
        "duplicate_p=0.01", "reorder_p=0", "seed=42"]
    bernoulli = render_config(Impairment(loss_pct=5), 1000)
    assert "loss_model=bernoulli\nloss_p=0.05\n" in bernoulli


# ---------------------------------------------------------------- the daemon's models

def _binary() -> Path:
    try:
        return impaird_path()
    except ImpairdMissing as exc:
        pytest.skip(f"needs callwall-impaird ({exc})")


@dataclass(frozen=True)
class Verdict:
    seq: int
    outcome: str
    departure_us: int


def simulate(tmp_path: Path, impairment: Impairment, packets: int, interval_us: int = 1000,
             size: int = 200) -> list[Verdict]:
    config = tmp_path / "impaird.conf"
    config.write_text(render_config(impairment, 1000))
    result = subprocess.run([str(_binary()), "--config", str(config), "--simulate",
                             str(packets), "--interval-us", str(interval_us), "--size",
                             str(size)], capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split() for line in result.stdout.splitlines()]
    return [Verdict(int(seq), outcome, int(dep)) for seq, outcome, dep in rows]


def _lost(verdicts: list[Verdict]) -> list[bool]:
    return [v.outcome == "drop" for v in verdicts if v.outcome != "dup"]


def test_bernoulli_loss_within_the_binomial_interval(tmp_path: Path) -> None:
    packets, p = 20_000, 0.05
    lost = sum(_lost(simulate(tmp_path, Impairment(loss_pct=p * 100, seed=3), packets)))
    half_width = Z99 * math.sqrt(packets * p * (1 - p))
    assert abs(lost - packets * p) <= half_width, (lost, packets * p, half_width)


def test_gilbert_elliott_bursts_and_gaps(tmp_path: Path) -> None:
    model = GilbertElliott(p_pct=2, r_pct=25)
    bursts, gaps = _runs(_lost(simulate(tmp_path, Impairment(gemodel=model, seed=5), 100_000)))
    for runs, expected, r in ((bursts, model.mean_burst_packets, 0.25),
                              (gaps, model.mean_gap_packets, 0.02)):
        mean = sum(runs) / len(runs)
        standard_error = math.sqrt(1 - r) / r / math.sqrt(len(runs))  # geometric runs
        assert abs(mean - expected) <= max(3 * standard_error, 0.02 * expected), \
            (mean, expected, standard_error)


def test_same_seed_same_losses_other_seed_other_losses(tmp_path: Path) -> None:
    def pattern(seed: int) -> list[bool]:
        return _lost(simulate(tmp_path, Impairment(loss_pct=10, seed=seed), 5000))
    assert pattern(11) == pattern(11)
    assert pattern(11) != pattern(12)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_jitter_distribution(tmp_path: Path, distribution: str) -> None:
    impairment = Impairment(delay_ms=30, jitter_ms=5, distribution=distribution,  # type: ignore[arg-type]
                            keep_order=False, seed=9)
    delays = [v.departure_us / 1000 for v in simulate(tmp_path, impairment, 20_000)]
    mean = sum(delays) / len(delays)
    std = math.sqrt(sum((d - mean) ** 2 for d in delays) / len(delays))
    assert mean == pytest.approx(30, abs=0.2)
    assert std == pytest.approx(impairment.delay_std_ms, rel=0.05)
    if distribution == "uniform":
        assert 25 - 0.01 <= min(delays) and max(delays) <= 35 + 0.01


def test_keep_order_never_overtakes(tmp_path: Path) -> None:
    impairment = Impairment(delay_ms=30, jitter_ms=10, keep_order=True, seed=2)
    verdicts = simulate(tmp_path, impairment, 5000, interval_us=500)
    departures = [v.seq * 500 + v.departure_us for v in verdicts if v.outcome == "pass"]
    assert departures == sorted(departures)
    unordered = Impairment(delay_ms=30, jitter_ms=10, keep_order=False, seed=2)
    free = [v.seq * 500 + v.departure_us for v in simulate(tmp_path, unordered, 5000, 500)]
    assert free != sorted(free)  # without keep_order, this jitter reorders


def test_rate_serialises_packets(tmp_path: Path) -> None:
    """1000-byte packets offered every 0.5 ms to an 8 Mbit/s link leave 1 ms apart."""
    impairment = Impairment(rate_kbit=8000, limit_packets=10_000)
    verdicts = simulate(tmp_path, impairment, 2000, interval_us=500, size=1000)
    departures = [v.seq * 500 + v.departure_us for v in verdicts if v.outcome == "pass"]
    assert len(departures) == 2000
    rate_bps = (len(departures) - 1) * 1000 * 8 / ((departures[-1] - departures[0]) / 1e6)
    assert rate_bps == pytest.approx(8_000_000, rel=0.01)
