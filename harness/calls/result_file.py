"""The one way a call endpoint writes its result file: atomically (a
temporary file beside it, flushed and fsynced, then renamed over it), so
that the harness never reads half a result, whatever kills the writer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, document: Any) -> None:
    """`document` as indented JSON at `path`, all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
