"""Writing call records: results/<run-id>/results.json, the `latest` link,
and the table printed at the end of a run."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.measure.record import CallRecord

SCHEMA_VERSION = 1
COLUMNS = ("policy", "profile", "strategy", "expected", "outcome", "verdict", "setup_s", "loss_pct",
           "jitter_ms", "rtt_ms", "mos", "pesq", "path")


def new_results_dir(root: Path, run_id: str) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / f"{stamp}-{run_id}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def write_results(run_dir: Path, records: Sequence[CallRecord], meta: dict[str, Any]) -> Path:
    payload = {"schema": SCHEMA_VERSION, **meta, "calls": [r.to_dict() for r in records]}
    path = run_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


def point_latest(run_dir: Path) -> None:
    """Make results/latest point at this run (a relative symlink)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    tmp.replace(link)


def format_table(records: Sequence[CallRecord]) -> str:
    rows = [list(COLUMNS)] + [_row(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    passed = sum(r.verdict == "pass" for r in records)
    lines.append(f"{passed}/{len(records)} calls as expected")
    return "\n".join(lines)


def _row(record: CallRecord) -> list[str]:
    return [record.policy, record.profile, record.strategy, expected_text(record), record.outcome,
            record.verdict.upper() if record.verdict == "fail" else record.verdict,
            number_text(record.setup_s, 2), number_text(record.loss_pct, 1),
            number_text(record.jitter_ms, 1), number_text(record.rtt_ms, 1),
            number_text(record.mos, 2), _pesq_text(record), _path_text(record)]


def _path_text(record: CallRecord) -> str:
    """The app profiles' own path (e.g. tcp-relay); the ICE pair for webrtc."""
    return record.path or path_text(record.selected_pair)


def _pesq_text(record: CallRecord) -> str:
    score = (record.pesq or {}).get("mos_lqo")
    return "-" if score is None else f"{score:.2f}"


def expected_text(record: CallRecord) -> str:
    if not record.expected:
        return "-"
    text = str(record.expected["outcome"])
    if "min_mos" in record.expected:
        text += f" mos>={record.expected['min_mos']}"
    if "max_mos" in record.expected:
        text += f" mos<{record.expected['max_mos']}"
    return text


def number_text(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def path_text(pair: dict[str, Any] | None) -> str:
    if not pair:
        return "-"
    local = pair.get("local_type", "?")
    via = pair.get("local_relay_protocol") or pair.get("local_protocol", "?")
    return f"{local}/{via}->{pair.get('remote_type', '?')}"
