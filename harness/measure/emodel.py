"""ITU-T G.107 (06/2015) E-model: transmission rating R and estimated MOS.

The E-model rates a narrowband (300-3400 Hz) telephone connection with

    R = Ro - Is - Id - Ie,eff + A

where Ro is the basic signal-to-noise ratio, Is the simultaneous impairments
(loudness, sidetone, quantisation), Id the delay impairments (talker echo,
listener echo, absolute delay), Ie,eff the equipment impairment including
packet loss, and A the advantage (expectation) factor.  R is mapped to an
estimated conversational MOS with G.107 Annex B.

Public API:

* :class:`EModelParams` - all G.107 inputs, defaulting to G.107's default values.
* :func:`evaluate` - run the full model, returning an :class:`EModelResult`.
* :func:`r_factor`, :func:`mos_from_r` - R alone, and the R -> MOS mapping.
* The component functions (:func:`total_noise_power`,
  :func:`basic_signal_to_noise_ratio`, :func:`simultaneous_impairment`,
  :func:`delay_impairment`, :func:`talker_echo_impairment`,
  :func:`listener_echo_impairment`, :func:`absolute_delay_impairment`,
  :func:`effective_equipment_impairment`).
* :class:`CodecImpairment` and :data:`CODECS` - Ie / Bpl values per codec.
* :func:`estimate_call_quality` - R and MOS from measured loss, jitter and RTT,
  with :func:`jitter_buffer_delay_ms` as its (assumed) jitter-buffer model.

Formula sources: every equation below is from ITU-T Rec. G.107 (06/2015),
"The E-model: a computational model for use in transmission planning", and is
named after the quantity it computes there.  All results are on G.107's
narrowband R scale, even for wideband codecs (see :data:`CODECS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Advisory ceiling and floor of the R -> MOS mapping (G.107 Annex B).
_MOS_MIN = 1.0
_MOS_MAX = 4.5

# Delay at and below which the absolute-delay impairment Idd is zero (G.107, Idd).
_IDD_THRESHOLD_MS = 100.0

# Jitter-buffer model of estimate_call_quality (an assumption, not G.107).
_JITTER_BUFFER_MIN_MS = 20.0
_JITTER_BUFFER_JITTER_MULTIPLE = 2.0


@dataclass(frozen=True)
class EModelParams:
    """Inputs of the G.107 E-model.

    Every default is the G.107 (06/2015) default value from its table of
    default values and permitted ranges; with all of them G.107 states that
    R = 93.2.  Levels are in dB, noise powers in dBm0p / dBmp, delays in ms.

    slr, rlr: send / receive loudness ratings.
    stmr: sidetone masking rating.  lstr: listener sidetone rating.
    ds, dr: D-values of the telephone, send / receive side.  G.107 relates
        LSTR = STMR + Dr; the model uses ``lstr`` directly, so ``dr`` is
        carried for completeness only and does not enter the computation.
    telr: talker echo loudness rating.  wepl: weighted echo path loss.
    t_ms: mean one-way delay of the echo path (T).
    ta_ms: absolute (mouth-to-ear) one-way delay (Ta).
    tr_ms: round-trip delay in a 4-wire loop (Tr).
    nc: circuit noise referred to the 0 dBr point.  nfor: noise floor at the
        receive side.  ps, pr: room noise at the send / receive side (dB(A)).
    qdu: number of quantisation distortion units.
    ie: equipment impairment factor.  bpl: packet-loss robustness factor.
    ppl: random packet-loss probability in percent.  burst_r: burst ratio
        (1 = random loss, >1 = burstier than random).
    a: advantage factor.
    """

    slr: float = 8.0
    rlr: float = 2.0
    stmr: float = 15.0
    lstr: float = 18.0
    ds: float = 3.0
    dr: float = 3.0
    telr: float = 65.0
    wepl: float = 110.0
    t_ms: float = 0.0
    ta_ms: float = 0.0
    tr_ms: float = 0.0
    nc: float = -70.0
    nfor: float = -64.0
    ps: float = 35.0
    pr: float = 35.0
    qdu: float = 1.0
    ie: float = 0.0
    bpl: float = 4.3
    ppl: float = 0.0
    burst_r: float = 1.0
    a: float = 0.0

    def __post_init__(self) -> None:
        for name in ("t_ms", "ta_ms", "tr_ms"):
            _require_non_negative(name, getattr(self, name))
        _require_percent("ppl", self.ppl)
        _require_positive("bpl", self.bpl)
        _require_positive("burst_r", self.burst_r)
        _require_positive("qdu", self.qdu)

    def with_one_way_delay(self, delay_ms: float) -> EModelParams:
        """Copy with T = Ta = ``delay_ms`` and Tr = 2 x ``delay_ms``.

        This is the usual planning assumption that the echo path and the
        mouth-to-ear path share the same one-way delay.
        """
        _require_non_negative("delay_ms", delay_ms)
        return replace(self, t_ms=delay_ms, ta_ms=delay_ms, tr_ms=2.0 * delay_ms)


@dataclass(frozen=True)
class EModelResult:
    """Outcome of one E-model evaluation.

    r: transmission rating factor R.  mos: estimated MOS (G.107 Annex B).
    one_way_delay_ms: the absolute delay Ta used.  id: delay impairment Id.
    ie_eff: effective equipment impairment Ie,eff.
    """

    r: float
    mos: float
    one_way_delay_ms: float
    id: float
    ie_eff: float


@dataclass(frozen=True)
class CodecImpairment:
    """Equipment impairment values of one codec.

    ie: equipment impairment factor Ie.  bpl: packet-loss robustness factor.
    source: where the values come from, or why they were assumed.
    lookahead_ms: algorithmic delay beyond one frame (added to packetisation
        delay by :func:`estimate_call_quality`).

    ``bpl`` holds for one packet size (G.113 Appendix I tabulates Bpl per codec
    *and* packet size, e.g. G.711 with PLC at 10 ms); G.107 and G.113 give no
    rule to carry a Bpl to another packet size, so :func:`estimate_call_quality`
    uses it unchanged whatever ``frame_ms`` it is given.
    """

    name: str
    ie: float
    bpl: float
    source: str
    lookahead_ms: float = 0.0


CODECS: dict[str, CodecImpairment] = {
    "g711": CodecImpairment(
        name="G.711 with packet-loss concealment",
        ie=0.0,
        bpl=25.1,
        source=(
            "ITU-T G.113 (11/2007) Appendix I: G.711 with PLC (G.711 Appendix I), "
            "random loss, Ie=0, Bpl=25.1."
        ),
    ),
    "opus": CodecImpairment(
        name="Opus (voice, 20 ms frames)",
        ie=0.0,
        bpl=20.0,
        lookahead_ms=6.5,
        source=(
            "ASSUMPTION, not a standard value: ITU-T publishes no Ie/Bpl for Opus "
            "on the narrowband G.107 R scale. Ie=0 assumes Opus at usual VoIP "
            "bitrates is at least as good as G.711 (the Ie=0 reference) once "
            "band-limited to narrowband. Bpl=20 is set a little below G.711 with PLC "
            "(25.1, G.113 Appendix I, measured with 10 ms packets) because Opus "
            "normally sends 20 ms per packet, so each loss removes more speech; "
            "in-band FEC is not credited. lookahead_ms=6.5 is libopus's default "
            "look-ahead (26.5 ms algorithmic delay at 20 ms frames, RFC 6716). "
            "The app profiles send 60 ms packets: Bpl=20 is used for them unchanged "
            "(no ITU value or rule exists for it), which is optimistic under loss, "
            "since each lost 60 ms packet removes three times the speech."
        ),
    ),
}


# --- input checks ---------------------------------------------------------


def _require_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _require_non_negative(name: str, value: float) -> None:
    _require_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _require_positive(name: str, value: float) -> None:
    _require_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _require_percent(name: str, value: float) -> None:
    _require_finite(name, value)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be between 0 and 100 (percent), got {value!r}")


# --- small helpers --------------------------------------------------------


def _db_power_sum(*levels_db: float) -> float:
    """Power sum of levels in dB: 10*log10(sum 10^(L/10))."""
    return 10.0 * math.log10(sum(10.0 ** (level / 10.0) for level in levels_db))


def _smooth_step(x: float, exponent: float) -> float:
    """(1 + x^n)^(1/n), the recurring G.107 shape; math.pow keeps it real."""
    return math.pow(1.0 + math.pow(x, exponent), 1.0 / exponent)


def _overall_loudness_rating(p: EModelParams) -> float:
    """OLR = SLR + RLR."""
    return p.slr + p.rlr


# --- Ro: basic signal-to-noise ratio --------------------------------------


def _send_room_noise(p: EModelParams) -> float:
    """Nos = Ps - SLR - Ds - 100 + 0.004(Ps - OLR - Ds - 14)^2."""
    excess = p.ps - _overall_loudness_rating(p) - p.ds - 14.0
    return p.ps - p.slr - p.ds - 100.0 + 0.004 * excess**2


def _effective_receive_room_noise(p: EModelParams) -> float:
    """Pre = Pr + 10*log10(1 + 10^((10 - LSTR)/10))."""
    return p.pr + 10.0 * math.log10(1.0 + 10.0 ** ((10.0 - p.lstr) / 10.0))


def _receive_room_noise(p: EModelParams) -> float:
    """Nor = RLR - 121 + Pre + 0.008(Pre - 35)^2."""
    pre = _effective_receive_room_noise(p)
    return p.rlr - 121.0 + pre + 0.008 * (pre - 35.0) ** 2


def _receive_noise_floor(p: EModelParams) -> float:
    """Nfo = Nfor + RLR."""
    return p.nfor + p.rlr


def total_noise_power(p: EModelParams) -> float:
    """No: power sum of Nc, Nos, Nor and Nfo, in dBm0p."""
    return _db_power_sum(p.nc, _send_room_noise(p), _receive_room_noise(p), _receive_noise_floor(p))


def basic_signal_to_noise_ratio(p: EModelParams) -> float:
    """Ro = 15 - 1.5(SLR + No)."""
    return 15.0 - 1.5 * (p.slr + total_noise_power(p))


# --- Is: simultaneous impairment ------------------------------------------


def _loudness_impairment(p: EModelParams) -> float:
    """Iolr = 20[(1 + (Xolr/8)^8)^(1/8) - Xolr/8], Xolr = OLR + 0.2(64 + No - RLR)."""
    xolr = _overall_loudness_rating(p) + 0.2 * (64.0 + total_noise_power(p) - p.rlr)
    return 20.0 * (_smooth_step(xolr / 8.0, 8.0) - xolr / 8.0)


def _sidetone_masking_rating_optimum(p: EModelParams) -> float:
    """STMRo = -10*log10(10^(-STMR/10) + e^(-T/4) * 10^(-TELR/10))."""
    echo = math.exp(-p.t_ms / 4.0) * 10.0 ** (-p.telr / 10.0)
    return -10.0 * math.log10(10.0 ** (-p.stmr / 10.0) + echo)


def _sidetone_impairment(p: EModelParams) -> float:
    """Ist from STMRo (three smoothed terms plus 29)."""
    stmr_o = _sidetone_masking_rating_optimum(p)
    return (
        12.0 * _smooth_step((stmr_o - 13.0) / 6.0, 8.0)
        - 28.0 * _smooth_step((stmr_o + 1.0) / 19.4, 35.0)
        - 13.0 * _smooth_step((stmr_o - 3.0) / 33.0, 13.0)
        + 29.0
    )


def _quantisation_impairment(p: EModelParams) -> float:
    """Iq = 15*log10(1 + 10^Y + 10^Z) with Q, G, Y, Z from qdu and Ro."""
    q = 37.0 - 15.0 * math.log10(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    y = (basic_signal_to_noise_ratio(p) - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0
    z = 46.0 / 30.0 - g / 40.0
    return 15.0 * math.log10(1.0 + 10.0**y + 10.0**z)


def simultaneous_impairment(p: EModelParams) -> float:
    """Is = Iolr + Ist + Iq."""
    return _loudness_impairment(p) + _sidetone_impairment(p) + _quantisation_impairment(p)


# --- Id: delay impairment -------------------------------------------------


def _weighted_echo_rating(p: EModelParams) -> float:
    """TERV = TELR - 40*log10((1 + T/10)/(1 + T/150)) + 6e^(-0.3T^2).

    G.107: for STMR < 9 dB, TERV is replaced by TERVs = TERV + Ist/2.
    """
    t = p.t_ms
    terv = p.telr - 40.0 * math.log10((1.0 + t / 10.0) / (1.0 + t / 150.0))
    terv += 6.0 * math.exp(-0.3 * t**2)
    if p.stmr < 9.0:
        terv += _sidetone_impairment(p) / 2.0
    return terv


def talker_echo_impairment(p: EModelParams) -> float:
    """Idte, with G.107's special cases for T < 1 ms and STMR > 20 dB."""
    if p.t_ms < 1.0:
        return 0.0  # G.107: for T < 1 ms talker echo counts as sidetone, Idte = 0.
    roe = -1.5 * (total_noise_power(p) - p.rlr)
    re = 80.0 + 2.5 * (_weighted_echo_rating(p) - 14.0)
    diff = roe - re
    idte = (diff / 2.0 + math.sqrt(diff**2 / 4.0 + 100.0) - 1.0) * (1.0 - math.exp(-p.t_ms))
    if p.stmr > 20.0:
        return math.hypot(idte, _sidetone_impairment(p))  # G.107: Idtes
    return idte


