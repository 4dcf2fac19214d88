"""The userspace impairment daemon's models, checked deterministically through
`callwall-impaird --simulate` (the same scheduling and loss code as its packet
path, fed virtual arrivals): delay and jitter distributions, order keeping,
Bernoulli and Gilbert-Elliott loss, rate, queue limit, duplicate, reorder,
seeds, and the config file's errors."""

from __future__ import annotations

import math
import statistics
import subprocess
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from harness.link.impaird_binary import EXIT_CONFIG_ERROR, ImpairdMissing, impaird_path


@dataclass(frozen=True)
class Line:
    seq: int
    verdict: str  # pass | drop | dup
    departure_us: int  # relative to the packet's arrival


def binary() -> Path:
    try:
        return impaird_path()
    except ImpairdMissing as exc:
        pytest.skip(f"needs callwall-impaird: {exc}")


def simulate(tmp_path: Path, config: str, packets: int, interval_us: int = 1000,
             size: int = 200) -> list[Line]:
    path = tmp_path / "impaird.conf"
    path.write_text("queue=1\n" + config)
    result = subprocess.run(
        [str(binary()), "--config", str(path), "--simulate", str(packets),
         "--interval-us", str(interval_us), "--size", str(size)],
        capture_output=True, text=True, timeout=60, check=True)
    lines = []
    for row in result.stdout.splitlines():
        seq, verdict, departure = row.split()
        lines.append(Line(int(seq), verdict, int(departure)))
    return lines


def delays(lines: list[Line]) -> list[int]:
    return [line.departure_us for line in lines if line.verdict == "pass"]


def losses(lines: list[Line]) -> list[bool]:
    return [line.verdict == "drop" for line in lines if line.verdict != "dup"]


def run_lengths(lost: list[bool]) -> tuple[list[int], list[int]]:
    """Lengths of the loss bursts and of the gaps between them."""
    bursts: list[int] = []
    gaps: list[int] = []
    current, length = lost[0], 0
    for value in lost:
        if value == current:
            length += 1
            continue
        (bursts if current else gaps).append(length)
        current, length = value, 1
    return bursts, gaps


def test_constant_delay_is_exact(tmp_path: Path) -> None:
    lines = simulate(tmp_path, "delay_us=20000\n", 1000)
    assert [line.verdict for line in lines] == ["pass"] * 1000
    assert set(delays(lines)) == {20000}
    assert [line.seq for line in lines] == list(range(1000))


def test_uniform_jitter_stays_in_its_band(tmp_path: Path) -> None:
    got = delays(simulate(tmp_path, "delay_us=20000\njitter_us=5000\nkeep_order=0\n", 20000))
    assert 15000 <= min(got) and max(got) <= 25000
    assert min(got) < 15100 and max(got) > 24900
    assert abs(statistics.mean(got) - 20000) < 50
    assert statistics.pstdev(got) == pytest.approx(5000 / math.sqrt(3), rel=0.02)


def test_normal_jitter_has_its_standard_deviation(tmp_path: Path) -> None:
    config = "delay_us=50000\njitter_us=4000\njitter_dist=normal\nkeep_order=0\n"
    got = delays(simulate(tmp_path, config, 20000))
    assert statistics.pstdev(got) == pytest.approx(4000, rel=0.03)
    assert statistics.median(got) == pytest.approx(50000, abs=100)
    assert 50000 - 4 * 4000 <= min(got) and max(got) <= 50000 + 4 * 4000  # netem's table range


def test_pareto_jitter_is_skewed_to_late_packets(tmp_path: Path) -> None:
    config = "delay_us=50000\njitter_us=4000\njitter_dist=pareto\nkeep_order=0\n"
    got = delays(simulate(tmp_path, config, 20000))
    # netem's table: (u^(-1/3) - 1.5) * 4/3, so never earlier than 2/3 of the scale.
    assert min(got) >= 50000 - 4000 * 2 / 3 - 1
    assert max(got) > 50000 + 2 * 4000
    assert statistics.median(got) < statistics.mean(got)
    assert statistics.mean(got) == pytest.approx(50000, abs=200)


def test_paretonormal_differs_from_both_parents(tmp_path: Path) -> None:
    base = "delay_us=50000\njitter_us=4000\nkeep_order=0\njitter_dist="
    spreads = {dist: statistics.pstdev(delays(simulate(tmp_path, base + dist + "\n", 5000)))
               for dist in ("normal", "pareto", "paretonormal")}
    assert len({round(value) for value in spreads.values()}) == 3


def test_keep_order_never_lets_a_packet_overtake(tmp_path: Path) -> None:
    config = "delay_us=20000\njitter_us=10000\njitter_dist=normal\n"
    ordered = simulate(tmp_path, config + "keep_order=1\n", 5000)
    leaving = [line.seq * 1000 + line.departure_us for line in ordered]
    assert leaving == sorted(leaving)
    free = simulate(tmp_path, config + "keep_order=0\n", 5000)
    leaving = [line.seq * 1000 + line.departure_us for line in free]
    assert leaving != sorted(leaving)


def test_bernoulli_loss_within_the_binomial_interval(tmp_path: Path) -> None:
    packets, p = 20000, 0.05
    lost = sum(losses(simulate(tmp_path, f"loss_model=bernoulli\nloss_p={p}\n", packets)))
    sd = math.sqrt(packets * p * (1 - p))
    assert abs(lost - packets * p) <= 2.576 * sd


