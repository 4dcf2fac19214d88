"""Unit tests for harness.measure.emodel (ITU-T G.107 E-model)."""

from __future__ import annotations

import math

import pytest

from harness.measure.emodel import (
    CODECS,
    EModelParams,
    absolute_delay_impairment,
    basic_signal_to_noise_ratio,
    delay_impairment,
    effective_equipment_impairment,
    estimate_call_quality,
    evaluate,
    jitter_buffer_delay_ms,
    mos_from_r,
    r_factor,
    simultaneous_impairment,
)

LOSSES_PCT = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
DELAYS_MS = (0.0, 100.0, 200.0, 300.0, 400.0, 600.0)


def _strictly_decreasing(values: list[float]) -> bool:
    return all(later < earlier for earlier, later in zip(values, values[1:], strict=False))


# --- full model with G.107 defaults ---------------------------------------


def test_default_r_matches_g107() -> None:
    # G.107 (06/2015) states R = 93.2 when every parameter is at its default value.
    assert r_factor() == pytest.approx(93.2, abs=0.1)
    assert evaluate().r == pytest.approx(93.2, abs=0.1)


def test_default_components_add_up() -> None:
    p = EModelParams()
    parts = basic_signal_to_noise_ratio(p) - simultaneous_impairment(p) - delay_impairment(p)
    assert parts == pytest.approx(r_factor(p), abs=1e-9)
    # Sanity: with defaults the basic S/N ratio dominates and impairments are small.
    assert 94.0 < basic_signal_to_noise_ratio(p) < 96.0
    assert 0.0 < simultaneous_impairment(p) < 3.0


def test_default_result_fields() -> None:
    result = evaluate()
    assert result.one_way_delay_ms == 0.0
    assert result.ie_eff == 0.0
    assert result.id == pytest.approx(delay_impairment(EModelParams()))


# --- MOS mapping (G.107 Annex B) ------------------------------------------


def test_mos_at_default_r() -> None:
    # Hand-computed from Annex B: 1 + 0.035*93.2 + 93.2*33.2*6.8*7e-6 = 4.4093.
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)


@pytest.mark.parametrize(
    ("r", "mos"),
    [(-10.0, 1.0), (0.0, 1.0), (100.0, 4.5), (150.0, 4.5)],
)
def test_mos_bounds(r: float, mos: float) -> None:
    assert mos_from_r(r) == pytest.approx(mos)


def test_mos_stays_in_range() -> None:
    # The Annex B polynomial is used unclamped: it dips to about 0.989 near R = 3.2.
    for r in range(-20, 121):
        assert 0.988 <= mos_from_r(float(r)) <= 4.5
    for r in range(7, 101):
        assert 1.0 <= mos_from_r(float(r)) <= 4.5


def test_mos_strictly_increases_with_r_above_7() -> None:
    mos = [mos_from_r(float(r)) for r in range(7, 101)]
    assert all(later > earlier for earlier, later in zip(mos, mos[1:], strict=False))


def test_mos_rejects_nan() -> None:
    with pytest.raises(ValueError, match="^r must"):
        mos_from_r(math.nan)


# --- monotonicity -------------------------------------------------------


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_mos_strictly_decreases_with_loss(codec: str) -> None:
    mos = [
        estimate_call_quality(loss_pct=loss, jitter_ms=5.0, rtt_ms=60.0, codec=codec).mos
        for loss in LOSSES_PCT
    ]
    assert _strictly_decreasing(mos), mos


def test_mos_strictly_decreases_with_one_way_delay() -> None:
    base = EModelParams()
    mos = [evaluate(base.with_one_way_delay(d)).mos for d in DELAYS_MS]
    assert _strictly_decreasing(mos), mos


def test_mos_strictly_decreases_with_rtt() -> None:
    mos = [estimate_call_quality(loss_pct=1.0, jitter_ms=5.0, rtt_ms=rtt).mos for rtt in DELAYS_MS]
    assert _strictly_decreasing(mos), mos


# --- packet loss: Ie,eff ------------------------------------------------


def test_ie_eff_hand_computed() -> None:
    # G.711 with PLC, 2 % random loss: 0 + 95 * 2 / (2/1 + 25.1) = 190 / 27.1.
    assert effective_equipment_impairment(ie=0.0, ppl=2.0, bpl=25.1) == pytest.approx(
        7.01107, abs=1e-4
    )
    # Ie=11, Bpl=19, 5 % loss, BurstR=2: 11 + 84 * 5 / (2.5 + 19) = 11 + 420 / 21.5.
    assert effective_equipment_impairment(ie=11.0, ppl=5.0, bpl=19.0, burst_r=2.0) == pytest.approx(
        30.53488, abs=1e-4
    )