def listener_echo_impairment(p: EModelParams) -> float:
    """Idle = (Ro - Rle)/2 + sqrt((Ro - Rle)^2/4 + 169), Rle = 10.5(WEPL + 7)(Tr + 1)^-0.25."""
    rle = 10.5 * (p.wepl + 7.0) * (p.tr_ms + 1.0) ** -0.25
    diff = basic_signal_to_noise_ratio(p) - rle
    return diff / 2.0 + math.sqrt(diff**2 / 4.0 + 169.0)


def absolute_delay_impairment(ta_ms: float) -> float:
    """Idd: 0 for Ta <= 100 ms, else 25{(1+X^6)^(1/6) - 3(1+(X/3)^6)^(1/6) + 2}.

    X = log10(Ta/100) / log10(2).
    """
    _require_non_negative("ta_ms", ta_ms)
    if ta_ms <= _IDD_THRESHOLD_MS:
        return 0.0
    x = math.log10(ta_ms / _IDD_THRESHOLD_MS) / math.log10(2.0)
    return 25.0 * (_smooth_step(x, 6.0) - 3.0 * _smooth_step(x / 3.0, 6.0) + 2.0)


def delay_impairment(p: EModelParams) -> float:
    """Id = Idte + Idle + Idd."""
    return (
        talker_echo_impairment(p) + listener_echo_impairment(p) + absolute_delay_impairment(p.ta_ms)
    )


