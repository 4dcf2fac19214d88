"""A call client's progress events, shared by the aiortc peer and the
app-like clients, so the harness reads one format from every profile."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any


class EventLog:
    """Progress events as JSON lines (``--events``), for whoever watches the call from
    outside: ``{"event": ..., "monotonic": ...}`` with the system-wide monotonic clock
    (the same in every network namespace), flushed line by line. Events: ``attempt``
    (the call attempt starts), ``media`` (first decoded audio frame) and ``failed``
    (``error``, ``stage``). Best effort: a write error never affects the call."""

    def __init__(self, path: Path | None) -> None:
        self._path = path

    def emit(self, event: str, at: float | None = None, **fields: Any) -> None:
        if self._path is None:
            return
        line = {"event": event, "monotonic": time.monotonic() if at is None else at, **fields}
        with contextlib.suppress(OSError), self._path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
