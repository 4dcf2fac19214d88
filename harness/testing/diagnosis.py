"""What a test prints when a call it needed did not connect: the record's
verdict, outcome, failure kind and error, and the tail of each side's log, so
a failure on a CI runner can be explained without its files."""

from __future__ import annotations

from pathlib import Path

from harness.logtail import log_tail
from harness.measure.record import CallRecord

LOG_LINES = 12


def why_not_connected(record: CallRecord, call_dir: Path) -> str:
    """A message for `assert record.connected, why_not_connected(record, call_dir)`."""
    parts = [f"{record.policy}/{record.strategy}: verdict {record.verdict}, outcome "
             f"{record.outcome}, failure {record.failure_kind} at {record.failed_at_s} s, "
             f"error {record.error!r}"]
    for log in sorted(call_dir.glob("*.log")):
        parts.append(f"--- {log.name}:\n{log_tail(log, LOG_LINES)}")
    return "\n".join(parts)
