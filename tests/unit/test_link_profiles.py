"""Link profiles as a matrix axis: the schema and its errors, cells crossed
with link profiles, the MOS bound the E-model allows on a preset's link (and
the judge applying it), the access link and its seeds, and the link profile
in records, tables, reports, comparisons and merges."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import paths
from harness.link import profile as link_profile_module
from harness.link.apply import LinkSetError, topology_impairments
from harness.link.profile import access_link, direction_seed, link_profile_applied
from harness.measure.emodel import estimate_call_quality
from harness.measure.link_bound import (
    SAMPLING_TAIL,
    link_ceiling,
    loss_count_distribution,
    loss_quantile,
    mos_bound,
)
from harness.measure.record import CallIdentity, CallRecord, build_record, skipped_record
from harness.measure.verdict import DEGRADED_BELOW_MOS, CallEvidence
from harness.report.compare import CallKey, compare_runs
from harness.report.html import load_run, record_from_dict, write_report
from harness.report.merge import cell_id
from harness.report.results import format_table
from harness.spec.impairment import GilbertElliott, Impairment
from harness.spec.matrix import Cell, cell_slug, load_matrix, matrix_cells
from harness.spec.policy import Expectation, Policy, load_policy
from harness.spec.presets import (
    IDEAL_LINK,
    link_profile_impairment,
    link_profile_names,
    load_preset_file,
)
from harness.spec.schema import SpecError
from harness.spec.topology import load_topology
from tests.unit.test_record import WINDOW_S, peer
from tests.unit.test_report import build_run, make_record

LTE = "ru-mobile-lte"
FIXED = "ru-fixed-broadband"
CONNECTS = Expectation("connects", basis="mechanism", min_mos=4.0)


# ---------------------------------------------------------------- the schema

def write_matrix(tmp_path: Path, group_extra: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\ndescription: d\ntopology: ru-to-abroad\ngroups:\n"
                    "  - policies: [baseline]\n    calls: {webrtc: [direct, turn-udp]}\n"
                    + group_extra)
    return path


def cells_of(path: Path) -> list[Cell]:
    matrix, loc = load_matrix(path)
    shipped = [p.stem for p in paths.all_policies()]
    return matrix_cells(matrix, loc, shipped, lambda name: load_policy(paths.policy_path(name)))


def test_a_group_without_link_profiles_runs_on_ideal_links_with_the_old_ids(
        tmp_path: Path) -> None:
    cells = cells_of(write_matrix(tmp_path, ""))
    assert [c.link_profile for c in cells] == [IDEAL_LINK, IDEAL_LINK]
    assert [c.slug for c in cells] == ["baseline--webrtc--direct", "baseline--webrtc--turn-udp"]


def test_each_call_runs_once_per_link_profile_in_the_order_listed(tmp_path: Path) -> None:
    cells = cells_of(write_matrix(tmp_path, f"    link_profiles: [ideal, {LTE}, {FIXED}]\n"))
    assert len(cells) == 6 and len({c.slug for c in cells}) == 6
    assert [(c.strategy, c.link_profile) for c in cells[:3]] == [
        ("direct", IDEAL_LINK), ("direct", LTE), ("direct", FIXED)]
    assert cells[1].slug == f"baseline--webrtc--direct--{LTE}"
    assert cells[0] < cells[1] or cells[1] < cells[0]  # ordered, hashable, distinct


@pytest.mark.parametrize(("extra", "message", "line"), [
    ("    link_profiles: [ideal, lte-5g]\n", "unknown link profile 'lte-5g'", 7),
    (f"    link_profiles: [{LTE}, {LTE}]\n", "listed twice", 7),
    ("    link_profiles: []\n", "list at least one link profile", 7),
])
def test_bad_link_profiles_are_errors_at_their_line(tmp_path: Path, extra: str, message: str,
                                                     line: int) -> None:
    with pytest.raises(SpecError) as caught:
        load_matrix(write_matrix(tmp_path, extra))
    assert message in str(caught.value)
    assert caught.value.line == line and "link_profiles" in caught.value.field


def test_link_profiles_are_ideal_and_the_presets_and_ideal_is_reserved(tmp_path: Path) -> None:
    names = link_profile_names()
    assert names[0] == IDEAL_LINK and LTE in names and FIXED in names
    assert link_profile_impairment(IDEAL_LINK) is None
    assert link_profile_impairment(LTE) is not None
    with pytest.raises(ValueError, match="unknown link profile"):
        link_profile_impairment("nope")
    bad = tmp_path / "presets.yaml"
    bad.write_text("presets:\n  ideal:\n    description: d\n    impairment: {delay_ms: 1}\n"
                   "    assumptions: [a]\n")
    with pytest.raises(SpecError, match="reserved"):
        load_preset_file(bad)


def test_the_full_matrix_crosses_link_profiles_on_a_bounded_subset() -> None:
    scenarios = Path(__file__).resolve().parents[2] / "scenarios"
    linked = [c for c in cells_of(scenarios / "matrix.yaml") if c.link_profile != IDEAL_LINK]
    assert 1 <= len(linked) <= 40
    assert {c.link_profile for c in linked} == {FIXED, LTE}
    # the default tour stays on ideal links (see the note in quick.yaml)
    assert {c.link_profile for c in cells_of(scenarios / "quick.yaml")} == {IDEAL_LINK}


# ---------------------------------------------------------------- the bound

def test_the_loss_count_of_random_loss_is_binomial() -> None:
    impairment = Impairment(loss_pct=2.0)
    dist = loss_count_distribution(impairment, 50)
    exact = [math.comb(50, k) * 0.02 ** k * 0.98 ** (50 - k) for k in range(51)]
    assert np.allclose(dist, exact, atol=1e-12)


def test_the_loss_count_of_burst_loss_has_the_chains_mean_and_a_heavier_tail() -> None:
    burst = Impairment(gemodel=GilbertElliott(p_pct=0.4, r_pct=30.0))
    random = Impairment(loss_pct=100 * burst.gemodel.loss_rate)  # type: ignore[union-attr]
    dist = loss_count_distribution(burst, 300)
    assert dist.sum() == pytest.approx(1.0)
    assert float(np.dot(dist, np.arange(301))) / 300 == pytest.approx(
        burst.gemodel.loss_rate)  # type: ignore[union-attr]
    # Losses in bursts of ~3.3 packets: the same mean, a wider spread.
    assert loss_quantile(burst, 300, 0.995) > loss_quantile(random, 300, 0.995)


def test_the_ceiling_is_the_emodel_on_the_presets_own_delay_and_loss() -> None:
    impairment = link_profile_impairment(LTE)
    assert impairment is not None and impairment.gemodel is not None
    ceiling = link_ceiling(impairment, 20.0, WINDOW_S)
    assert ceiling.rtt_ms == 2 * impairment.delay_ms
    assert ceiling.window_packets == 300
    assert ceiling.mean_loss_pct == pytest.approx(100 * impairment.gemodel.loss_rate, abs=1e-3)
    expected = estimate_call_quality(loss_pct=100 * impairment.gemodel.loss_rate,
                                     jitter_ms=impairment.jitter_ms, rtt_ms=50.0, frame_ms=20.0)
    assert ceiling.ceiling_mos == pytest.approx(expected.mos, abs=1e-3)
    assert ceiling.tail_loss_pct > ceiling.mean_loss_pct and ceiling.margin_mos > 0
    # the tail quantile: at most SAMPLING_TAIL of windows lose more
    dist = loss_count_distribution(impairment, 300)
    k = round(ceiling.tail_loss_pct * 3)
    assert dist[k + 1:].sum() <= SAMPLING_TAIL < dist[k:].sum()


def test_ideal_keeps_the_declared_bound() -> None:
    bound = mos_bound(4.0, IDEAL_LINK, None, [20.0, 20.0], WINDOW_S)
    assert (bound.min_mos, bound.source, bound.ceiling) == (4.0, "declared", None)


def test_a_lossy_link_lowers_the_bound_to_what_the_emodel_allows_and_says_why() -> None:
    bound = mos_bound(4.0, LTE, link_profile_impairment(LTE), [20.0, 20.0], WINDOW_S)
    assert bound.source == "link" and bound.ceiling is not None
    assert bound.min_mos is not None and bound.min_mos < 4.0
    assert bound.min_mos == math.floor(bound.ceiling.sampled_mos * 100) / 100
    assert LTE in bound.why and "ceiling" in bound.why and "quantile" in bound.why
    assert bound.declared_min_mos == 4.0


def test_a_clean_link_keeps_the_declared_bound_and_never_raises_it() -> None:
    bound = mos_bound(4.0, FIXED, link_profile_impairment(FIXED), [20.0, 20.0], WINDOW_S)
    assert bound.source == "declared" and bound.min_mos == 4.0
    assert bound.ceiling is not None and bound.ceiling.sampled_mos > 4.0
    low = mos_bound(2.5, LTE, link_profile_impairment(LTE), [20.0], WINDOW_S)
    assert low.min_mos == 2.5 and low.source == "declared"


def test_longer_frames_mean_fewer_packets_and_a_lower_bound() -> None:
    impairment = link_profile_impairment(LTE)
    short = mos_bound(4.0, LTE, impairment, [20.0, 20.0], WINDOW_S)
    long = mos_bound(4.0, LTE, impairment, [60.0, None], WINDOW_S)  # the worse direction counts
    assert long.ceiling is not None and long.ceiling.window_packets == 100
    assert long.min_mos is not None and short.min_mos is not None
    assert long.min_mos < short.min_mos


# ---------------------------------------------------------------- the judge

def judged(loss: float, link: str, rtt_ms: float = 2.0) -> CallRecord:
    evidence = CallEvidence(
        caller=peer("caller", loss=loss, rtt_ms=rtt_ms),
        callee=peer("callee", loss=loss, rtt_ms=rtt_ms), window_s=WINDOW_S,
        link_impaired=link != IDEAL_LINK, link_profile=link,
        link_profile_impairment=link_profile_impairment(link))
    identity = CallIdentity("t", "p", "webrtc", "direct", link_profile=link)
    return build_record(identity, evidence, CONNECTS)


def test_the_judge_holds_a_call_to_the_links_bound_and_records_which() -> None:
    lte_bound = mos_bound(4.0, LTE, link_profile_impairment(LTE), [20.0, 20.0], WINDOW_S)
    assert lte_bound.min_mos is not None
    # A loss that scores between the link's bound and the policy's.
    loss = 5.0
    mos = estimate_call_quality(loss_pct=loss, jitter_ms=1.0, rtt_ms=50.0).mos
    assert lte_bound.min_mos < mos < 4.0
    on_lte, on_ideal = judged(loss, LTE, rtt_ms=50.0), judged(loss, IDEAL_LINK, rtt_ms=50.0)
    assert on_lte.verdict == "pass" and on_lte.link_profile == LTE
    assert on_lte.judgement["mos_bound"]["source"] == "link"
    assert on_lte.judgement["mos_bound"]["min_mos"] == lte_bound.min_mos
    assert on_ideal.verdict == "fail" and on_ideal.judgement["mos_bound"]["min_mos"] == 4.0


def test_a_call_under_the_links_bound_fails_and_says_the_bound_came_from_the_link() -> None:
    bound = mos_bound(4.0, LTE, link_profile_impairment(LTE), [20.0, 20.0], WINDOW_S)
    assert bound.min_mos is not None
    loss = next(x / 2 for x in range(2, 60)
                if DEGRADED_BELOW_MOS < estimate_call_quality(
                    loss_pct=x / 2, jitter_ms=1.0, rtt_ms=50.0).mos < bound.min_mos)
    rec = judged(loss, LTE, rtt_ms=50.0)
    assert rec.outcome == "connects" and rec.verdict == "fail"
    reasons = " ".join(rec.judgement["reasons"])
    assert f"min_mos {bound.min_mos}" in reasons and "instead of the policy's 4" in reasons


def judged_with_frames(loss: float, link: str, frame_ms: float) -> CallRecord:
    """A clean call of `frame_ms` frames: whole window, every frame it sent decoded
    but for `loss`."""
    frames = round(WINDOW_S * 1000 / frame_ms)
    sides = [peer(role, loss=loss, rtt_ms=50.0, frame_ms=frame_ms, packets_received=frames,
                  frames_received=round(frames * (1 - loss / 100)))
             for role in ("caller", "callee")]
    evidence = CallEvidence(caller=sides[0], callee=sides[1], window_s=WINDOW_S,
                            link_impaired=link != IDEAL_LINK, link_profile=link,
                            link_profile_impairment=link_profile_impairment(link))
    return build_record(CallIdentity("t", "p", "whatsapp-like", "direct", link_profile=link),
                        evidence, CONNECTS)


def test_a_call_the_link_alone_degrades_passes_within_the_links_bound() -> None:
    """60 ms frames: the LTE bound lies under the degraded line (MOS 3.0), so a
    clean call whose window drew a heavy loss sample sounds degraded and is
    still what the link allows."""
    bound = mos_bound(4.0, LTE, link_profile_impairment(LTE), [60.0, 60.0], WINDOW_S)
    assert bound.min_mos is not None and bound.min_mos < DEGRADED_BELOW_MOS
    loss = next(x / 4 for x in range(4, 200)
                if bound.min_mos <= estimate_call_quality(
                    loss_pct=x / 4, jitter_ms=1.0, rtt_ms=50.0, frame_ms=60.0).mos
                < DEGRADED_BELOW_MOS)
    rec = judged_with_frames(loss, LTE, 60.0)
    assert rec.outcome == "degraded" and rec.verdict == "pass", rec.judgement
    assert rec.judgement["reasons"][0].startswith("degraded by the link alone")
    # The same call on an ideal link: nothing but the censor could have done it.
    assert judged_with_frames(loss, IDEAL_LINK, 60.0).verdict == "fail"
    # Under the link's bound: more than the link explains.
    worse = judged_with_frames(loss * 3, LTE, 60.0)
    assert worse.outcome == "degraded" and worse.verdict == "fail"


def test_negative_expectations_get_no_mos_bound() -> None:
    evidence = CallEvidence(caller=peer("caller", connected=False, error="setup-timeout"),
                            callee=peer("callee", connected=False, error="setup-timeout"),
                            window_s=WINDOW_S, link_profile=LTE,
                            link_profile_impairment=link_profile_impairment(LTE),
                            link_impaired=True)
    fails = Expectation("fails", basis="mechanism", decided_by=["link"])
    rec = build_record(CallIdentity("t", "p", "webrtc", "direct", link_profile=LTE),
                       evidence, fails)
    assert "mos_bound" not in rec.judgement
    assert rec.verdict == "pass"  # `link` explains it: the link profile impairs a link


# ---------------------------------------------------------------- the access link

def test_the_access_link_is_the_callers_one_link() -> None:
    topology = load_topology(paths.topology_path("ru-to-abroad"))
    assert access_link(topology) == ("caller", "cgnat")


def test_seeds_differ_by_direction_call_and_run_and_repeat_for_the_same() -> None:
    seeds = {direction_seed(run, call, label) for run in ("cw1", "cw2")
             for call in ("a", "b") for label in ("caller:eth0", "cgnat:eth0")}
    assert len(seeds) == 8
    assert direction_seed("cw1", "a", "caller:eth0") == direction_seed("cw1", "a", "caller:eth0")


class _Lab:
    """What link_profile_applied reads of a lab: its topology and run id, and
    hosts by name (for the link labels)."""

    def __init__(self, topology_name: str) -> None:
        self.topology = load_topology(paths.topology_path(topology_name))
        self.run_id = "cwtest"

    def host(self, name: str) -> Any:
        return type("Host", (), {"name": name})()


@pytest.mark.parametrize("topology", ["ru-to-abroad", "ru-to-abroad-lte"])
def test_the_profile_goes_on_both_directions_and_the_topologys_own_comes_back(
        monkeypatch: pytest.MonkeyPatch, topology: str) -> None:
    calls: list[tuple[str, str, Impairment | None]] = []

    def set_impairment(lab: Any, sender: str, receiver: str,
                       impairment: Impairment | None) -> tuple[str, str]:
        calls.append((sender, receiver, impairment))
        return "", ""

    monkeypatch.setattr(link_profile_module, "set_impairment", set_impairment)
    lab: Any = _Lab(topology)
    with link_profile_applied(lab, FIXED, "call-1") as applied:
        assert len(calls) == 2 and applied.name == FIXED and not applied.is_ideal
        put = {(s, r): imp for s, r, imp in calls}
        fixed = link_profile_impairment(FIXED)
        assert set(put) == {("caller", "cgnat"), ("cgnat", "caller")}
        assert all(imp == fixed.with_overrides(seed=imp.seed)  # type: ignore[union-attr]
                   for imp in put.values() if imp is not None)
        assert len({imp.seed for imp in put.values() if imp is not None}) == 2
        assert applied.to_dict()["preset"] == FIXED and len(applied.directions) == 2
    restored = {(s, r): imp for s, r, imp in calls[2:]}
    own = {(index, direction): imp
           for index, direction, imp in topology_impairments(lab.topology)}
    assert restored == {("caller", "cgnat"): own.get((0, 0)), ("cgnat", "caller"): own.get((0, 1))}
    assert (restored[("caller", "cgnat")] is None) == (topology == "ru-to-abroad")


def test_ideal_touches_no_link_and_an_unknown_profile_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link_profile_module, "set_impairment",
                        lambda *args: pytest.fail("ideal must not impair"))
    lab: Any = _Lab("ru-to-abroad")
    with link_profile_applied(lab, IDEAL_LINK) as applied:
        assert applied.is_ideal and applied.directions == () and applied.to_dict() == {}
    with pytest.raises(LinkSetError, match="unknown link profile"), \
            link_profile_applied(lab, "nope"):
        pass


# ---------------------------------------------------------------- records and reports

def linked(policy: str, strategy: str, link: str, **extra: Any) -> dict[str, Any]:
    return make_record(policy, strategy, link_profile=link,
                       call_id=cell_slug(policy, "webrtc", strategy, link), **extra)


def test_a_skipped_record_keeps_its_link_profile() -> None:
    rec = skipped_record(CallIdentity("t", "p", "webrtc", "direct", link_profile=LTE), CONNECTS,
                         "missing x")
    assert rec.link_profile == LTE and record_from_dict(rec.to_dict()).link_profile == LTE
    old = rec.to_dict()
    del old["link_profile"]
    assert record_from_dict(old).link_profile == IDEAL_LINK  # an older results.json


def test_the_table_and_the_report_carry_the_link_profile(tmp_path: Path) -> None:
    records = [make_record("baseline", "direct"), linked("baseline", "direct", LTE)]
    table = format_table([record_from_dict(r) for r in records])
    assert " link " in table.splitlines()[0] and LTE in table
    run = build_run(tmp_path, records)
    text = write_report(run).read_text()
    assert f"link {LTE}" in text  # the matrix row of the call on LTE
    titles = [c.title for c in load_run(run).calls]
    assert titles == ["baseline × webrtc / direct", f"baseline × webrtc / direct on link {LTE}"]


def test_compare_never_pairs_calls_of_different_link_profiles(tmp_path: Path) -> None:
    old = build_run(tmp_path, [make_record("baseline", "direct", mos=4.38),
                               linked("baseline", "direct", LTE, mos=3.9)], name="old")
    new = build_run(tmp_path, [linked("baseline", "direct", LTE, mos=3.9),
                               make_record("baseline", "direct", mos=4.38)], name="new")
    comparison = compare_runs(old, new)
    assert not comparison.changes and len(comparison.pairs) == 2
    assert {p.key for p in comparison.pairs} == {
        CallKey("baseline", "direct"), CallKey("baseline", "direct", 0, LTE)}
    only = build_run(tmp_path, [linked("baseline", "direct", FIXED, mos=4.3)], name="only")
    moved = compare_runs(old, only)
    assert not moved.pairs and moved.only_in_new == (CallKey("baseline", "direct", 0, FIXED),)
    assert f"on link {FIXED}" in moved.only_in_new[0].label


def test_merge_keys_cells_by_link_profile_too() -> None:
    ideal = {"policy": "baseline", "profile": "webrtc", "strategy": "direct"}
    assert cell_id(ideal) == "baseline--webrtc--direct"
    assert cell_id({**ideal, "link_profile": LTE}) == f"baseline--webrtc--direct--{LTE}"
    assert cell_id({**ideal, "link_profile": LTE, "call_id": "x"}) == "x"


def test_results_json_round_trips_the_link_profile_and_its_bound(tmp_path: Path) -> None:
    rec = judged(1.0, LTE, rtt_ms=50.0)
    back = record_from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.link_profile == LTE and back.judgement["mos_bound"]["link_profile"] == LTE


def test_policy_loader_unchanged_for_link_profiles() -> None:
    policy: Policy = load_policy(paths.policy_path("baseline"))
    assert policy.expectation("webrtc", "direct") is not None
