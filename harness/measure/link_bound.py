"""The MOS bound a `connects` call must meet on an impaired access link.

A policy's `min_mos` is written for the lab's ideal links. On a link profile
(a preset on both directions of the subscriber's access link, see
harness.link.profile) even a call nobody censors cannot reach it when the
link's own delay and loss cost more than the bound leaves room for. The bound
on such a link is derived from the link, never loosened by hand:

1. The link's ceiling: the E-model (harness.measure.emodel, the same
   `estimate_call_quality` that scores every call) evaluated on the preset's
   own figures: its mean loss (`loss_pct`, or the Gilbert-Elliott chain's
   stationary loss), a round trip of twice its one-way delay (each media
   direction crosses the access link once, the reverse path once more), its
   delay spread as the jitter, and the sender's frame. The lab's own path is
   taken as adding nothing, so this is an upper bound of what a call on the
   link scores.
2. The sampling margin: one call sees only the packets of its media window
   (window_s / frame_ms per direction), and its loss is a sample of the
   link's loss process, not its mean. The exact distribution of the number
   of packets lost in a window is computed from the preset's loss model
   (binomial for random loss, the two-state chain for burst loss), and its
   upper SAMPLING_TAIL quantile is scored like the ceiling. The margin is the
   ceiling minus that score: with two directions, a clean call falls under
   the bound through its loss sample alone in at most about 2 x
   SAMPLING_TAIL of calls.
3. The bound: min(min_mos, ceiling - margin), rounded down to the record's
   two decimals. It says which of the two applied and why (`MosBound.why`).

What the model leaves out, on purpose: the rate limit (a voice call's tens
of kbit/s are far below every preset's), duplicates and reordering (neither
lowers the E-model's R), and the emulator's own lateness (the judge checks
that separately, `link_fidelity`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from harness.measure.emodel import estimate_call_quality
from harness.spec.impairment import Impairment
from harness.spec.presets import IDEAL_LINK

# Per direction: the share of clean calls whose window loses more packets
# than the bound allows for. Two directions: about 1 % of clean calls.
SAMPLING_TAIL = 0.005
# A direction whose sender said nothing of its frame is scored with aiortc's.
DEFAULT_FRAME_MS = 20.0

BoundSource = Literal["declared", "link"]


@dataclass(frozen=True)
class LinkCeiling:
    """What the E-model allows one media direction on one link profile."""

    frame_ms: float
    window_packets: int
    mean_loss_pct: float
    tail_loss_pct: float  # the window's upper SAMPLING_TAIL quantile of loss
    rtt_ms: float
    jitter_ms: float
    ceiling_mos: float  # at the mean loss
    sampled_mos: float  # at the tail loss: ceiling - margin

    @property
    def margin_mos(self) -> float:
        return max(0.0, self.ceiling_mos - self.sampled_mos)


@dataclass(frozen=True)
class MosBound:
    """The MOS bound that applied to a call, and why."""

    min_mos: float | None  # the bound the judge applied
    declared_min_mos: float | None  # the policy's, for ideal links
    link_profile: str
    source: BoundSource
    why: str
    ceiling: LinkCeiling | None = None  # the worse direction's, on an impaired link

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mos_bound(declared_min_mos: float | None, link_profile: str,
              impairment: Impairment | None, frame_ms: Sequence[float | None],
              window_s: float) -> MosBound:
    """The bound for a `connects` call on `link_profile` (whose one-way
    `impairment` is on both directions of the access link; None: ideal), given
    each direction's sender frame (None: unknown) and the media window."""
    if impairment is None or link_profile == IDEAL_LINK:
        return MosBound(declared_min_mos, declared_min_mos, link_profile, "declared",
                        "the policy's min_mos: the link profile impairs nothing")
    frames = [f or DEFAULT_FRAME_MS for f in frame_ms] or [DEFAULT_FRAME_MS]
    worst = min((link_ceiling(impairment, f, window_s) for f in frames),
                key=lambda c: c.sampled_mos)
    link_bound = math.floor(worst.sampled_mos * 100 + 1e-9) / 100
    derivation = (f"E-model on {link_profile} ({impairment.describe()}): ceiling "
                  f"{worst.ceiling_mos:.2f} at its mean loss {worst.mean_loss_pct:.2f} % and "
                  f"RTT {worst.rtt_ms:g} ms, less {worst.margin_mos:.2f} for one "
                  f"{window_s:g} s window's loss sample (the {1 - SAMPLING_TAIL:.1%} quantile, "
                  f"{worst.tail_loss_pct:.2f} % of {worst.window_packets} packets of "
                  f"{worst.frame_ms:g} ms)")
    if declared_min_mos is None:
        return MosBound(None, None, link_profile, "declared",
                        f"the policy sets no min_mos; the link allows {link_bound:.2f} ("
                        f"{derivation})", worst)
    if link_bound < declared_min_mos:
        return MosBound(link_bound, declared_min_mos, link_profile, "link",
                        f"min_mos {link_bound:.2f} instead of the policy's {declared_min_mos:g} "
                        f"(written for ideal links): {derivation}", worst)
    return MosBound(declared_min_mos, declared_min_mos, link_profile, "declared",
                    f"the policy's min_mos {declared_min_mos:g}: the link allows "
                    f"{link_bound:.2f} ({derivation})", worst)