# --- Ie,eff and R ---------------------------------------------------------


def effective_equipment_impairment(
    *, ie: float, ppl: float, bpl: float, burst_r: float = 1.0
) -> float:
    """Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl/BurstR + Bpl); ``ppl`` in percent."""
    _require_percent("ppl", ppl)
    _require_positive("bpl", bpl)
    _require_positive("burst_r", burst_r)
    return ie + (95.0 - ie) * ppl / (ppl / burst_r + bpl)


def _ie_eff_of(p: EModelParams) -> float:
    return effective_equipment_impairment(ie=p.ie, ppl=p.ppl, bpl=p.bpl, burst_r=p.burst_r)


def r_factor(p: EModelParams | None = None) -> float:
    """R = Ro - Is - Id - Ie,eff + A (G.107 defaults when ``p`` is None)."""
    p = EModelParams() if p is None else p
    return (
        basic_signal_to_noise_ratio(p)
        - simultaneous_impairment(p)
        - delay_impairment(p)
        - _ie_eff_of(p)
        + p.a
    )


def mos_from_r(r: float) -> float:
    """Estimated conversational MOS from R (G.107 Annex B).

    R < 0 -> 1; R > 100 -> 4.5; otherwise 1 + 0.035R + R(R - 60)(100 - R)*7e-6.

    The Annex B polynomial is used as published, so for 0 < R < ~6.5 it dips
    slightly below 1 (minimum about 0.989 near R = 3.2); it is not clamped.
    """
    _require_finite("r", r)
    if r < 0.0:
        return _MOS_MIN
    if r > 100.0:
        return _MOS_MAX
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def evaluate(p: EModelParams | None = None) -> EModelResult:
    """Run the full E-model (G.107 defaults when ``p`` is None)."""
    p = EModelParams() if p is None else p
    r = r_factor(p)
    return EModelResult(
        r=r,
        mos=mos_from_r(r),
        one_way_delay_ms=p.ta_ms,
        id=delay_impairment(p),
        ie_eff=_ie_eff_of(p),
    )


