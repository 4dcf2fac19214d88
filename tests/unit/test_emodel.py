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


def test_sixty_ms_packets_score_lower_than_twenty_through_ta() -> None:
    # One call, scored at the app profiles' 60 ms packets and at aiortc's 20 ms:
    # RTT 200 ms, jitter 0 (20 ms buffer floor), Opus look-ahead 6.5 ms, no loss.
    #   Ta(20) = 200/2 + 20 + 20 + 6.5 = 146.5 ms;  Ta(60) = 100 + 20 + 60 + 6.5 = 186.5 ms
    # Idd (G.107), X = log2(Ta/100), 25 * ((1+X^6)^(1/6) - 3(1+(X/3)^6)^(1/6) + 2):
    #   146.5: X = 0.55090, X^6 = 0.02795: 25 * (1.00461 - 3 * 1.0000064 + 2) = 0.1147
    #   186.5: X = 0.89918, X^6 = 0.52853: 25 * (1.07328 - 3 * 1.0001208 + 2) = 1.8229
    # T = Ta and Tr = 2 Ta also raise the echo terms: Idte 2.7554 -> 3.3747 and
    # Idle 0.8336 -> 0.9111, so Id = Idte + Idle + Idd = 3.7036 -> 6.1086.
    # R = Ro - Is - Id - Ie,eff + A = 94.7688 - 1.4136 - Id - 0 + 0: 89.6517 -> 87.2467
    # MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6: 4.3304 -> 4.2659
    twenty = estimate_call_quality(loss_pct=0.0, jitter_ms=0.0, rtt_ms=200.0, frame_ms=20.0)
    sixty = estimate_call_quality(loss_pct=0.0, jitter_ms=0.0, rtt_ms=200.0, frame_ms=60.0)
    assert (twenty.one_way_delay_ms, sixty.one_way_delay_ms) == (146.5, 186.5)
    assert absolute_delay_impairment(146.5) == pytest.approx(0.1147, abs=1e-4)
    assert absolute_delay_impairment(186.5) == pytest.approx(1.8229, abs=1e-4)
    assert (twenty.id, sixty.id) == (pytest.approx(3.7036, abs=1e-3),
                                     pytest.approx(6.1086, abs=1e-3))
    assert (twenty.r, sixty.r) == (pytest.approx(89.6517, abs=1e-3),
                                   pytest.approx(87.2467, abs=1e-3))
    assert (twenty.mos, sixty.mos) == (pytest.approx(4.3304, abs=1e-4),
                                       pytest.approx(4.2659, abs=1e-4))
    # The default is aiortc's 20 ms.
    assert estimate_call_quality(loss_pct=0.0, jitter_ms=0.0, rtt_ms=200.0) == twenty


def test_frame_size_does_not_enter_ie_eff() -> None:
    # G.107's Ie,eff = Ie + (95 - Ie) Ppl / (Ppl/BurstR + Bpl) has no frame term and
    # G.113 gives no rule to move a Bpl to another packet size: Opus at 5 % loss is
    # 0 + 95 * 5 / (5/1 + 20) = 19.0 at 20 ms and at 60 ms alike.
    for frame_ms in (20.0, 60.0):
        result = estimate_call_quality(loss_pct=5.0, jitter_ms=0.0, rtt_ms=0.0,
                                       frame_ms=frame_ms)
        assert result.ie_eff == pytest.approx(19.0)


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