def link_ceiling(impairment: Impairment, frame_ms: float, window_s: float) -> LinkCeiling:
    """The E-model's ceiling for one media direction across the access link,
    and its score at the window's tail loss."""
    packets = max(1, round(window_s * 1000 / frame_ms))
    mean_pct = 100 * mean_loss(impairment)
    tail_packets = loss_quantile(impairment, packets, 1 - SAMPLING_TAIL)
    tail_pct = max(mean_pct, 100 * tail_packets / packets)
    rtt_ms = 2 * impairment.delay_ms
    jitter_ms = impairment.delay_std_ms

    def score(loss_pct: float) -> float:
        return estimate_call_quality(loss_pct=min(100.0, loss_pct), jitter_ms=jitter_ms,
                                     rtt_ms=rtt_ms, frame_ms=frame_ms).mos

    return LinkCeiling(frame_ms=frame_ms, window_packets=packets,
                       mean_loss_pct=round(mean_pct, 4), tail_loss_pct=round(tail_pct, 4),
                       rtt_ms=rtt_ms, jitter_ms=jitter_ms,
                       ceiling_mos=round(score(mean_pct), 4), sampled_mos=round(score(tail_pct), 4))


def mean_loss(impairment: Impairment) -> float:
    """The long-run share of packets the impairment loses (0..1)."""
    if impairment.gemodel is not None:
        return impairment.gemodel.loss_rate
    return impairment.loss_pct / 100


def loss_count_distribution(impairment: Impairment, packets: int) -> np.ndarray:
    """P(k of `packets` consecutive packets lost), k = 0..packets, exactly, for
    the impairment's loss model started in its stationary state: each packet
    is lost with its state's probability, then the state moves (netem's and
    the daemon's Gilbert-Elliott convention; one state for random loss)."""
    if packets < 1:
        raise ValueError("packets must be at least 1")
    g = impairment.gemodel
    if g is None:
        loss = np.array([impairment.loss_pct / 100])
        move = np.array([[1.0]])
        start = np.array([1.0])
    else:
        p, r = g.p_pct / 100, g.r_pct / 100
        loss = np.array([g.good_loss_pct / 100, g.bad_loss_pct / 100])
        move = np.array([[1 - p, p], [r, 1 - r]])
        start = np.array([1 - g.stationary_bad, g.stationary_bad])
    # dist[s, k]: P(in state s before the next packet, k lost so far)
    dist = np.zeros((len(start), packets + 1))
    dist[:, 0] = start
    for _ in range(packets):
        lost = dist * loss[:, None]
        kept = dist * (1 - loss[:, None])
        after = kept.copy()
        after[:, 1:] += lost[:, :-1]
        dist = move.T @ after
    result: np.ndarray = dist.sum(axis=0)
    return result


def loss_quantile(impairment: Impairment, packets: int, level: float) -> int:
    """The smallest k with P(at most k of `packets` lost) >= `level`."""
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    cumulative = np.cumsum(loss_count_distribution(impairment, packets))
    index = int(np.searchsorted(cumulative, level - 1e-12))
    return min(packets, index)
