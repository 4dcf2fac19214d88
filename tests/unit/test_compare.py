"""compare_runs: identical runs have no regression; a call that got worse
(outcome, verdict, MOS beyond the threshold) is a regression and is listed; an
improvement is listed but is not a regression."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from harness.report.compare import (
    CallKey,
    MosShift,
    OutcomeFlip,
    VerdictFlip,
    compare_runs,
    render_text,
    write_comparison_html,
)
from harness.report.html import ReportError
from tests.unit.test_report import build_run, make_record, read_page

KEY = CallKey("baseline", "direct")


def matrix() -> list[dict[str, Any]]:
    return [
        make_record("baseline", "direct", mos=4.38),
        make_record("baseline", "turn-tcp", mos=4.38),
        make_record("dpi-stun-drop", "direct", outcome="fails", mos=None,
                    expected={"outcome": "fails"}),
        make_record("udp-throttle", "direct", outcome="degraded", mos=1.22,
                    expected={"outcome": "degraded", "basis": "mechanism",
                              "decided_by": ["police-udp"]}),
    ]


def changed(records: list[dict[str, Any]], policy: str, strategy: str,
            **fields: Any) -> list[dict[str, Any]]:
    result = copy.deepcopy(records)
    for record in result:
        if (record["policy"], record["strategy"]) == (policy, strategy):
            record.update(fields)
    return result


def test_identical_runs_have_no_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, matrix(), name="new")
    comparison = compare_runs(old, new)
    assert not comparison.has_regression
    assert comparison.changes == () and comparison.regressions == ()
    assert comparison.only_in_old == () == comparison.only_in_new
    assert len(comparison.pairs) == 4
    text = render_text(comparison)
    assert "4 calls in both runs, 0 changed; 0 regressions" in text
    assert "REGRESSION" not in text
    assert not compare_runs(old, old).has_regression


def test_connects_to_fails_is_a_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, changed(matrix(), "baseline", "direct", outcome="fails",
                                      connected=False, mos=None, verdict="fail"), name="new")
    comparison = compare_runs(old, new)
    assert comparison.has_regression
    assert comparison.outcome_flips == (OutcomeFlip(KEY, "connects", "fails"),)
    assert comparison.verdict_flips == (VerdictFlip(KEY, "pass", "fail"),)
    assert comparison.mos_shifts == ()  # no MOS to compare: the outcome flip says it
    assert all(change.regression for change in comparison.regressions)
    text = render_text(comparison)
    assert re.search(r"REGRESSION\s+baseline × direct\s+outcome\s+connects → fails", text)
    assert re.search(r"REGRESSION\s+baseline × direct\s+verdict\s+pass → fail", text)
    assert "2 regressions" in text


def test_connects_to_degraded_alone_is_a_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, changed(matrix(), "baseline", "direct", outcome="degraded",
                                      mos=4.0), name="new")
    comparison = compare_runs(old, new)
    assert comparison.has_regression
    assert [c.regression for c in comparison.outcome_flips] == [True]
    assert comparison.verdict_flips == () and comparison.mos_shifts == ()


def test_mos_drop_beyond_the_threshold_is_a_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, changed(matrix(), "baseline", "turn-tcp", mos=3.38), name="new")
    comparison = compare_runs(old, new)
    assert comparison.has_regression
    (shift,) = comparison.mos_shifts
    assert shift.key == CallKey("baseline", "turn-tcp") and shift.regression
    assert shift.delta == pytest.approx(-1.0)
    assert comparison.outcome_flips == () == comparison.verdict_flips
    assert re.search(r"REGRESSION\s+baseline × turn-tcp\s+MOS\s+4\.38 → 3\.38 \(-1\.00\)",
                     render_text(comparison))
    # A looser threshold lets the same drop through; a small move never counts.
    assert not compare_runs(old, new, mos_threshold=1.5).has_regression
    small = build_run(tmp_path, changed(matrix(), "baseline", "turn-tcp", mos=3.98),
                      name="small")
    assert compare_runs(old, small).mos_shifts == ()
    exact = build_run(tmp_path, changed(matrix(), "baseline", "turn-tcp", mos=3.88),
                      name="exact")
    assert not compare_runs(old, exact).has_regression  # 0.5 is not more than 0.5


def test_improvements_are_listed_but_are_not_regressions(tmp_path: Path) -> None:
    before = changed(matrix(), "baseline", "direct", outcome="fails", connected=False,
                     mos=None, verdict="fail")
    before = changed(before, "udp-throttle", "direct", mos=1.22, outcome="degraded")
    after = changed(matrix(), "udp-throttle", "direct", mos=2.5)
    old = build_run(tmp_path, before, name="old")
    new = build_run(tmp_path, after, name="new")
    comparison = compare_runs(old, new)
    assert not comparison.has_regression
    assert comparison.outcome_flips == (OutcomeFlip(KEY, "fails", "connects"),)
    assert comparison.outcome_flips[0].improvement
    assert comparison.verdict_flips == (VerdictFlip(KEY, "fail", "pass"),)
    assert comparison.mos_shifts == (MosShift(CallKey("udp-throttle", "direct"), 1.22, 2.5,
                                              regression=False),)
    text = render_text(comparison)
    assert "REGRESSION" not in text and text.count("improved") == 3
    assert "0 regressions" in text


def test_calls_in_one_run_only_are_listed(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new_records = [r for r in matrix() if r["strategy"] != "turn-tcp"]
    new_records.append(make_record("relay-block", "turn-udp"))
    new = build_run(tmp_path, new_records, name="new")
    comparison = compare_runs(old, new)
    assert comparison.only_in_old == (CallKey("baseline", "turn-tcp"),)
    assert comparison.only_in_new == (CallKey("relay-block", "turn-udp"),)
    assert not comparison.has_regression
    text = render_text(comparison)
    assert "only in old: baseline × turn-tcp" in text
    assert "only in new: relay-block × turn-udp" in text


def test_comparison_html_is_self_contained(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, changed(matrix(), "baseline", "direct", outcome="fails",
                                      connected=False, mos=None, verdict="fail"), name="new")
    (tmp_path / "latest").symlink_to("new")
    comparison = compare_runs(old, tmp_path / "latest")
    assert comparison.new.dir == new.resolve()
    path = write_comparison_html(comparison, tmp_path / "out" / "compare.html")
    text, page = read_page(path)
    assert not re.search(r"https?://", text)
    assert "<script" not in text and "<link" not in text
    assert [row["class"] for row in page.find("tr") if row.get("class") in ("pass", "fail")] \
        == ["fail", "fail"]
    assert "regression" in text and "baseline × direct" in text


def test_unreadable_runs_raise_report_error(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    with pytest.raises(ReportError):
        compare_runs(old, tmp_path / "missing")
    with pytest.raises(ValueError):
        compare_runs(old, old, mos_threshold=-1)


# ---------------------------------------------------------------- errors and skipped calls

CRASHED = {"outcome": "error", "verdict": "error", "connected": False, "mos": None,
           "judgement": {"outcome": "error", "verdict": "error",
                         "reasons": ["could not be judged", "callee: peer-crashed"],
                         "failures": [], "deciding_rules": []}}


def test_an_error_where_the_old_run_passed_is_a_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, changed(matrix(), "baseline", "direct", **CRASHED), name="new")
    comparison = compare_runs(old, new)
    assert comparison.has_regression
    assert comparison.outcome_flips == (OutcomeFlip(KEY, "connects", "error"),)
    assert comparison.verdict_flips == (VerdictFlip(KEY, "pass", "error"),)
    assert all(flip.regression and flip.error_flip
               for flip in comparison.outcome_flips + comparison.verdict_flips)
    assert comparison.new_errors == (KEY,)
    assert (comparison.old.errors, comparison.new.errors) == (0, 1)
    text = render_text(comparison)
    assert re.search(r"REGRESSION\s+baseline × direct\s+verdict\s+pass → error \(could not be "
                     r"judged in the new run: callee: peer-crashed\)", text)
    assert re.search(r"REGRESSION\s+baseline × direct\s+outcome\s+connects → error", text)
    assert ("1 call could not be judged in the new run (error) where the old run judged them: "
            "baseline × direct") in text
    assert "2 regressions" in text and "could not be judged: 0 old, 1 new" in text


def test_an_error_of_a_passing_fails_cell_is_a_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, changed(matrix(), "dpi-stun-drop", "direct", **CRASHED),
                    name="new")
    comparison = compare_runs(old, new)
    key = CallKey("dpi-stun-drop", "direct")
    assert [(c.key, c.regression) for c in comparison.changes] == [(key, True), (key, True)]
    assert "fails → error (could not be judged in the new run" in render_text(comparison)


def test_a_call_judged_again_after_an_error_is_no_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, changed(matrix(), "baseline", "direct", **CRASHED), name="old")
    new = build_run(tmp_path, matrix(), name="new")
    comparison = compare_runs(old, new)
    assert not comparison.has_regression and comparison.new_errors == ()
    (flip,) = comparison.verdict_flips
    assert (flip.old, flip.new, flip.improvement, flip.error_flip) == ("error", "pass", True, True)
    text = render_text(comparison)
    assert re.search(r"improved\s+baseline × direct\s+verdict\s+error → pass \(could not be "
                     r"judged in the old run: callee: peer-crashed\)", text)
    assert "could not be judged: 1 old, 0 new" in text
    # An error in both runs is no change at all.
    same = compare_runs(old, old)
    assert same.changes == () and same.new_errors == ()


def test_a_skipped_call_is_listed_but_is_no_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    skipped = {"outcome": "skipped", "verdict": "skipped", "connected": False, "mos": None,
               "judgement": {"outcome": "skipped", "verdict": "skipped",
                             "reasons": ["missing wireguard-go, wg"], "failures": [],
                             "deciding_rules": []}}
    new = build_run(tmp_path, changed(matrix(), "baseline", "turn-tcp", **skipped), name="new")
    comparison = compare_runs(old, new)
    assert not comparison.has_regression
    assert [c.regression for c in comparison.changes] == [False, False]
    assert re.search(r"changed\s+baseline × turn-tcp\s+verdict\s+pass → skipped \(not placed in "
                     r"the new run: missing wireguard-go, wg\)", render_text(comparison))


def test_comparison_html_says_an_error_is_a_regression(tmp_path: Path) -> None:
    old = build_run(tmp_path, matrix(), name="old")
    new = build_run(tmp_path, changed(matrix(), "baseline", "direct", **CRASHED), name="new")
    text, page = read_page(write_comparison_html(compare_runs(old, new), tmp_path / "c.html"))
    assert '<span class="badge fail">regression</span>' in text
    assert ('<span class="badge error">error</span> 1 call could not be judged in the new run '
            "(error) where the old run judged them: baseline × direct") in text
    flips = [row["class"] for row in page.find("tr") if "errorflip" in row.get("class", "")]
    assert flips == ["fail errorflip", "fail errorflip"]
    assert ("<td>pass → error (could not be judged in the new run: callee: peer-crashed)</td>"
            in text)
    assert '<td class="error">error</td>' in text  # the new verdict, in the error colour
    runs = text.split("<h2>Runs</h2>", 1)[1].split("</table>", 1)[0]
    assert "<th>could not be judged</th>" in runs
    assert re.search(r"<th>new</th>(<td>[^<]*</td>){4}<td>1</td><td>0</td>", runs)


def test_calls_of_different_profiles_in_one_cell_are_never_paired(tmp_path: Path) -> None:
    """webrtc and whatsapp-like `direct` under one policy are two cells: a
    whatsapp-like fail in the new run is its own regression, not a repeat of
    the webrtc call."""
    def run(name: str, whatsapp_verdict: str) -> Path:
        records = [make_record("baseline", "direct"),
                   make_record("baseline", "direct", profile="whatsapp-like",
                               verdict=whatsapp_verdict,
                               outcome="connects" if whatsapp_verdict == "pass" else "fails")]
        return build_run(tmp_path, records, name=name)

    comparison = compare_runs(run("old", "pass"), run("new", "fail"))
    keys = {change.key for change in comparison.changes}
    assert keys == {CallKey("baseline", "direct", profile="whatsapp-like")}
    assert comparison.has_regression
    assert "baseline × whatsapp-like / direct" in render_text(comparison)