def test_gilbert_elliott_bursts_and_gaps_follow_r_and_p(tmp_path: Path) -> None:
    # Convention: the bad state lasts 1/r packets on average, the good one 1/p;
    # with loss_good=0 and loss_bad=1, bursts are the bad state and gaps the good.
    config = "loss_model=gilbert-elliott\nloss_p=0.02\nge_r=0.25\n"
    bursts, gaps = run_lengths(losses(simulate(tmp_path, config, 200000, interval_us=10)))
    assert statistics.mean(bursts) == pytest.approx(1 / 0.25, rel=0.05)
    assert statistics.mean(gaps) == pytest.approx(1 / 0.02, rel=0.05)


def test_gilbert_elliott_partial_losses_match_the_stationary_rate(tmp_path: Path) -> None:
    p, r, loss_good, loss_bad = 0.05, 0.3, 0.01, 0.6
    config = (f"loss_model=gilbert-elliott\nloss_p={p}\nge_r={r}\n"
              f"ge_loss_good={loss_good}\nge_loss_bad={loss_bad}\n")
    lost = losses(simulate(tmp_path, config, 200000, interval_us=10))
    bad_share = p / (p + r)
    expected = bad_share * loss_bad + (1 - bad_share) * loss_good
    assert sum(lost) / len(lost) == pytest.approx(expected, rel=0.05)


def test_same_seed_same_sequence_and_streams_are_independent(tmp_path: Path) -> None:
    config = "loss_model=bernoulli\nloss_p=0.1\njitter_us=3000\nkeep_order=0\n"
    first = simulate(tmp_path, config + "seed=42\n", 5000)
    assert simulate(tmp_path, config + "seed=42\n", 5000) == first
    assert losses(simulate(tmp_path, config + "seed=43\n", 5000)) != losses(first)
    # Turning duplicates on must not shift the loss or the jitter sequences.
    with_dups = simulate(tmp_path, config + "seed=42\nduplicate_p=0.5\n", 5000)
    originals = [line for line in with_dups if line.verdict != "dup"]
    assert originals == first
    assert any(line.verdict == "dup" for line in with_dups)


def test_rate_serialises_and_tail_drops_at_the_limit(tmp_path: Path) -> None:
    # 1200 B at 8 Mbit/s take 1200 us each; offered every 500 us, the queue fills.
    lines = simulate(tmp_path, "delay_us=0\nrate_bps=8000000\nlimit_packets=20\n", 2000,
                     interval_us=500, size=1200)
    passed = [line for line in lines if line.verdict == "pass"]
    leaving = [line.seq * 500 + line.departure_us for line in passed]
    spacing = {later - earlier for earlier, later in pairwise(leaving)}
    assert spacing == {1200}
    # What the link carries in the run, plus the 20 still queued at its end.
    assert len(passed) == pytest.approx(2000 * 500 / 1200 + 20, abs=3)
    assert max(delays(lines)) <= 21 * 1200


def test_rate_adds_serialisation_to_the_delay_when_idle(tmp_path: Path) -> None:
    lines = simulate(tmp_path, "delay_us=10000\nrate_bps=1000000\n", 100, interval_us=100000,
                     size=125)
    assert set(delays(lines)) == {10000 + 1000}


def test_limit_drops_what_does_not_fit(tmp_path: Path) -> None:
    lines = simulate(tmp_path, "delay_us=100000\nlimit_packets=10\n", 300)
    verdicts = [line.verdict for line in lines]
    assert verdicts[:10] == ["pass"] * 10
    assert verdicts[10:100] == ["drop"] * 90  # the first ten leave at 100 ms
    assert verdicts.count("pass") == pytest.approx(30, abs=2)


def test_duplicates_and_reorder(tmp_path: Path) -> None:
    dups = simulate(tmp_path, "delay_us=5000\nduplicate_p=1\n", 100)
    assert [line.verdict for line in dups] == ["pass", "dup"] * 100
    assert {line.departure_us for line in dups} == {5000}
    reordered = simulate(tmp_path, "delay_us=5000\nreorder_p=1\n", 100)
    assert set(delays(reordered)) == {0}
    some = delays(simulate(tmp_path, "delay_us=5000\nreorder_p=0.25\n", 20000))
    assert some.count(0) / len(some) == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize(("text", "expected"), [
    ("queue=1\nfoo=1\n", ":2: foo: unknown key"),
    ("queue=1\ndelay_us=-5\n", ":2: delay_us: expected a whole number >= 0"),
    ("queue=1\nloss_p=1.5\n", ":2: loss_p: a probability must be between 0 and 1"),
    ("queue=1\nloss_model=markov\n", ":2: loss_model: expected none | bernoulli"),
    ("queue=1\n# comment\nlimit_packets=0\n", ":3: limit_packets: must be at least 1"),
    ("queue=1\nqueue=2\n", ":2: queue: set twice"),
    ("queue=70000\n", ":1: queue: 70000 is too large"),
    ("queue 1\n", ":1: queue 1: expected key=value"),
    ("delay_us=10\n", ": queue: required, not set"),
])
def test_config_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(text)
    result = subprocess.run([str(binary()), "--config", str(path), "--simulate", "1"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == EXIT_CONFIG_ERROR
    assert result.stderr.startswith(f"{path}{expected}"), result.stderr
    assert result.stdout == ""
