"""Writing call records: results/<run-id>/results.json, the `latest` link,
and the table printed at the end of a run.

The table and its footer keep apart what the judge could decide (pass, fail)
from what it could not: ``error`` (the harness or a tool broke: never a pass)
and ``skipped`` (the call was not placed: a tool it needs is missing). Each
expectation shows its basis (report, mechanism, observed) and each verdict the
rules that decided it, with what they counted."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.measure.record import CallRecord
from harness.spec.policy import LINK_CAUSE

SCHEMA_VERSION = 1
COLUMNS = ("policy", "profile", "strategy", "link", "expected", "outcome", "verdict", "decided by",
           "setup_s", "loss_pct", "jitter_ms", "rtt_ms", "mos", "pesq", "path")
BASES = ("report", "mechanism", "observed")
# Verdicts the judge reached; error, skipped and no-expectation are not among them.
JUDGED = ("pass", "fail")
MISSING_PREFIX = "missing "


def new_results_dir(root: Path, run_id: str) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / f"{stamp}-{run_id}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def write_results(run_dir: Path, records: Sequence[CallRecord], meta: dict[str, Any]) -> Path:
    return write_raw_results(run_dir, [r.to_dict() for r in records], meta)


def write_raw_results(run_dir: Path, calls: Sequence[Mapping[str, Any]],
                      meta: Mapping[str, Any]) -> Path:
    """results.json from call records as results.json holds them (every field
    kept, also those CallRecord does not know), written atomically."""
    payload = {"schema": SCHEMA_VERSION, **meta, "calls": list(calls)}
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
    counts = tally(records)
    lines.append(counts.summary())
    lines.append(counts.bases_summary())
    return "\n".join(lines)


# ---------------------------------------------------------------- counting a run

@dataclass(frozen=True)
class Tally:
    """A run's calls counted apart: verdicts the judge reached, calls it could
    not judge (error), calls not placed (skipped), and the basis of the
    expectations behind the judged ones."""

    total: int
    passed: int
    failed: int
    errors: int
    skipped: int
    no_expectation: int
    other: int  # a verdict this code does not know (a newer or broken file)
    missing: tuple[str, ...]  # what the skipped calls lacked, in order of appearance
    bases: Mapping[str, int]  # report / mechanism / observed / unstated, judged calls only

    def summary(self) -> str:
        """E.g. "250/272 calls as expected; 2 failed; 15 calls could not be
        judged (error); 5 skipped (missing wg, wireguard-go)"."""
        errors = (f"{self.errors} call could not be judged" if self.errors == 1
                  else f"{self.errors} calls could not be judged")
        parts = [f"{self.passed}/{self.total} calls as expected", f"{self.failed} failed",
                 f"{errors} (error)",
                 f"{self.skipped} skipped" + (f" ({MISSING_PREFIX}{', '.join(self.missing)})"
                                              if self.missing else "")]
        if self.no_expectation:
            parts.append(f"{self.no_expectation} without an expectation")
        if self.other:
            parts.append(f"{self.other} with an unknown verdict")
        return "; ".join(parts)

    def bases_summary(self) -> str:
        """E.g. "expectations: 40 report, 200 mechanism, 12 observed" (judged calls)."""
        text = "expectations: " + ", ".join(f"{self.bases.get(b, 0)} {b}" for b in BASES)
        if self.bases.get("unstated"):
            text += f", {self.bases['unstated']} without a basis"
        return text + " (judged calls)"


def tally(records: Sequence[CallRecord]) -> Tally:
    verdicts = [r.verdict for r in records]
    missing: list[str] = []
    for record in records:
        if record.verdict == "skipped":
            for what in skip_causes(record):
                if what not in missing:
                    missing.append(what)
    bases = {b: 0 for b in BASES}
    for record in records:
        if record.verdict in JUDGED:
            basis = expectation_basis(record.expected)
            key = basis if basis in BASES else "unstated"
            bases[key] = bases.get(key, 0) + 1
    known = ("pass", "fail", "error", "skipped", "no-expectation")
    return Tally(total=len(records), passed=verdicts.count("pass"),
                 failed=verdicts.count("fail"), errors=verdicts.count("error"),
                 skipped=verdicts.count("skipped"),
                 no_expectation=verdicts.count("no-expectation"),
                 other=sum(v not in known for v in verdicts), missing=tuple(missing),
                 bases=bases)


def skip_causes(record: CallRecord) -> list[str]:
    """What a skipped call lacked: the tools of its "missing X, Y" reasons
    (any other reason as it is)."""
    causes: list[str] = []
    for reason in judgement_reasons(record):
        if reason.startswith(MISSING_PREFIX):
            causes += [t.strip() for t in reason[len(MISSING_PREFIX):].split(",") if t.strip()]
        else:
            causes.append(reason)
    return causes


# ---------------------------------------------------------------- reading a record leniently

