"""The one log-tail helper, and the message a test prints for a call that did not connect."""

from __future__ import annotations

from pathlib import Path

from harness.logtail import log_tail
from harness.measure.record import CallRecord
from harness.testing.diagnosis import why_not_connected


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    assert log_tail(log, 3).splitlines() == ["line 27", "line 28", "line 29"]


def test_log_tail_says_when_there_is_nothing_to_quote(tmp_path: Path) -> None:
    assert "no log at" in log_tail(tmp_path / "absent.log")
    (tmp_path / "empty.log").write_text("\n")
    assert "is empty" in log_tail(tmp_path / "empty.log")


def test_why_not_connected_names_the_failure_and_quotes_each_log(tmp_path: Path) -> None:
    record = CallRecord(topology="t", policy="baseline", strategy="turn-udp", connected=False,
                        setup_s=None, loss_pct=None, jitter_ms=None, rtt_ms=None, mos=None,
                        expected={"outcome": "connects"}, verdict="fail", outcome="fails",
                        error="caller: no relay candidate", failure_kind="no-local-candidates",
                        failed_at_s=0.9)
    (tmp_path / "caller.log").write_text("starting\nallocate refused: 401\n")
    (tmp_path / "callee.log").write_text("waiting for the offer\n")
    text = why_not_connected(record, tmp_path)
    assert "failure no-local-candidates at 0.9 s" in text
    assert "caller: no relay candidate" in text
    assert "--- caller.log:\nstarting\nallocate refused: 401" in text
    assert "--- callee.log:\nwaiting for the offer" in text
