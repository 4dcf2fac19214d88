"""The last lines of a process's log file, for error messages (one helper for
every service, tunnel, engine and test that quotes a log)."""

from __future__ import annotations

from pathlib import Path

LOG_TAIL_LINES = 15


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of `log`, or a sentence saying it is absent or empty."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({log} is empty)"
