"""A demo phase's figures from per-second rows, and its checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.demo.live import CallWatch, SideEvents
from harness.demo.scoring import call_figures, check, direction_over
from harness.spec.demo import CallExpect
from harness.spec.policy import RareOutcome

FRAME_MS = 60.0
PER_S = 17  # 60 ms frames: about 16.7 a second


def _rows(seconds: range, received: int = PER_S, lost: int = 0, sent: int = PER_S,
          jitter_ms: float = 1.0, bitrate_kbps: float = 30.0) -> list[dict[str, Any]]:
    return [{"t": float(t), "received": received, "lost": lost, "sent": sent,
             "jitter_ms": jitter_ms, "bitrate_kbps": bitrate_kbps} for t in seconds]


def _figures(down: list[dict[str, Any]], up: list[dict[str, Any]], start: float = 0.0,
             end: float = 20.0, whole: bool = True,
             failure: tuple[float, str] | None = None) -> Any:
    return call_figures(down, up, start, end, 2.0, (FRAME_MS, FRAME_MS), failure,
                        covers_phase=whole)


def test_a_clean_phase_has_media_throughout_and_a_high_mos() -> None:
    rows = _rows(range(1, 21))
    figures = _figures(rows, rows)
    assert figures.media is True and figures.loss_pct == 0.0
    assert figures.mos is not None and figures.mos >= 4.0
    assert all(c.ok for c in check("call", CallExpect(media=True, min_mos=4.0), figures))


def test_fifteen_percent_loss_both_ways_is_under_three() -> None:
    rows = _rows(range(1, 21), received=14, lost=3)
    figures = _figures(rows, rows)
    assert figures.loss_pct == pytest.approx(100 * 3 / 17, abs=0.01)
    assert figures.mos is not None and figures.mos < 3.0
    assert figures.media is True  # broken but never silent
    [bound] = check("call", CallExpect(max_mos=3.0), figures)
    assert bound.ok and bound.expected == "MOS < 3"


def test_the_worse_direction_decides() -> None:
    clean, lossy = _rows(range(1, 21)), _rows(range(1, 21), received=14, lost=3)
    assert _figures(clean, lossy).mos == _figures(lossy, lossy).mos


def test_a_silent_second_counts_what_was_sent_as_lost_and_breaks_media() -> None:
    rows = _rows(range(1, 21))
    gap = [dict(r, received=0, lost=0) if r["t"] == 10.0 else r for r in rows]
    direction = direction_over(gap, 0.0, 20.0)
    assert direction.silent_seconds == 1
    assert direction.expected - direction.received == PER_S
    figures = _figures(gap, rows)
    assert figures.media is None and "1 second(s) without a packet" in figures.note
    [media] = check("call", CallExpect(media=True), figures)
    assert not media.ok and media.observed == "partial media"


def test_seconds_after_the_sender_stopped_are_not_silent() -> None:
    # The side that heard the other first ends its window first: the later
    # side's last rows, in which the sender sent nothing, are not gaps.
    rows = _rows(range(1, 21))
    tail = rows[:15] + _rows(range(16, 19), received=0, sent=0)
    down = direction_over(tail, 0.0, 22.0)
    assert down.silent_seconds == 0 and down.expected == down.received == 15 * PER_S
    assert _figures(tail, rows, end=22.0, whole=False).media is True


def test_seconds_before_the_sender_began_are_not_silent() -> None:
    head = _rows(range(1, 4), received=0, sent=0) + _rows(range(4, 21))
    assert direction_over(head, 0.0, 20.0).silent_seconds == 0


def test_a_second_in_which_the_sender_sent_nothing_mid_call_is_still_silent() -> None:
    rows = _rows(range(1, 21))
    stalled = [dict(r, received=0, sent=0) if r["t"] == 10.0 else r for r in rows]
    assert direction_over(stalled, 0.0, 20.0).silent_seconds == 1
    unknown = [dict(r, received=0, sent=None) if r["t"] >= 17.0 else r for r in rows]
    assert direction_over(unknown, 0.0, 22.0).silent_seconds == 4


def test_no_rows_at_all_is_no_media() -> None:
    figures = _figures([], [], whole=False, failure=(8.2, "caller: relay-unreachable (allocate)"))
    assert figures.media is False and figures.mos is None
    assert figures.failure == "caller: relay-unreachable (allocate)"
    [media] = check("attempt", CallExpect(media=False), figures)
    assert media.ok
    [bound] = check("attempt", CallExpect(min_mos=4.0), figures)
    assert not bound.ok and bound.observed == "no MOS (no media)"


RARE = RareOutcome("fails", share_pct=1.8, decided_by=["whatsapp-dialect"],
                   accepts=["relay-unreachable"], why="0.75^14 = 1.8 % find no port")
NO_PORT = (8.2, "caller: relay-unreachable (allocate)")
BROKEN = CallExpect(media=True, max_mos=3.0)


def test_a_new_call_with_no_port_passes_as_the_policys_rare_outcome() -> None:
    figures = _figures([], [], whole=False, failure=NO_PORT)
    [only] = check("attempt", BROKEN, figures, RARE, frozenset({"whatsapp-dialect", "x"}))
    assert only.ok and only.rare
    assert "1.8 %" in only.expected and "whatsapp-dialect counted" in only.observed
    assert "relay-unreachable" in only.observed


def test_the_rare_outcome_needs_its_rule_counted_and_its_failure_kind() -> None:
    figures = _figures([], [], whole=False, failure=NO_PORT)
    uncounted = check("attempt", BROKEN, figures, RARE, frozenset({"other-rule"}))
    assert [c.ok for c in uncounted] == [False, False] and not any(c.rare for c in uncounted)
    other = _figures([], [], whole=False, failure=(3.0, "caller: setup-timeout (ice)"))
    wrong_kind = check("attempt", BROKEN, other, RARE, frozenset({"whatsapp-dialect"}))
    assert not any(c.ok for c in wrong_kind)


def test_a_call_that_carried_media_is_never_the_rare_outcome() -> None:
    rows = _rows(range(1, 21))
    checks = check("attempt", BROKEN, _figures(rows, rows), RARE,
                   frozenset({"whatsapp-dialect"}))
    assert not any(c.rare for c in checks)
    [media, bound] = checks
    assert media.ok and not bound.ok  # clean: the MOS bound is what fails


def test_an_established_call_must_cover_its_phase() -> None:
    rows = _rows(range(1, 8))  # the call ended 13 s before the phase did
    assert _figures(rows, rows).media is None
    assert _figures(rows, rows, whole=False).media is True  # an attempt need not


def test_a_failure_inside_the_phase_is_not_media_throughout() -> None:
    rows = _rows(range(1, 21))
    figures = _figures(rows, rows, failure=(12.0, "caller: call-dropped (media)"))
    assert figures.media is None and figures.failure == "caller: call-dropped (media)"
    assert _figures(rows, rows, failure=(25.0, "later")).failure is None


def test_rows_outside_the_phase_are_not_counted() -> None:
    rows = _rows(range(1, 41))
    lossy = [dict(r, received=10, lost=7) if r["t"] > 20 else r for r in rows]
    assert _figures(lossy, lossy, 0.0, 20.0).loss_pct == 0.0
    assert _figures(lossy, lossy, 20.0, 40.0).loss_pct == pytest.approx(100 * 7 / 17, abs=0.01)


def _event(kind: str, at: float, **fields: Any) -> str:
    return json.dumps({"event": kind, "monotonic": at, **fields}) + "\n"


def test_the_watch_reads_only_complete_lines(tmp_path: Path) -> None:
    watch = CallWatch(tmp_path)
    caller, callee = watch.events_file("caller"), watch.events_file("callee")
    caller.write_text(_event("attempt", 100.0) + _event("media", 101.0) + '{"event": "st')
    callee.write_text(_event("media", 101.5))
    watch.poll()
    assert watch.media_at == 101.5
    assert watch.sides["caller"].stats == []
    with caller.open("a") as handle:
        handle.write('ats", "monotonic": 102.0, "sent": 17, "received": 16, "lost": 0, '
                     '"jitter_ms": 1.0, "bytes_received": 900, "recorded_s": 1.0, '
                     '"frame_ms": 60}\n')
        handle.write(_event("failed", 103.0, error="call-dropped", stage="media"))
    watch.poll()
    assert [r["sent"] for r in watch.sides["caller"].stats] == [17]
    assert watch.sides["caller"].frame_ms == 60.0
    assert watch.failure == (103.0, "caller: call-dropped (media)")


def test_audio_positions_are_interpolated_between_rows() -> None:
    side = SideEvents(stats=[{"monotonic": 10.0, "recorded_s": 1.0},
                             {"monotonic": 11.0, "recorded_s": 2.0},
                             {"monotonic": 12.0, "recorded_s": 2.5}])
    assert side.recorded_at(10.5) == pytest.approx(1.5)
    assert side.recorded_at(11.5) == pytest.approx(2.25)
    assert side.recorded_at(20.0) == 2.5
    assert side.recorded_at(9.5) == pytest.approx(0.5)
    assert side.recorded_at(5.0) is None
