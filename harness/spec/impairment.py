"""The link-impairment model: what one direction of a link does to packets.

One typed value serves both backends (netem and the userspace daemon) and the
specs: topology files, the presets file and `callwall link set` all build an
`Impairment`, and its `__post_init__` is the single place parameters are
checked (the spec loader turns its ValueErrors into `file:line: field: msg`).

Units are the ones people write: milliseconds, percent, kbit/s.

Jitter follows netem's convention, which the daemon shares: for `normal` (and
netem's pareto tables) it is the standard deviation of the delay; for
`uniform` it is the half-width, so the standard deviation is jitter/sqrt(3).

Gilbert-Elliott follows netem's `gemodel` and the daemon's convention: each
packet is lost with its state's loss probability, then the state moves
good->bad with probability p, bad->good with probability r.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

Distribution = Literal["uniform", "normal", "pareto", "paretonormal"]
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "normal", "pareto", "paretonormal")
MAX_DELAY_MS = 10_000.0
MAX_RATE_KBIT = 100_000_000.0  # 100 Gbit/s
MAX_LIMIT_PACKETS = 1_000_000
MAX_SEED = 2**63 - 1


def _check_pct(name: str, value: float) -> None:
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name}: {value} is not a percentage between 0 and 100")


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state burst loss (netem's `loss gemodel p r 1-h 1-k`)."""

    p_pct: float                 # good -> bad, per packet
    r_pct: float = 100.0         # bad -> good, per packet
    bad_loss_pct: float = 100.0  # loss probability in the bad state (netem 1-h)
    good_loss_pct: float = 0.0   # loss probability in the good state (netem 1-k)

    def __post_init__(self) -> None:
        for name in ("p_pct", "r_pct", "bad_loss_pct", "good_loss_pct"):
            _check_pct(name, getattr(self, name))
        if self.p_pct == 0.0:
            raise ValueError("p_pct: must be above 0 (with p = 0 the bad state is never "
                             "entered: use loss_pct for plain random loss)")
        if self.r_pct == 0.0:
            raise ValueError("r_pct: must be above 0 (with r = 0 the bad state is never left)")
        if self.bad_loss_pct < self.good_loss_pct:
            raise ValueError(f"bad_loss_pct: {self.bad_loss_pct} is below good_loss_pct "
                             f"{self.good_loss_pct}; the bad state is the lossy one")

    @property
    def stationary_bad(self) -> float:
        """Long-run fraction of packets that see the bad state."""
        p, r = self.p_pct / 100, self.r_pct / 100
        return p / (p + r)

    @property
    def loss_rate(self) -> float:
        """Long-run fraction of packets lost."""
        bad = self.stationary_bad
        return (1 - bad) * self.good_loss_pct / 100 + bad * self.bad_loss_pct / 100

    def _transition(self) -> dict[tuple[str, str], float]:
        p, r = self.p_pct / 100, self.r_pct / 100
        return {("g", "g"): 1 - p, ("g", "b"): p, ("b", "b"): 1 - r, ("b", "g"): r}

    def _pair_rate(self, first_lost: bool, second_lost: bool) -> float:
        """P(packet n has outcome `first_lost` and packet n+1 has `second_lost`),
        in the stationary regime."""
        loss = {"g": self.good_loss_pct / 100, "b": self.bad_loss_pct / 100}
        share = {"g": 1 - self.stationary_bad, "b": self.stationary_bad}
        total = 0.0
        for (state, following), moving in self._transition().items():
            first = loss[state] if first_lost else 1 - loss[state]
            second = loss[following] if second_lost else 1 - loss[following]
            total += share[state] * first * moving * second
        return total

    @property
    def mean_burst_packets(self) -> float:
        """Expected length of a run of consecutive losses: P(loss) / P(received, then
        lost), exact for the hidden two-state chain (1/r when the bad state loses all
        and the good state none)."""
        starts = self._pair_rate(False, True)
        return math.inf if starts == 0 else self.loss_rate / starts

    @property
    def mean_gap_packets(self) -> float:
        """Expected length of a run of consecutive deliveries (1/p in the simple case)."""
        starts = self._pair_rate(True, False)
        return math.inf if starts == 0 else (1 - self.loss_rate) / starts


