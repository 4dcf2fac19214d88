"""The real endpoints under every shipped policy: each policy that declares
the aiortc client's (webrtc) ICE cells declares Chromium's (browser) and
baresip's (sip) for the same strategies, and loads through the schema; the
endpoints matrix runs exactly those cells; the report says where and why
they are expected to end otherwise than the aiortc client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import paths
from harness.measure.record import CallIdentity, CallRecord, expectation_dict, skipped_record
from harness.report.endpoints import endpoint_differences
from harness.report.html import load_run, render_report
from harness.spec.matrix import load_matrix, matrix_cells
from harness.spec.names import ICE_STRATEGIES, PLACEABLE, Profile
from harness.spec.policy import Expectation, load_policy

POLICIES = paths.all_policies()
REAL = {Profile.BROWSER.value: [s for s in ICE_STRATEGIES if s in PLACEABLE["browser"]],
        Profile.SIP.value: [s for s in ICE_STRATEGIES if s in PLACEABLE["sip"]]}


def test_sip_takes_the_strategies_baresip_1_0_has() -> None:
    assert REAL["sip"] == ["direct", "turn-udp"]
    assert REAL["browser"] == ["direct", "turn-udp", "turn-tcp", "turn-tls-443"]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_every_webrtc_policy_declares_browser_and_sip(path: Path) -> None:
    policy = load_policy(path)  # the schema, with file:line errors
    webrtc = policy.expect.get(Profile.WEBRTC.value, {})
    if not webrtc:
        pytest.skip("declares no webrtc expectations")
    for profile, strategies in REAL.items():
        for strategy in strategies:
            if strategy not in webrtc:
                continue
            mine = policy.expectation(profile, strategy)
            assert mine is not None, f"{path.name}: no expectation for {profile}/{strategy}"
            assert mine.why.strip(), f"{path.name}: {profile}/{strategy} says no why"
            if mine.outcome != webrtc[strategy].outcome:
                # a difference from the aiortc client is explained, not just stated
                assert len(mine.why) > 40, f"{path.name}: {profile}/{strategy}: {mine.why!r}"


def test_the_endpoints_matrix_runs_every_declared_cell() -> None:
    matrix, loc = load_matrix(paths.HOME / "scenarios" / "endpoints.yaml")
    shipped = [p.stem for p in POLICIES]
    cells = matrix_cells(matrix, loc, shipped, lambda n: load_policy(paths.policy_path(n)))
    want = {(p, profile, s) for p in shipped for profile, strategies in REAL.items()
            for s in strategies}
    assert {(c.policy, c.profile, c.strategy) for c in cells} == want


# ---------------------------------------------------------------- the report section

def _record(policy: str, profile: str, strategy: str, expectation: Expectation,
            outcome: str) -> CallRecord:
    record = skipped_record(CallIdentity("ru-to-abroad", policy, profile, strategy, "cw000000",
                                         f"{policy}--{profile}--{strategy}"),
                            expectation, "fake")
    record.outcome, record.verdict = outcome, "pass"
    return record


CONNECTS = Expectation("connects", "mechanism", min_mos=4.0, why="nothing is dropped")
DEGRADED = Expectation("degraded", "mechanism", decided_by=["police-udp"],
                       why="aiortc's 96 kbit/s Opus is over the rate")
POLICED_BROWSER = Expectation("connects", "mechanism", min_mos=4.0,
                              why="Chromium's Opus runs at a 32 kbit/s target, under the rate")
SIP_FAILS = Expectation("fails", "mechanism", decided_by=["stun"], accepts=["gathering-failed"],
                        why="baresip ends the call when its STUN Binding times out")


def _fake_run() -> list[CallRecord]:
    return [
        _record("fake-police", "webrtc", "direct", DEGRADED, "degraded"),
        _record("fake-police", "browser", "direct", POLICED_BROWSER, "connects"),
        _record("fake-police", "sip", "direct", DEGRADED, "degraded"),  # same as webrtc
        _record("fake-police", "whatsapp-like", "direct", CONNECTS, "connects"),  # not real
        # no webrtc record in the run: the lookup answers for it
        _record("fake-stun", "sip", "direct", SIP_FAILS, "fails"),
        _record("fake-other", "sip", "direct", SIP_FAILS, "fails"),  # lookup knows nothing
    ]


def _lookup(policy: str, strategy: str) -> dict[str, str] | None:
    return {"outcome": "connects", "why": "x"} if policy == "fake-stun" else None


def test_differences_name_the_cells_that_part_from_webrtc() -> None:
    found = endpoint_differences(_fake_run(), _lookup)
    assert [(d.policy, d.profile, d.strategy, d.webrtc_outcome, d.expected_outcome)
            for d in found] == [("fake-police", "browser", "direct", "degraded", "connects"),
                                ("fake-stun", "sip", "direct", "connects", "fails")]
    assert found[0].why == POLICED_BROWSER.why and found[0].observed_outcome == "connects"


def test_the_shipped_policies_are_the_default_lookup() -> None:
    """udp-police-64k: Chromium's lower Opus rate connects where aiortc's is policed."""
    expected = load_policy(paths.policy_path("udp-police-64k")).expectation("browser", "direct")
    assert expected is not None
    record = _record("udp-police-64k", "browser", "direct", expected, "connects")
    (found,) = endpoint_differences([record])
    assert found.webrtc_outcome == "degraded" and "32 kbit/s" in found.why


def test_the_report_lists_them_with_their_why(tmp_path: Path) -> None:
    calls = [r.to_dict() for r in _fake_run()]
    assert calls[1]["expected"] == expectation_dict(POLICED_BROWSER)
    (tmp_path / "results.json").write_text(json.dumps({"run_id": "cw000000", "calls": calls}))
    page = render_report(load_run(tmp_path))
    section = page.split("<section id=\"endpoints\">", 1)[1].split("</section>", 1)[0]
    assert "Where the real endpoints differ from aiortc" in section
    assert "browser / direct" in section and "32 kbit/s target" in section
    assert "sip / direct" not in section  # fake-police sip is as webrtc; fake-stun has no
    # shipped policy and no webrtc call in this run, so it is left out, not guessed
    assert "whatsapp-like" not in section


def test_the_report_says_none_when_nothing_differs(tmp_path: Path) -> None:
    calls = [r.to_dict() for r in _fake_run()[:1]]
    (tmp_path / "results.json").write_text(json.dumps({"run_id": "cw000000", "calls": calls}))
    page = render_report(load_run(tmp_path))
    assert "<section id=\"endpoints\">" in page and "none: no call of this run" in page