# --- measured calls -------------------------------------------------------


def jitter_buffer_delay_ms(jitter_ms: float | None) -> float:
    """Assumed playout delay of the receiver's jitter buffer: max(20 ms, 2 x jitter).

    An assumption, not part of G.107: it approximates an adaptive buffer that
    holds about two jitter estimates (e.g. RTP interarrival jitter) with a
    20 ms floor.  Unknown jitter (None) is treated as 0, i.e. the 20 ms floor.
    """
    jitter = 0.0 if jitter_ms is None else jitter_ms
    _require_non_negative("jitter_ms", jitter)
    return max(_JITTER_BUFFER_MIN_MS, _JITTER_BUFFER_JITTER_MULTIPLE * jitter)


def _codec(codec: str) -> CodecImpairment:
    try:
        return CODECS[codec]
    except KeyError:
        known = ", ".join(sorted(CODECS))
        raise ValueError(f"codec must be one of {known}, got {codec!r}") from None


def estimate_call_quality(
    *,
    loss_pct: float,
    jitter_ms: float | None,
    rtt_ms: float | None,
    codec: str = "opus",
    frame_ms: float = 20.0,
    burst_r: float = 1.0,
) -> EModelResult:
    """Estimate R and MOS of a measured call on the G.107 narrowband scale.

    Mouth-to-ear one-way delay is modelled as
    ``rtt_ms / 2 + jitter_buffer_delay_ms(jitter_ms) + frame_ms + lookahead``:

    * network delay = half the RTT (assumes a symmetric path).  ``rtt_ms=None``
      means unknown and the network delay is taken as 0, so R is then an
      optimistic (upper) estimate as far as delay is concerned.  ``rtt_ms`` must
      be the end-to-end round trip between the two talkers (through any relay),
      not the round trip to a relay;
    * jitter buffer = max(20 ms, 2 x jitter), an assumption (see
      :func:`jitter_buffer_delay_ms`); ``jitter_ms=None`` gives the 20 ms floor;
    * packetisation = one frame, plus the codec's look-ahead from :data:`CODECS`.

    ``frame_ms`` is the audio duration of each packet the talker's side sends
    (its packet time: one frame per packet in every client here, 60 ms for the
    app-like profiles, 20 ms for aiortc); default 20 ms.  It enters the model
    only through the absolute delay Ta.  G.107 (06/2015), table of default
    values: Ta is the "absolute delay in echo-free connections", the mean
    one-way delay from the talker's mouth to the listener's ear, with no
    breakdown prescribed; the sender must buffer a whole frame before it can
    send it, and RFC 6716 (the source of the Opus look-ahead above) states the
    codec's algorithmic delay as frame + look-ahead (26.5 ms at 20 ms frames).
    It does not enter Ie,eff: G.107's Ie,eff = Ie + (95 - Ie) * Ppl /
    (Ppl/BurstR + Bpl) has no frame term, and the codec's Bpl is used as
    tabulated (see :class:`CodecImpairment`).

    That delay is used as T = Ta and Tr = 2 x delay; all other inputs keep the
    G.107 defaults.  ``loss_pct`` is used as Ppl, so it should include packets
    the jitter buffer discarded as late if they are known.  Ie and Bpl come
    from :data:`CODECS` - the Opus values there are an assumption.

    Raises ValueError, naming the parameter, for loss outside 0..100,
    negative delays, a non-positive frame or burst ratio, or an unknown codec.
    """
    _require_percent("loss_pct", loss_pct)
    _require_positive("frame_ms", frame_ms)
    _require_positive("burst_r", burst_r)
    if rtt_ms is not None:
        _require_non_negative("rtt_ms", rtt_ms)
    impairment = _codec(codec)
    network_ms = 0.0 if rtt_ms is None else rtt_ms / 2.0
    # Ta (G.107: mean mouth-to-ear delay): network + playout buffer + the
    # codec's algorithmic delay, one frame plus look-ahead (RFC 6716).
    codec_ms = frame_ms + impairment.lookahead_ms
    one_way_ms = network_ms + jitter_buffer_delay_ms(jitter_ms) + codec_ms
    params = EModelParams(
        ie=impairment.ie, bpl=impairment.bpl, ppl=loss_pct, burst_r=burst_r
    ).with_one_way_delay(one_way_ms)
    return evaluate(params)