@dataclass(frozen=True)
class Impairment:
    """What one direction of a link does to the packets it carries."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: Distribution = "normal"
    keep_order: bool = True      # a packet never overtakes an earlier one
    loss_pct: float = 0.0        # Bernoulli loss
    gemodel: GilbertElliott | None = None  # burst loss instead
    rate_kbit: float = 0.0       # 0: unlimited
    duplicate_pct: float = 0.0
    reorder_pct: float = 0.0     # share of packets sent at once, skipping the delay
    limit_packets: int = 1000    # queue limit, as netem's default
    seed: int = 1

    def __post_init__(self) -> None:
        self._check_timing()
        for name in ("loss_pct", "duplicate_pct", "reorder_pct"):
            _check_pct(name, getattr(self, name))
        if self.gemodel is not None and self.loss_pct > 0:
            raise ValueError("loss_pct: give either loss_pct (random loss) or gemodel "
                             "(burst loss), not both")
        if not 0.0 <= self.rate_kbit <= MAX_RATE_KBIT:
            raise ValueError(f"rate_kbit: {self.rate_kbit} is outside 0..{MAX_RATE_KBIT:.0f} "
                             "(0 means unlimited)")
        if 0.0 < self.rate_kbit < 8.0:
            raise ValueError(f"rate_kbit: {self.rate_kbit} is below 8 kbit/s, too slow for "
                             "any packet to pass in reasonable time")
        if not 1 <= self.limit_packets <= MAX_LIMIT_PACKETS:
            raise ValueError(f"limit_packets: {self.limit_packets} is outside "
                             f"1..{MAX_LIMIT_PACKETS}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: {self.seed} is outside 0..2^63-1")

    def _check_timing(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution: {self.distribution!r} is not one of "
                             f"{', '.join(DISTRIBUTIONS)}")
        for name in ("delay_ms", "jitter_ms"):
            value = getattr(self, name)
            if not 0.0 <= value <= MAX_DELAY_MS:
                raise ValueError(f"{name}: {value} is outside 0..{MAX_DELAY_MS:.0f} ms")
        if self.jitter_ms > self.delay_ms:
            raise ValueError(f"jitter_ms: {self.jitter_ms} ms is larger than delay_ms "
                             f"{self.delay_ms} ms; delays would be cut at zero and the "
                             "distribution would no longer be the one asked for")
        if self.reorder_pct > 0 and self.delay_ms == 0:
            raise ValueError("reorder_pct: reordering sends some packets ahead of delayed "
                             "ones, so it needs delay_ms above 0")

    @property
    def is_noop(self) -> bool:
        return self == Impairment(seed=self.seed, limit_packets=self.limit_packets,
                                  distribution=self.distribution, keep_order=self.keep_order)

    @property
    def delay_std_ms(self) -> float:
        """The standard deviation of the delay the distribution gives (before any
        keep-order holding), for calibration."""
        if self.distribution == "uniform":
            return self.jitter_ms / math.sqrt(3)
        return self.jitter_ms

    def with_overrides(self, **changes: Any) -> Impairment:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        parts = []
        if self.delay_ms:
            parts.append(f"delay {self.delay_ms:g} ms")
        if self.jitter_ms:
            parts.append(f"jitter {self.jitter_ms:g} ms {self.distribution}"
                         + ("" if self.keep_order else " (reordering)"))
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g}%")
        if self.gemodel is not None:
            g = self.gemodel
            parts.append(f"GE loss p={g.p_pct:g}% r={g.r_pct:g}% (bursts "
                         f"{g.mean_burst_packets:.3g}, gaps {g.mean_gap_packets:.3g} packets)")
        if self.rate_kbit:
            parts.append(f"rate {self.rate_kbit:g} kbit/s")
        if self.duplicate_pct:
            parts.append(f"duplicate {self.duplicate_pct:g}%")
        if self.reorder_pct:
            parts.append(f"reorder {self.reorder_pct:g}%")
        return ", ".join(parts) or "no impairment"


IMPAIRMENT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Impairment))


@dataclass(frozen=True)
class ImpairmentSpec:
    """One direction as a spec writes it: a named preset, inline parameters, or a
    preset with some parameters overridden. Unset fields (None) come from the
    preset, or from `Impairment`'s defaults when there is no preset."""

    preset: str | None = None
    delay_ms: float | None = None
    jitter_ms: float | None = None
    distribution: Distribution | None = None
    keep_order: bool | None = None
    loss_pct: float | None = None
    gemodel: GilbertElliott | None = None
    rate_kbit: float | None = None
    duplicate_pct: float | None = None
    reorder_pct: float | None = None
    limit_packets: int | None = None
    seed: int | None = None

    def overrides(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in IMPAIRMENT_FIELDS
                if getattr(self, name) is not None}

    def resolve(self, presets: dict[str, Impairment]) -> Impairment:
        """The full impairment; ValueError names the field that is wrong."""
        base = Impairment()
        if self.preset is not None:
            if self.preset not in presets:
                raise ValueError(f"preset: unknown preset {self.preset!r}; presets are: "
                                 f"{', '.join(sorted(presets))}")
            base = presets[self.preset]
        changes = self.overrides()
        if "gemodel" in changes:
            changes.setdefault("loss_pct", 0.0)  # a preset's random loss gives way
        elif changes.get("loss_pct"):
            changes["gemodel"] = None
        return base.with_overrides(**changes)


# ---------------------------------------------------------------- command-line values

_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_RATE_UNITS = {"bit": 0.001, "kbit": 1.0, "mbit": 1000.0, "gbit": 1_000_000.0}


def _number_with_unit(text: str, units: dict[str, float], what: str, example: str) -> float:
    raw = text.strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if raw.endswith(unit):
            number = raw[: -len(unit)]
            try:
                value = float(number)
            except ValueError:
                break
            if math.isfinite(value):
                return value * units[unit]
            break
    raise ValueError(f"{text!r} is not a {what} (e.g. {example}; units: "
                     f"{', '.join(units)})")


def parse_duration_ms(text: str) -> float:
    """'50ms', '500us', '0.1s' -> milliseconds."""
    return _number_with_unit(text, _TIME_UNITS, "duration", "50ms")


def parse_rate_kbit(text: str) -> float:
    """'10mbit', '512kbit' -> kbit/s."""
    return _number_with_unit(text, _RATE_UNITS, "rate", "10mbit")


def parse_percent(text: str) -> float:
    """'1%', '0.5%' or '1' -> percent."""
    return _number_with_unit(text if text.strip().endswith("%") else text + "%", {"%": 1.0},
                             "percentage", "1%")


def parse_gemodel(text: str) -> GilbertElliott:
    """'P,R[,BAD[,GOOD]]' in percent, as netem's `loss gemodel`."""
    parts = [p for p in text.split(",") if p.strip()]
    if not 1 <= len(parts) <= 4:
        raise ValueError(f"{text!r}: expected P,R[,BAD_LOSS[,GOOD_LOSS]] in percent, "
                         "e.g. 1%,25%")
    values = [parse_percent(p) for p in parts]
    names = ("p_pct", "r_pct", "bad_loss_pct", "good_loss_pct")
    return GilbertElliott(**dict(zip(names, values, strict=False)))