def test_ie_eff_without_loss_is_ie() -> None:
    assert effective_equipment_impairment(ie=11.0, ppl=0.0, bpl=19.0) == 11.0


def test_burst_loss_scores_worse_than_random_loss() -> None:
    random_loss = EModelParams(ie=0.0, bpl=20.0, ppl=5.0, burst_r=1.0)
    bursty_loss = EModelParams(ie=0.0, bpl=20.0, ppl=5.0, burst_r=2.0)
    assert evaluate(bursty_loss).ie_eff > evaluate(random_loss).ie_eff
    assert evaluate(bursty_loss).r < evaluate(random_loss).r
    random_call = estimate_call_quality(loss_pct=5.0, jitter_ms=5.0, rtt_ms=60.0)
    bursty_call = estimate_call_quality(loss_pct=5.0, jitter_ms=5.0, rtt_ms=60.0, burst_r=2.0)
    assert bursty_call.mos < random_call.mos


# --- delay: Idd ---------------------------------------------------------


@pytest.mark.parametrize("ta_ms", [0.0, 50.0, 99.9, 100.0])
def test_idd_zero_up_to_100_ms(ta_ms: float) -> None:
    assert absolute_delay_impairment(ta_ms) == 0.0


@pytest.mark.parametrize("ta_ms", [100.5, 150.0, 300.0, 1000.0])
def test_idd_positive_above_100_ms(ta_ms: float) -> None:
    assert absolute_delay_impairment(ta_ms) > 0.0


def test_idd_hand_computed_at_200_ms() -> None:
    # Ta = 200 ms -> X = 1: 25 * (2^(1/6) - 3 * (1 + 3^-6)^(1/6) + 2) = 3.0444.
    assert absolute_delay_impairment(200.0) == pytest.approx(3.0444, abs=1e-3)


# --- estimate_call_quality ---------------------------------------------


def test_one_way_delay_composition() -> None:
    # 100/2 network + max(20, 2*15) jitter buffer + 20 frame + 6.5 Opus look-ahead.
    result = estimate_call_quality(loss_pct=0.0, jitter_ms=15.0, rtt_ms=100.0)
    assert result.one_way_delay_ms == pytest.approx(50.0 + 30.0 + 20.0 + 6.5)


def test_unknown_rtt_and_jitter_use_floors() -> None:
    result = estimate_call_quality(loss_pct=0.0, jitter_ms=None, rtt_ms=None, codec="g711")
    assert result.one_way_delay_ms == pytest.approx(20.0 + 20.0)
    assert jitter_buffer_delay_ms(None) == 20.0
    assert jitter_buffer_delay_ms(4.0) == 20.0
    assert jitter_buffer_delay_ms(40.0) == 80.0


def test_estimate_uses_codec_table() -> None:
    result = estimate_call_quality(loss_pct=2.0, jitter_ms=0.0, rtt_ms=0.0, codec="g711")
    assert result.ie_eff == pytest.approx(190.0 / 27.1)


def test_codec_table_sources_are_honest() -> None:
    assert CODECS["g711"].ie == 0.0
    assert CODECS["g711"].bpl == 25.1
    assert "G.113" in CODECS["g711"].source
    assert "ASSUMPTION" in CODECS["opus"].source


# --- input validation --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"loss_pct": -0.1}, "loss_pct"),
        ({"loss_pct": 100.1}, "loss_pct"),
        ({"loss_pct": math.nan}, "loss_pct"),
        ({"jitter_ms": -1.0}, "jitter_ms"),
        ({"rtt_ms": -5.0}, "rtt_ms"),
        ({"rtt_ms": math.inf}, "rtt_ms"),
        ({"frame_ms": 0.0}, "frame_ms"),
        ({"burst_r": 0.0}, "burst_r"),
        ({"codec": "speex"}, "codec"),
    ],
)
def test_estimate_rejects_bad_input(kwargs: dict[str, object], parameter: str) -> None:
    call: dict[str, object] = {"loss_pct": 1.0, "jitter_ms": 5.0, "rtt_ms": 50.0}
    call.update(kwargs)
    with pytest.raises(ValueError, match=parameter):
        estimate_call_quality(**call)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"ppl": 101.0}, "ppl"),
        ({"ta_ms": -1.0}, "ta_ms"),
        ({"bpl": 0.0}, "bpl"),
        ({"burst_r": -1.0}, "burst_r"),
        ({"qdu": 0.0}, "qdu"),
    ],
)
def test_params_reject_bad_input(kwargs: dict[str, float], parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        EModelParams(**kwargs)


def test_negative_delay_rejected() -> None:
    with pytest.raises(ValueError, match="delay_ms"):
        EModelParams().with_one_way_delay(-1.0)
    with pytest.raises(ValueError, match="ta_ms"):
        absolute_delay_impairment(-1.0)