def judgement_reasons(record: CallRecord) -> list[str]:
    """The judge's reasons, most important first (none for an old record)."""
    reasons = _judgement(record).get("reasons")
    return [str(r) for r in reasons if r not in (None, "")] if isinstance(reasons, list) else []


# The judge's first reason for an error says only that; the next one says why.
GENERIC_REASONS = ("could not be judged",)


def headline_reason(record: CallRecord) -> str:
    """The reason that says most: the first that is not a generic one."""
    reasons = judgement_reasons(record)
    specific = [r for r in reasons if r not in GENERIC_REASONS]
    return (specific or reasons or [""])[0]


def judgement_failures(record: CallRecord) -> list[dict[str, Any]]:
    """Every failure of both peers: {"role", "kind", "at_s", "after_media"}."""
    failures = _judgement(record).get("failures")
    return ([dict(f) for f in failures if isinstance(f, Mapping)]
            if isinstance(failures, list) else [])


def deciding_rules(record: CallRecord) -> list[tuple[str, int | None, int | None]]:
    """The expectation's deciding rules with what each counted: (rule, packets, bytes)."""
    rules = _judgement(record).get("deciding_rules")
    if not isinstance(rules, list):
        return []
    return [(str(r.get("rule") or "?"), _count(r.get("packets")), _count(r.get("bytes")))
            for r in rules if isinstance(r, Mapping)]


def decided_by_text(record: CallRecord) -> str:
    """The deciding rules with their packet counts ("stun-to-relays=14"), and
    "link" where a link impairment decides; "-" when nothing decides."""
    parts = [f"{rule}={'?' if packets is None else packets}"
             for rule, packets, _ in deciding_rules(record)]
    causes = (record.expected or {}).get("decided_by")
    if isinstance(causes, list) and LINK_CAUSE in causes:
        parts.append(LINK_CAUSE)
    return ", ".join(parts) or "-"


def expectation_basis(expected: Mapping[str, Any] | None) -> str | None:
    basis = (expected or {}).get("basis")
    return str(basis) if isinstance(basis, str) and basis else None


def expectation_source(expected: Mapping[str, Any] | None) -> str:
    """The ids of the report entries (docs/sources.md) an expectation cites."""
    source = (expected or {}).get("source")
    if isinstance(source, list):
        return ", ".join(str(s) for s in source if s)
    return str(source).strip() if isinstance(source, str | int | float) else ""


def _judgement(record: CallRecord) -> Mapping[str, Any]:
    value = getattr(record, "judgement", None)
    return value if isinstance(value, Mapping) else {}


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return int(value)


# ---------------------------------------------------------------- the table

def _row(record: CallRecord) -> list[str]:
    return [record.policy, record.profile, record.strategy, record.link_profile,
            expected_text(record),
            record.outcome, verdict_text(record.verdict), decided_by_text(record),
            number_text(record.setup_s, 2), number_text(record.loss_pct, 1),
            number_text(record.jitter_ms, 1), number_text(record.rtt_ms, 1),
            number_text(record.mos, 2), _pesq_text(record), _path_text(record)]


def verdict_text(verdict: str) -> str:
    """fail and error in capitals, so neither reads as a pass at a glance."""
    return verdict.upper() if verdict in ("fail", "error") else verdict


def _path_text(record: CallRecord) -> str:
    """The app profiles' own path (e.g. tcp-relay); the ICE pair for webrtc."""
    return record.path or path_text(record.selected_pair)


def _pesq_text(record: CallRecord) -> str:
    score = (record.pesq or {}).get("mos_lqo")
    return "-" if not isinstance(score, int | float) else f"{score:.2f}"


def expected_text(record: CallRecord, basis: bool = True) -> str:
    """E.g. "fails [mechanism]", "connects mos>=4.0 [report]"; an old record's
    "degraded mos<3.0" (max_mos) as it was; on a link profile whose E-model
    ceiling lowered the bound, "connects mos>=3.35 (link; policy 4.0)"."""
    if not record.expected:
        return "-"
    text = str(record.expected.get("outcome", "?"))
    bound = record.judgement.get("mos_bound") if isinstance(record.judgement, dict) else None
    if isinstance(bound, dict) and bound.get("source") == "link":
        text += f" mos>={bound.get('min_mos')} (link; policy {record.expected.get('min_mos')})"
    elif record.expected.get("min_mos") is not None:
        text += f" mos>={record.expected['min_mos']}"
    if record.expected.get("max_mos") is not None:
        text += f" mos<{record.expected['max_mos']}"
    tag = expectation_basis(record.expected)
    if basis and tag:
        text += f" [{tag}]"
    return text


def number_text(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def path_text(pair: dict[str, Any] | None) -> str:
    if not pair:
        return "-"
    local = pair.get("local_type", "?")
    via = pair.get("local_relay_protocol") or pair.get("local_protocol", "?")
    return f"{local}/{via}->{pair.get('remote_type', '?')}"
