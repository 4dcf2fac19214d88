"""results/<run>/report.html: one self-contained page per run.

The header counts verdicts, calls that could not be judged (``error``) and
calls not placed (``skipped``) apart, and the basis of the expectations
(report, mechanism, observed). Then the policy × profile × strategy matrix
(each cell coloured by its verdict, showing its expectation's basis and the
rules that decided it), the calls that could not be judged with their
reasons, a section per call (the judgement: reasons, both peers' failures,
deciding rules and what they counted; key figures, frames decoded against
expected per direction, its timeline plot embedded as a data URI, the censor's
rule counters, events, faults, links to its recordings and raw files), then
the run's environment. No external CSS, script, font or image:
the page works offline and without JavaScript.

Everything comes from results.json; each call record is read leniently (any
optional field may be missing or null, and is shown as "not recorded" or "—")."""

from __future__ import annotations

import base64
import datetime
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.measure.record import CallRecord, Direction
from harness.report.endpoints import endpoint_differences
from harness.report.plots import number, timeline_png
from harness.report.results import (
    Tally,
    deciding_rules,
    expectation_basis,
    expectation_source,
    expected_text,
    headline_reason,
    judgement_failures,
    judgement_reasons,
    number_text,
    path_text,
    tally,
)
from harness.spec.names import ALL_STRATEGIES as STRATEGIES
from harness.spec.names import PROFILES
from harness.spec.policy import LINK_CAUSE
from harness.spec.presets import IDEAL_LINK

REPORT_NAME = "report.html"
DASH = "—"
NOT_RECORDED = "not recorded"
WAV_SUFFIXES = (".wav",)
PCAP_SUFFIXES = (".pcap", ".pcapng")


class ReportError(Exception):
    """The run can't be reported on: no such directory, no or unreadable results.json."""


# ---------------------------------------------------------------- the run, read leniently

@dataclass(frozen=True)
class Call:
    """One call record: the typed fields as a CallRecord, the rest (optional
    fields newer or older than CallRecord) in ``raw``."""

    record: CallRecord
    raw: Mapping[str, Any]
    anchor: str
    call_dir: str | None  # "calls/<id>" relative to the run directory, if it exists

    @property
    def policy(self) -> str:
        return self.record.policy

    @property
    def strategy(self) -> str:
        return self.record.strategy

    @property
    def column(self) -> tuple[str, str]:
        return (self.record.profile, self.record.strategy)

    @property
    def title(self) -> str:
        link = self.record.link_profile
        text = f"{self.policy} × {self.record.profile} / {self.strategy}"
        return text if link == IDEAL_LINK else f"{text} on link {link}"

    @property
    def row(self) -> tuple[str, str]:
        """The report matrix's row: the policy, and the link profile."""
        return (self.record.policy, self.record.link_profile)


@dataclass(frozen=True)
class Run:
    dir: Path
    meta: Mapping[str, Any]  # results.json without "calls"
    calls: list[Call]

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.dir.name)


def resolve_run_dir(path: Path) -> Path:
    """The run directory a user named: a run directory, a link to one
    (results/latest) or its results.json."""
    path = Path(path)
    if path.name == "results.json" and path.is_file():
        path = path.parent
    resolved = path.resolve()
    if not resolved.is_dir():
        raise ReportError(f"{path}: no such run directory")
    if not (resolved / "results.json").is_file():
        raise ReportError(f"{path}: no results.json (not a run directory, or the run "
                          f"did not finish)")
    return resolved


def load_run(path: Path) -> Run:
    run_dir = resolve_run_dir(path)
    try:
        payload = json.loads((run_dir / "results.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{run_dir / 'results.json'}: unreadable: {exc}") from exc
    if not isinstance(payload, dict):
        raise ReportError(f"{run_dir / 'results.json'}: not a results object")
    raw_calls = payload.get("calls")
    raw_calls = raw_calls if isinstance(raw_calls, list) else []
    meta = {k: v for k, v in payload.items() if k != "calls"}
    calls: list[Call] = []
    anchors: set[str] = set()
    for raw in raw_calls:
        if not isinstance(raw, dict):
            continue
        record = record_from_dict(raw)
        anchor = _unique(f"call-{_slug(record.call_id or f'{record.policy}--{record.strategy}')}",
                         anchors)
        calls.append(Call(record, raw, anchor, _call_dir(run_dir, record)))
    calls.sort(key=lambda c: (c.policy, c.record.profile, strategy_order(c.strategy),
                              c.record.link_profile != IDEAL_LINK, c.record.link_profile))
    return Run(run_dir, meta, calls)


def record_from_dict(raw: Mapping[str, Any]) -> CallRecord:
    """A CallRecord from one entry of results.json, whatever its age: missing or
    ill-typed fields get neutral values, unknown fields are left in the dict."""
    record = CallRecord(
        topology=_text(raw.get("topology")), policy=_text(raw.get("policy")) or "?",
        strategy=_text(raw.get("strategy")) or "?", connected=raw.get("connected") is True,
        setup_s=number(raw.get("setup_s")), loss_pct=number(raw.get("loss_pct")),
        jitter_ms=number(raw.get("jitter_ms")), rtt_ms=number(raw.get("rtt_ms")),
        mos=number(raw.get("mos")), expected=_expectation_dict(raw.get("expected")),
        verdict=_text(raw.get("verdict")) or "unknown",
        outcome=_text(raw.get("outcome")) or "unknown",
        packets_sent=_int(raw.get("packets_sent")),
        packets_received=_int(raw.get("packets_received")),
        packets_lost=_int(raw.get("packets_lost")),
        bitrate_kbps=number(raw.get("bitrate_kbps")),
        selected_pair=_mapping(raw.get("selected_pair")),
        error=_text(raw.get("error")) or None,
        directions=[_direction(d) for d in _list(raw.get("directions"))
                    if isinstance(d, Mapping)],
        run_id=_text(raw.get("run_id")), call_id=_text(raw.get("call_id")),
        failure_kind=_text(raw.get("failure_kind")) or None,
        failed_at_s=number(raw.get("failed_at_s")),
        faults=[dict(f) for f in _list(raw.get("faults")) if isinstance(f, Mapping)],
        profile=_text(raw.get("profile")) or "webrtc",
        path=_text(raw.get("path")) or None,
        path_changes=[dict(c) for c in _list(raw.get("path_changes")) if isinstance(c, Mapping)],
        failure_detail=_text(raw.get("failure_detail")) or None,
        tunnel_up_s=number(raw.get("tunnel_up_s")),
        text_ok=raw["text_ok"] if isinstance(raw.get("text_ok"), bool) else None,
        link_profile=_text(raw.get("link_profile")) or IDEAL_LINK,
    )
    _copy_structured_fields(record, raw)
    return record


# Lists and mappings a record carries as they are (timelines, events, counters,
# files, PESQ): copied when they have the right shape, else left empty.
STRUCTURED_FIELDS = {"timeline": list, "timeline_reverse": list, "events": list,
                     "censor_counters": list, "files": dict, "pesq": dict, "judgement": dict,
                     "link_fidelity": list, "timing_s": dict, "text_counts": dict,
                     "link_profile_applied": dict}


def _copy_structured_fields(record: CallRecord, raw: Mapping[str, Any]) -> None:
    for name, kind in STRUCTURED_FIELDS.items():
        value = raw.get(name)
        if isinstance(value, kind):
            setattr(record, name, value)
    finished = number(raw.get("finished_at"))
    if finished is not None:
        record.finished_at = finished


def column_order(column: tuple[str, str]) -> tuple[int, str, tuple[int, str]]:
    """Profiles, then strategies, in the order the project defines them."""
    profile, strategy = column
    rank = PROFILES.index(profile) if profile in PROFILES else len(PROFILES)
    return (rank, profile, strategy_order(strategy))


def strategy_order(strategy: str) -> tuple[int, str]:
    """Strategies in the order the project defines them, unknown ones after."""
    return (STRATEGIES.index(strategy) if strategy in STRATEGIES else len(STRATEGIES), strategy)


# Verdicts with a colour of their own; any other (no-expectation, unknown) is "noexp".
VERDICT_CLASSES = ("pass", "fail", "error", "skipped")
# A cell holding several calls takes the colour of the first of these it holds.
CELL_PRIORITY = ("fail", "error", "skipped", "noexp")
VERDICT_MARKS = {"pass": "✓", "fail": "✗", "error": "⚠", "skipped": "⊘"}


def verdict_class(verdict: str) -> str:
    return verdict if verdict in VERDICT_CLASSES else "noexp"


# ---------------------------------------------------------------- the report

def write_report(run_dir: Path) -> Path:
    """Write <run>/report.html (run_dir may be results/latest) and return its path."""
    run = load_run(run_dir)
    path = run.dir / REPORT_NAME
    tmp = path.with_name(f".{REPORT_NAME}.tmp")
    tmp.write_text(render_report(run), encoding="utf-8")
    tmp.replace(path)
    return path


def render_report(run: Run) -> str:
    counts = tally([c.record for c in run.calls])
    raw_links = [_link(run.dir, name, name) for name in ("results.json", "junit.xml")
                 if (run.dir / name).is_file()]
    header = (f"<header><h1>callwall run {esc(run.run_id)}</h1>"
              f"<p class=\"lead\">{esc(_describe_run(run.meta))}</p>"
              f"{_counts(counts)}"
              + (f"<p class=\"lead\">raw data: {' · '.join(raw_links)}</p>" if raw_links else "")
              + "<nav><a href=\"#matrix\">matrix</a> · <a href=\"#unjudged\">calls that could "
                "not be judged</a> · <a href=\"#endpoints\">real endpoints vs aiortc</a> · "
                "<a href=\"#calls\">calls</a> · "
                "<a href=\"#environment\">environment</a></nav></header>")
    body = [header, _matrix(run), _unjudged(run), _endpoints(run), _calls(run),
            _environment(run.meta)]
    return page(f"callwall run {run.run_id}", "\n".join(body))


def _counts(counts: Tally) -> str:
    """The run's counts, apart: verdicts, errors, skipped calls; then the bases
    of the judged calls' expectations."""
    errors = ("1 call could not be judged" if counts.errors == 1
              else f"{counts.errors} calls could not be judged")
    skipped = f"{counts.skipped} skipped" + (f" (missing {', '.join(counts.missing)})"
                                             if counts.missing else "")
    badges = [("pass", f"{counts.passed} as expected"),
              ("fail", f"{counts.failed} not as expected"),
              ("error", f"{errors} (error)"), ("skipped", skipped)]
    if counts.no_expectation:
        badges.append(("noexp", f"{counts.no_expectation} without an expectation"))
    if counts.other:
        badges.append(("noexp", f"{counts.other} with an unknown verdict"))
    calls = f"{counts.total} call{'' if counts.total == 1 else 's'}: "
    line = " ".join(f"<span class=\"badge {css}\">{esc(text)}</span>" for css, text in badges)
    return (f"<p class=\"lead counts\"><strong>{esc(calls)}</strong>{line}</p>"
            f"<p class=\"lead bases\">{esc(counts.bases_summary())}</p>")


def _describe_run(meta: Mapping[str, Any]) -> str:
    parts = [f"{meta.get('kind') or 'run'}"]
    if meta.get("topology"):
        parts.append(f"topology {meta['topology']}")
    started, finished = number(meta.get("started")), number(meta.get("finished"))
    if started is not None:
        parts.append(f"started {_when(started)}")
    if started is not None and finished is not None:
        parts.append(f"took {finished - started:.0f} s")
    return ", ".join(parts)


def _matrix(run: Run) -> str:
    policies = sorted({c.row for c in run.calls},
                      key=lambda row: (row[0], row[1] != IDEAL_LINK, row[1]))
    columns = sorted({c.column for c in run.calls}, key=column_order)
    by_cell: dict[tuple[tuple[str, str], tuple[str, str]], list[Call]] = {}
    for call in run.calls:
        by_cell.setdefault((call.row, call.column), []).append(call)
    head = "".join(f"<th scope=\"col\"><span class=\"muted\">{esc(p)}</span><br>{esc(s)}</th>"
                   for p, s in columns)
    rows = []
    for policy in policies:
        cells = []
        for column in columns:
            calls = by_cell.get((policy, column), [])
            if not calls:
                cells.append("<td class=\"cell notrun\"><span class=\"entry\">not run</span></td>")
                continue
            verdicts = {verdict_class(c.record.verdict) for c in calls}
            css = next((v for v in CELL_PRIORITY if v in verdicts), "pass")
            entries = "".join(_matrix_entry(c) for c in calls)
            cells.append(f"<td class=\"cell {css}\">{entries}</td>")
        rows.append(f"<tr><th scope=\"row\">{_row_label(policy)}</th>{''.join(cells)}</tr>")
    if not run.calls:
        table = "<p class=\"muted\">This run has no call records.</p>"
    else:
        table = (f"<div class=\"scroll\"><table class=\"matrix\"><thead><tr>"
                 "<th scope=\"col\">policy \\ profile, strategy</th>"
                 f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    legend = ("<p class=\"legend\"><span class=\"swatch pass\"></span> as expected "
              "<span class=\"swatch fail\"></span> not as expected "
              "<span class=\"swatch error\"></span> could not be judged (error) "
              "<span class=\"swatch skipped\"></span> skipped (not placed) "
              "<span class=\"swatch noexp\"></span> no expectation "
              "<span class=\"swatch notrun\"></span> not run · outcome, E-model MOS, "
              "PESQ MOS-LQO, setup time; the policy's expectation with its basis "
              "[report: sources | mechanism | observed]; the rules that decided it, "
              "with the packets each counted</p>")
    return (f"<section id=\"matrix\"><h2>Policy × profile × strategy</h2>{legend}{table}"
            "</section>")


def _row_label(row: tuple[str, str]) -> str:
    """A matrix row's header: the policy, and its link profile unless ideal."""
    policy, link = row
    if link == IDEAL_LINK:
        return esc(policy)
    return f"{esc(policy)}<br><span class=\"muted\">link {esc(link)}</span>"


def _matrix_entry(call: Call) -> str:
    record = call.record
    css = verdict_class(record.verdict)
    mark = VERDICT_MARKS.get(css, "–")
    if css == "skipped":
        figures = "not placed: " + ("; ".join(judgement_reasons(record)) or "no reason recorded")
    else:
        figures = (f"MOS {_fmt(record.mos, 2)} · PESQ {_pesq_short(call.raw)} · "
                   f"setup {_fmt(record.setup_s, 2, ' s')}")
    outcome = ("" if record.outcome == record.verdict
               else f" · <span class=\"outcome\">{esc(record.outcome)}</span>")
    outcome += _rare_short(call)
    parts = [f"<span class=\"verdict\">{mark} {esc(record.verdict.replace('-', ' '))}</span>"
             f"{outcome}",
             f"<span class=\"figures\">{esc(figures)}</span>",
             f"<span class=\"expected\">expected: {esc(_expectation_short(record))}</span>"]
    measured = (record.expected or {}).get("measured")
    if expectation_basis(record.expected) == "observed" and measured:
        parts.append(f"<span class=\"measured\">measured: {esc(measured)}</span>")
    decided = _decided_short(record)
    if decided:
        parts.append(f"<span class=\"decided\">decided by {esc(decided)}</span>")
    why = headline_reason(record)
    if css in ("fail", "error") and why:
        parts.append(f"<span class=\"why\">{esc(why)}</span>")
    return (f"<a class=\"entry {css}\" href=\"#{call.anchor}\" data-call=\"{esc(call.anchor)}\">"
            f"{''.join(parts)}</a>")


def _expectation_short(record: CallRecord) -> str:
    """The expectation with its basis: "fails [mechanism]", "connects mos>=4.0
    [report: rkn-2025]", "degraded [observed]" (the measurement on its own line)."""
    if not record.expected:
        return "none"
    text = expected_text(record, basis=False)
    basis = expectation_basis(record.expected)
    if basis == "report":
        source = expectation_source(record.expected)
        return f"{text} [report: {source or 'no source'}]"
    return f"{text} [{basis}]" if basis else f"{text} [basis not recorded]"


def _decided_short(record: CallRecord) -> str:
    """ "stun-to-relays=14 packets, link"; "" when the expectation names no cause."""
    parts = [f"{rule}={_count(packets)} packets" for rule, packets, _ in deciding_rules(record)]
    causes = (record.expected or {}).get("decided_by")
    if isinstance(causes, list) and LINK_CAUSE in causes:
        parts.append("link impairment")
    return ", ".join(parts)


def _unjudged(run: Run) -> str:
    """Errors and skipped calls, apart from the verdicts, each with its reasons."""
    calls = [c for c in run.calls if c.record.verdict in ("error", "skipped")]
    title = "<h2>Calls that could not be judged</h2>"
    if not calls:
        return (f"<section id=\"unjudged\">{title}<p class=\"muted\">none: every call was "
                "judged (no error, nothing skipped)</p></section>")
    intro = ("<p class=\"legend\"><strong>error</strong>: the harness or a tool broke, so the "
             "call says nothing about the censor (never a pass). <strong>skipped</strong>: the "
             "call was not placed, because a tool it needs is missing.</p>")
    rows = []
    for call in calls:
        record = call.record
        css = verdict_class(record.verdict)
        reasons = judgement_reasons(record) or [record.error or "no reason recorded"]
        items = "".join(f"<li>{esc(r)}</li>" for r in reasons)
        rows.append(f"<tr class=\"{css}\"><td><a href=\"#{call.anchor}\">{esc(call.title)}</a>"
                    f"</td><td><span class=\"badge {css}\">{esc(record.verdict)}</span></td>"
                    f"<td>{esc(_expectation_short(record))}</td>"
                    f"<td><ul class=\"reasons\">{items}</ul></td></tr>")
    table = ("<table class=\"unjudged\"><thead><tr><th>call</th><th>status</th><th>expected</th>"
             f"<th>reasons</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return f"<section id=\"unjudged\">{title}{intro}{table}</section>"


def _endpoints(run: Run) -> str:
    """Per policy, the real-endpoint cells (Chromium, baresip, descriptors)
    whose expected outcome differs from the aiortc client's with the same
    strategy, each with the expectation's why (harness.report.endpoints)."""
    title = "<h2>Where the real endpoints differ from aiortc</h2>"
    differences = endpoint_differences(c.record for c in run.calls)
    if not differences:
        return (f"<section id=\"endpoints\">{title}<p class=\"muted\">none: no call of this "
                "run with a real endpoint is expected to end otherwise than the aiortc (webrtc) "
                "client with the same strategy</p></section>")
    rows = [(d.policy, f"{d.profile} / {d.strategy}", d.webrtc_outcome, d.expected_outcome,
             d.observed_outcome, d.why) for d in differences]
    table = _table(("policy", "profile / strategy", "webrtc expects", "expected",
                    "observed", "why"), rows, nowrap=(0, 1))
    return f"<section id=\"endpoints\">{title}{table}</section>"


def _calls(run: Run) -> str:
    sections = [_call_section(run.dir, call) for call in run.calls]
    index = "".join(f"<li><a href=\"#{c.anchor}\">{esc(c.title)}</a> "
                    f"<span class=\"badge {verdict_class(c.record.verdict)}\">"
                    f"{esc(c.record.verdict)}</span></li>" for c in run.calls)
    return (f"<section id=\"calls\"><h2>Calls</h2><ul class=\"index\">{index}</ul>"
            f"{''.join(sections)}</section>")


def _call_section(run_dir: Path, call: Call) -> str:
    record, raw = call.record, call.raw
    css = verdict_class(record.verdict)
    heading = (f"<h3>{esc(call.title)} <span class=\"badge {css}\">{esc(record.verdict)}</span>"
               f" <span class=\"muted\">{esc(record.outcome)}</span></h3>")
    heading += _decided_line(record)
    heading += _fidelity_line(record)
    if record.error:
        tone = "errtext" if css in ("fail", "error") else "errtext muted"
        heading += f"<p class=\"{tone}\">peer error: {esc(record.error)}</p>"
    if css == "skipped":
        parts = [heading, "<div class=\"panels\">",
                 f"<div class=\"wide\"><h4>Judgement</h4>{_judgement(call)}</div>",
                 f"<div><h4>Expectation</h4>{_expectation_table(record)}</div>", "</div>"]
        return (f"<section class=\"call {css}\" id=\"{esc(call.anchor)}\">{''.join(parts)}"
                "</section>")
    parts = [
        heading,
        "<div class=\"panels\">",
        f"<div class=\"wide\"><h4>Judgement</h4>{_judgement(call)}</div>",
        f"<div><h4>Deciding rules</h4>{_deciding_table(call)}"
        f"<h4>Failures of both peers</h4>{_failures_table(call)}</div>",
        "</div>",
        "<div class=\"panels\">",
        f"<div class=\"wide\"><h4>Key figures</h4>{_key_figures(call)}</div>",
        f"<div><h4>Censor rule counters</h4>{_counters(raw)}<h4>Events</h4>{_events(raw)}</div>",
        f"<div><h4>Recordings and files</h4>{_files(run_dir, call)}</div>",
        "</div>",
        f"<h4>Timeline</h4>{_timeline_figure(call)}",
        f"<div class=\"panels\">{_directions(record.directions)}{_faults(record.faults)}</div>",
    ]
    return f"<section class=\"call {css}\" id=\"{esc(call.anchor)}\">{''.join(parts)}</section>"


def _fidelity_line(record: CallRecord) -> str:
    """Under a call's heading, when the link emulator missed its tolerance on
    a link during the call: which, and by how much, so that a figure measured
    on an overloaded machine is not mistaken for the censor's effect."""
    missed = [row for row in record.link_fidelity
              if isinstance(row, Mapping) and row.get("missed")]
    if not missed:
        return ""
    parts = [f"{row.get('link')}: {row.get('over_tolerance')} of {row.get('packets')} packets "
             f"later than {row.get('tolerance_us')} us (p99 {row.get('p99_late_us')} us)"
             for row in missed]
    return ("<p class=\"errtext\">link emulator late — these figures are partly the "
            f"machine's: {esc('; '.join(parts))}</p>")


def _decided_line(record: CallRecord) -> str:
    """Under a call's heading: the rules that decided its verdict and what each
    counted (a negative expectation carries its cause), or, for a verdict that
    is not a pass, its first reason."""
    rules = deciding_rules(record)
    parts = [f"{rule} counted {_count(packets)} packets ({_count(size)} bytes)"
             for rule, packets, size in rules]
    causes = (record.expected or {}).get("decided_by")
    if isinstance(causes, list) and LINK_CAUSE in causes:
        parts.append("link: the topology's link impairment")
    text = ""
    if parts:
        text += (f"<p class=\"decided\"><strong>decided by</strong> {esc('; '.join(parts))}"
                 "</p>")
    why = headline_reason(record)
    if record.verdict not in ("pass", "no-expectation") and why:
        text += f"<p class=\"why {verdict_class(record.verdict)}\">{esc(why)}</p>"
    return text


def _rare_short(call: Call) -> str:
    """' · rare outcome (declared about X % of calls)' where the call passed
    as its expectation's declared rare outcome."""
    judgement = call.raw.get("judgement")
    if not isinstance(judgement, Mapping) or judgement.get("rare") is not True:
        return ""
    rarely = (call.record.expected or {}).get("rarely")
    share = rarely.get("share_pct") if isinstance(rarely, Mapping) else None
    declared = f", declared about {share:g} % of calls" if isinstance(share, (int, float)) else ""
    return f" · <span class=\"outcome\">rare outcome{esc(declared)}</span>"


def _judgement(call: Call) -> str:
    """The judge's verdict, outcome and reasons."""
    record = call.record
    raw = call.raw.get("judgement")
    if not isinstance(raw, Mapping):
        return (f"<p>verdict <strong>{esc(record.verdict)}</strong>, outcome "
                f"<strong>{esc(record.outcome)}</strong></p>"
                f"<p class=\"muted\">reasons {NOT_RECORDED} (a record older than the judge's "
                "evidence)</p>")
    reasons = judgement_reasons(record)
    items = ("<ul class=\"reasons\">" + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>"
             if reasons else "<p class=\"muted\">no reason given</p>")
    return (f"<p>verdict <span class=\"badge {verdict_class(record.verdict)}\">"
            f"{esc(record.verdict)}</span> · outcome <strong>{esc(record.outcome)}</strong> · "
            f"expected <strong>{esc(_expectation_short(record))}</strong></p>{items}")


def _deciding_table(call: Call) -> str:
    """The expectation's decided_by rules and what each counted; a rule that
    counted nothing is marked (it did not cause the call's fate)."""
    record = call.record
    if not isinstance(call.raw.get("judgement"), Mapping):
        return f"<p class=\"muted\">{NOT_RECORDED}</p>"
    rules = deciding_rules(record)
    causes = (record.expected or {}).get("decided_by")
    link = isinstance(causes, list) and LINK_CAUSE in causes
    if not rules and not link:
        why = ("a connects expectation names no cause" if (record.expected or {}).get(
            "outcome") == "connects" else "none declared")
        return f"<p class=\"muted\">{esc(why)}</p>"
    rows = []
    for rule, packets, size in rules:
        css = " class=\"zero\"" if not packets else ""
        rows.append(f"<tr{css}><td>{esc(rule)}</td><td class=\"num\">{_count(packets)}</td>"
                    f"<td class=\"num\">{_count(size)}</td></tr>")
    if link:
        rows.append("<tr><td>link</td><td colspan=\"2\">the topology's link impairment</td>"
                    "</tr>")
    return ("<table class=\"deciding\"><thead><tr><th>rule</th><th>packets</th><th>bytes</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _failures_table(call: Call) -> str:
    if not isinstance(call.raw.get("judgement"), Mapping):
        return f"<p class=\"muted\">{NOT_RECORDED}</p>"
    failures = judgement_failures(call.record)
    if not failures:
        return "<p class=\"muted\">none</p>"
    rows = [(_text(f.get("role")) or "?", _text(f.get("kind")) or "?",
             _fmt(number(f.get("at_s")), 2, " s"),
             DASH if not isinstance(f.get("after_media"), bool)
             else ("yes" if f["after_media"] else "no")) for f in failures]
    return _table(("peer", "kind", "at", "after media"), rows, numeric=(2,), nowrap=(1,))


def _expectation_table(record: CallRecord) -> str:
    expected = record.expected
    if not expected:
        return "<p class=\"muted\">none</p>"
    return _table(("", ""), _expectation_rows(record), header=False)


def _expectation_rows(record: CallRecord) -> list[tuple[str, str]]:
    """The expectation, its basis (with its sources or its measurement), the
    rules it names as its cause and the failure kinds it accepts."""
    expected = record.expected or {}
    basis = expectation_basis(expected)
    if basis == "report":
        basis_text = f"report (sources: {expectation_source(expected) or 'none given'})"
    elif basis == "mechanism":
        basis_text = "mechanism (derived from the rules alone)"
    elif basis == "observed":
        basis_text = f"observed (measured: {_text(expected.get('measured')) or 'not kept'})"
    else:
        basis_text = basis or NOT_RECORDED
    rows = [("expected", expected_text(record, basis=False)), ("basis", basis_text)]
    for key, label in (("decided_by", "decided by (declared)"), ("accepts", "accepts")):
        value = expected.get(key)
        if isinstance(value, list) and value:
            rows.append((label, ", ".join(str(v) for v in value)))
    if expected.get("why"):
        rows.append(("why", _text(expected.get("why"))))
    bound = record.judgement.get("mos_bound")
    if isinstance(bound, Mapping):
        rows.append(("MOS bound applied", _mos_bound_text(bound)))
    return rows


def _mos_bound_text(bound: Mapping[str, Any]) -> str:
    """Which MOS bound a connects call was held to on its link profile, and why."""
    value = bound.get("min_mos")
    head = "none" if not isinstance(value, int | float) else f"{value:g}"
    source = "the link profile's" if bound.get("source") == "link" else "the policy's"
    return f"{head} ({source}): {_text(bound.get('why'))}"


def _key_figures(call: Call) -> str:
    record, raw = call.record, call.raw
    pair = record.selected_pair
    path = esc(DASH if not pair else path_text(pair))
    if pair and (pair.get("local_address") or pair.get("remote_address")):
        path += (f"<br><span class=\"small muted\">{esc(pair.get('local_address', '?'))} → "
                 f"{esc(pair.get('remote_address', '?'))}</span>")
    packets = " / ".join(_count(v) for v in (record.packets_sent, record.packets_received,
                                             record.packets_lost))
    expectation = ([(k, esc(v)) for k, v in _expectation_rows(record)] if record.expected
                   else [("expected", "none")])
    tunnel = (NOT_RECORDED if "tunnel_up_s" not in raw
              else _fmt(record.tunnel_up_s, 2, " s (part of the setup time)")
              if record.tunnel_up_s is not None else DASH)
    rows = [
        ("outcome", esc(record.outcome)),
        ("link profile", esc(_link_profile_text(record))),
        *expectation,
        ("verdict", esc(record.verdict)),
        ("selected path", path),
        ("setup time", esc(_fmt(record.setup_s, 2, " s"))),
        ("tunnel up", esc(tunnel)),
        ("loss", esc(_fmt(record.loss_pct, 1, " %"))),
        ("jitter", esc(_fmt(record.jitter_ms, 1, " ms"))),
        ("RTT", esc(_fmt(record.rtt_ms, 1, " ms"))),
        ("bitrate", esc(_fmt(record.bitrate_kbps, 1, " kbit/s"))),
        ("MOS (E-model)", esc(_fmt(record.mos, 2))),
        ("PESQ MOS-LQO", esc(_pesq_long(raw))),
        ("packets sent / received / lost", esc(packets)),
        ("text messages", esc(_text_messages(raw))),
        ("failure", esc(_failure(raw))),
    ]
    body = "".join(f"<tr><th scope=\"row\">{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class=\"figures\">{body}</table>"


def _link_profile_text(record: CallRecord) -> str:
    """The cell's link profile, and what it put on the access link."""
    applied = record.link_profile_applied
    if record.link_profile == IDEAL_LINK or not applied:
        return record.link_profile
    seeds = applied.get("directions")
    seed_text = (", seeds " + ", ".join(f"{k} {v}" for k, v in seeds.items())
                 if isinstance(seeds, Mapping) and seeds else "")
    return (f"{record.link_profile}: {_text(applied.get('impairment'))} on both directions "
            f"of the access link{seed_text}")


def _text_messages(raw: Mapping[str, Any]) -> str:
    """Text over the app's chat server during the call: whether it worked
    both ways, and each side's messages sent / received."""
    if "text_ok" not in raw:
        return NOT_RECORDED
    ok = raw.get("text_ok")
    counts = raw.get("text_counts") if isinstance(raw.get("text_counts"), Mapping) else {}
    if ok is None and not counts:
        return "not measured"
    head = "delivered both ways" if ok is True else "NOT delivered" if ok is False \
        else "not judged"
    sides = [f"{role} sent {_count(_int(counts.get(f'{role}_sent')))}, received "
             f"{_count(_int(counts.get(f'{role}_received')))}"
             for role in ("caller", "callee") if counts]
    return head + (f" ({'; '.join(sides)})" if sides else "")


def _failure(raw: Mapping[str, Any]) -> str:
    if "failure_kind" not in raw and "failed_at_s" not in raw:
        return NOT_RECORDED
    kind = _text(raw.get("failure_kind"))
    when = number(raw.get("failed_at_s"))
    if not kind and when is None:
        return "none"
    text = kind or "failed"
    return text + (f" at {when:.2f} s" if when is not None else " (time not recorded)")


def _pesq(raw: Mapping[str, Any]) -> tuple[float | None, str] | None:
    value = raw.get("pesq")
    if not isinstance(value, Mapping):
        return None
    return number(value.get("mos_lqo")), _text(value.get("status"))


def _pesq_short(raw: Mapping[str, Any]) -> str:
    pesq = _pesq(raw)
    return DASH if pesq is None else _fmt(pesq[0], 2)


def _pesq_long(raw: Mapping[str, Any]) -> str:
    if "pesq" not in raw:
        return NOT_RECORDED
    pesq = _pesq(raw)
    if pesq is None:
        return DASH
    score, status = pesq
    return _fmt(score, 2) + (f" ({status})" if status else "")


def _timeline_figure(call: Call) -> str:
    raw = call.raw
    png = timeline_png(raw.get("timeline"), raw.get("timeline_reverse"), raw.get("events"),
                       failed_at_s=raw.get("failed_at_s"), failure_kind=raw.get("failure_kind"))
    if png is None:
        return "<p class=\"note\">no timeline recorded</p>"
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img class=\"timeline\" src=\"data:image/png;base64,{data}\" "
            f"width=\"800\" height=\"300\" alt=\"timeline of {esc(call.title)}: packets received "
            f"and lost per second, MOS and jitter over time\"><figcaption>left: packets received "
            f"(line) and lost (shaded) per second; right: MOS (blue, left axis) and jitter "
            f"(orange, right axis). Solid: caller→callee, dashed: callee→caller. Dotted "
            f"lines: events.</figcaption></figure>")


def _events(raw: Mapping[str, Any]) -> str:
    if "events" not in raw or raw.get("events") is None:
        return f"<p class=\"muted\">{NOT_RECORDED}</p>"
    events = [e for e in _list(raw.get("events")) if isinstance(e, Mapping)]
    if not events:
        return "<p class=\"muted\">none</p>"
    events.sort(key=lambda e: number(e.get("t")) or 0.0)
    rows = [(_fmt(number(e.get("t")), 2, " s"), _text(e.get("kind")) or "?",
             _text(e.get("detail"))) for e in events]
    return _table(("t", "kind", "detail"), rows, numeric=(0,), nowrap=(1,))


def _counters(raw: Mapping[str, Any]) -> str:
    counters = raw.get("censor_counters")
    if not isinstance(counters, list):
        return f"<p class=\"muted\">{NOT_RECORDED}</p>"
    rows = [(_text(c.get("rule")) or "?", _count(_int(c.get("packets"))),
             _count(_int(c.get("bytes")))) for c in counters if isinstance(c, Mapping)]
    if not rows:
        return "<p class=\"muted\">no rule counted a packet</p>"
    return _table(("rule", "packets", "bytes"), rows, numeric=(1, 2))


def _directions(directions: Sequence[Direction]) -> str:
    if not directions:
        return ""
    rows = [(f"received by {d.receiver}", _count(d.packets_received), _count(d.packets_lost),
             _fmt(d.loss_pct, 1), _fmt(d.jitter_ms, 1), _fmt(d.bitrate_kbps, 1),
             _frames(d), _fmt(d.window_s, 1, " s"),
             _fmt(d.mos, 2), _fmt(d.r_factor, 1)) for d in directions]
    table = _table(("direction", "packets", "lost", "loss %", "jitter ms", "kbit/s",
                    "frames decoded / expected", "media", "MOS", "R"),
                   rows, numeric=(1, 2, 3, 4, 5, 6, 7, 8, 9), nowrap=(0,), css="nowrap")
    return f"<div class=\"fit\"><h4>Per direction</h4>{table}</div>"


def _frames(direction: Direction) -> str:
    """ "1480 / 1500 (98.7 %)": frames the receiver decoded against those a full
    window carries at the sender's frame duration."""
    got, expected = direction.frames_received, direction.frames_expected
    if got is None and expected is None:
        return DASH
    text = f"{_count(got)} / {_count(expected)}"
    if got is not None and expected:
        text += f" ({100.0 * got / expected:.1f} %)"
    return text


def _faults(faults: Sequence[Mapping[str, Any]]) -> str:
    if not faults:
        return ""
    rows = []
    for fault in faults:
        done = "yes" if fault.get("performed") else "no"
        detail = _text(fault.get("error")) or _text(fault.get("detail"))
        rows.append((_text(fault.get("kind")) or "?", done,
                     _fmt(number(fault.get("started_s")), 2, " s"),
                     _fmt(number(fault.get("done_s")), 2, " s"),
                     _fmt(number(fault.get("ended_s")), 2, " s"), detail))
    table = _table(("fault", "performed", "started", "done", "ended", "detail"), rows,
                   numeric=(2, 3, 4), nowrap=(0,))
    return f"<div><h4>Injected faults</h4>{table}</div>"


def _files(run_dir: Path, call: Call) -> str:
    """The call's recordings (with players), capture and raw files, as links
    relative to the run directory; a path the record names that isn't there
    (or lies outside the run) is shown, not linked."""
    files = call.raw.get("files")
    files = files if isinstance(files, Mapping) else {}
    items: list[str] = []
    seen: set[str] = set()
    named_wav, named_pcap = files.get("received_wav"), files.get("pcap")
    for name in (named_wav, named_pcap):
        if isinstance(name, str) and name and _inside(run_dir, name) is None:
            why = "missing" if _within(run_dir, name) else "outside the run directory"
            items.append(f"<li>{esc(name)} <span class=\"muted\">({why})</span></li>")
    listed = [n for n in (named_wav, named_pcap) if isinstance(n, str) and n]
    wavs = [n for n in listed if _inside(run_dir, n) is not None and n.endswith(WAV_SUFFIXES)]
    pcaps = [n for n in listed if _inside(run_dir, n) is not None and n not in wavs]
    others: list[str] = []
    if call.call_dir is not None:
        for path in sorted((run_dir / call.call_dir).iterdir()):
            if not path.is_file():
                continue
            rel = f"{call.call_dir}/{path.name}"
            if path.suffix in WAV_SUFFIXES:
                wavs.append(rel)
            elif path.suffix in PCAP_SUFFIXES:
                pcaps.append(rel)
            else:
                others.append(rel)
    for rel in wavs:
        key = str(_inside(run_dir, rel))
        if key in seen:
            continue
        seen.add(key)
        items.append(f"<li>{_link(run_dir, rel, Path(rel).name)}<br><audio controls "
                     f"preload=\"none\" src=\"{_href(rel)}\"></audio></li>")
    for rel in pcaps:
        key = str(_inside(run_dir, rel))
        if key not in seen:
            seen.add(key)
            items.append(f"<li>capture: {_link(run_dir, rel, Path(rel).name)}</li>")
    if "pcap" in files and named_pcap is None:
        items.append("<li class=\"muted\">no packet capture</li>")
    if others:
        items.append("<li>raw: " + " · ".join(_link(run_dir, rel, Path(rel).name)
                                                for rel in others) + "</li>")
    if not items:
        return f"<p class=\"muted\">no files ({NOT_RECORDED})</p>"
    return f"<ul class=\"files\">{''.join(items)}</ul>"


def _environment(meta: Mapping[str, Any]) -> str:
    started, finished = number(meta.get("started")), number(meta.get("finished"))
    run_rows = [
        ("run", _text(meta.get("run_id")) or DASH),
        ("kind", _text(meta.get("kind")) or DASH),
        ("topology", _text(meta.get("topology")) or DASH),
        ("started", _when(started) if started is not None else DASH),
        ("finished", _when(finished) if finished is not None else DASH),
        ("host", _text(meta.get("host")) or DASH),
        ("kernel", _text(meta.get("kernel")) or DASH),
        ("results schema", _text(meta.get("schema")) or DASH),
    ]
    env = meta.get("environment")
    parts = [f"<div><h4>Run</h4>{_table(('', ''), run_rows, header=False)}</div>"]
    if not isinstance(env, Mapping):
        parts.append(f"<div><h4>Versions, backends, capabilities</h4>"
                     f"<p class=\"muted\">{NOT_RECORDED}</p></div>")
    else:
        if env.get("commit"):
            run_rows.append(("commit", _text(env.get("commit"))))
        if env.get("kernel") and env.get("kernel") != meta.get("kernel"):
            run_rows.append(("kernel (environment)", _text(env.get("kernel"))))
        parts[0] = f"<div><h4>Run</h4>{_table(('', ''), run_rows, header=False)}</div>"
        for title, key in (("Versions", "versions"), ("Backends", "backends")):
            values = env.get(key)
            if isinstance(values, Mapping) and values:
                rows = [(str(k), _text(v) or DASH) for k, v in sorted(values.items())]
                parts.append(f"<div><h4>{title}</h4>{_table(('name', 'value'), rows)}</div>")
            else:
                parts.append(f"<div><h4>{title}</h4><p class=\"muted\">{NOT_RECORDED}</p></div>")
        parts.append(f"<div><h4>Capabilities</h4>{_capabilities(env.get('capabilities'))}</div>")
    return (f"<section id=\"environment\"><h2>Environment</h2><div class=\"columns\">"
            f"{''.join(parts)}</div></section>")


def _capabilities(value: object) -> str:
    if not isinstance(value, list):
        return f"<p class=\"muted\">{NOT_RECORDED}</p>"
    rows = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        status = _text(item.get("status")) or "?"
        css = "pass" if status == "ok" else "fail" if status == "missing" else "noexp"
        rows.append(f"<tr><td>{esc(_text(item.get('name')) or '?')}</td>"
                    f"<td class=\"status {css}\">{esc(status)}</td>"
                    f"<td>{esc(_text(item.get('detail')))}</td></tr>")
    if not rows:
        return "<p class=\"muted\">none</p>"
    return ("<table><thead><tr><th>name</th><th>status</th><th>detail</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


# ---------------------------------------------------------------- HTML helpers

STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
  sans-serif; color: #1d2329; background: #fff; max-width: 1200px; margin: 0 auto;
  padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .8rem; padding-bottom: .3rem;
  border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1rem; margin: 0 0 .6rem; }
table + h3, ul + h3, p + h3 { margin-top: 1.4rem; }
h4 { font-size: .95rem; margin: 1rem 0 .4rem; color: #444c56; }
a { color: #0b5cad; }
p.lead { margin: .2rem 0; }
nav { margin-top: .6rem; }
table { border-collapse: collapse; margin: .2rem 0; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.figures th { white-space: nowrap; }
div.scroll { overflow-x: auto; max-width: 100%; }
table.matrix td.cell { padding: 0; min-width: 12rem; }
table.matrix th[scope=row] { white-space: nowrap; }
a.entry, span.entry { display: block; padding: .45rem .6rem; color: inherit;
  text-decoration: none; }
a.entry + a.entry { border-top: 1px solid #d0d7de; }
a.entry:hover { outline: 2px solid #0b5cad; outline-offset: -2px; }
.entry .verdict { font-weight: 700; }
.entry .outcome { font-weight: 600; }
.entry .figures, .entry .expected { display: block; font-size: .85rem;
  font-variant-numeric: tabular-nums; }
.entry .expected { color: #57606a; }
.pass { background: #dff3e4; }
.fail { background: #fbe1e1; }
.noexp { background: #eef0f2; }
.error { background: #ffe8c2; }
.skipped { background: repeating-linear-gradient(135deg, #eef0f6 0 6px, #e1e5ef 6px 12px); }
.notrun { background: #fafafa; color: #8c959f; }
td.cell.pass { border-left: 5px solid #1e7b34; }
td.cell.fail { border-left: 5px solid #b42318; }
td.cell.noexp { border-left: 5px solid #8c959f; }
td.cell.error { border-left: 5px solid #b35c00; }
td.cell.skipped { border-left: 5px dashed #57606a; }
.entry.pass .verdict { color: #1e7b34; }
.entry.fail .verdict { color: #b42318; }
.entry.error .verdict { color: #8a4600; }
.entry.skipped .verdict { color: #57606a; }
.entry .measured, .entry .decided, .entry .why { display: block; font-size: .8rem; }
.entry .decided { color: #24292f; font-weight: 600; }
.entry .why { color: #57606a; font-style: italic; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: -.1em;
  border: 1px solid #d0d7de; margin-left: .6em; }
.legend { font-size: .85rem; color: #57606a; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 3px; font-size: .8rem;
  font-weight: 600; color: #fff; vertical-align: .1em; }
.badge.pass { background: #1e7b34; }
.badge.fail { background: #b42318; }
.badge.noexp { background: #6e7781; }
.badge.error { background: #b35c00; }
.badge.skipped { background: #57606a; }
p.counts .badge { font-size: .85rem; padding: .1rem .5rem; margin-right: .3rem; }
ul.index { columns: 3 16rem; padding-left: 1.2rem; }
section.call { border: 1px solid #d0d7de; border-left-width: 6px; border-radius: 4px;
  padding: 1rem 1.2rem; margin: 1.2rem 0; background: #fff; }
section.call.pass { border-left-color: #1e7b34; }
section.call.fail { border-left-color: #b42318; }
section.call.noexp { border-left-color: #8c959f; }
section.call.error { border-left-color: #b35c00; background: #fff; }
section.call.skipped { border-left-color: #57606a; border-left-style: dashed;
  background: #fff; }
.columns { display: flex; flex-wrap: wrap; gap: 0 2.5rem; }
.columns > div { min-width: 18rem; }
.panels { display: flex; flex-wrap: wrap; gap: 0 2rem; }
.panels > div { flex: 1 1 17rem; min-width: 0; }
.panels > div.wide { flex: 1.5 1 24rem; }
.panels > div.fit { flex: 0 0 auto; }
.nowrap, table.nowrap th { white-space: nowrap; }
table.figures { width: 100%; }
.small { font-size: .8rem; }
.muted, .note { color: #6e7781; }
.note { font-style: italic; border: 1px dashed #d0d7de; padding: .6rem .8rem;
  display: inline-block; margin: 0; }
.errtext { color: #b42318; margin: 0 0 .4rem; }
.errtext.muted { color: #6e7781; }
tr.errorflip td:nth-child(4) { font-weight: 600; }
p.decided { margin: 0 0 .3rem; }
p.why { margin: 0 0 .4rem; padding: .2rem .5rem; display: inline-block; border-radius: 3px; }
ul.reasons { margin: .2rem 0; padding-left: 1.2rem; }
table.deciding tr.zero td { color: #b42318; font-weight: 600; }
table.unjudged td { vertical-align: top; }
table.unjudged ul.reasons { margin: 0; }
figure { margin: 0; }
img.timeline { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: .8rem; color: #57606a; }
ul.files { padding-left: 1.2rem; margin: .2rem 0; }
ul.files li { margin: .25rem 0; }
audio { height: 2rem; margin-top: .2rem; }
td.status { font-weight: 600; }
tr.changed td:first-child { font-weight: 700; }
footer { margin-top: 3rem; font-size: .8rem; color: #6e7781; }
"""


def page(title: str, body: str, footer: str = "Generated by callwall from results.json.") -> str:
    """A complete, self-contained HTML page."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<footer>{esc(footer)}</footer>\n</body>\n</html>\n")


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (),
           header: bool = True, nowrap: Sequence[int] = (), css: str = "") -> str:
    """A table of text cells; `numeric` columns are right-aligned, `nowrap` ones don't wrap."""
    head = ("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>"
            if header else "")
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if not header and i == 0:
                cells.append(f"<th scope=\"row\">{esc(cell)}</th>")
            else:
                classes = " ".join(name for name, columns in (("num", numeric),
                                                              ("nowrap", nowrap)) if i in columns)
                cells.append(f"<td class=\"{classes}\">{esc(cell)}</td>" if classes
                             else f"<td>{esc(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    attr = f" class=\"{css}\"" if css else ""
    return f"<table{attr}>{head}<tbody>{''.join(body)}</tbody></table>"


def _within(run_dir: Path, rel: str) -> bool:
    """Whether the relative path `rel` stays inside the run directory."""
    if not rel or rel.startswith(("/", "\\")) or "\\" in rel or ":" in rel:
        return False
    return (run_dir / rel).resolve().is_relative_to(run_dir.resolve())


def _inside(run_dir: Path, rel: str) -> Path | None:
    """The file `rel` names inside the run directory, or None when it is
    absolute, escapes the directory or does not exist."""
    if not _within(run_dir, rel):
        return None
    path = (run_dir / rel).resolve()
    return path if path.is_file() else None


def _href(rel: str) -> str:
    return esc(quote(rel, safe="/"))


def _link(run_dir: Path, rel: str, text: str) -> str:
    if _inside(run_dir, rel) is None:
        return f"{esc(text)} <span class=\"muted\">(missing)</span>"
    return f"<a href=\"{_href(rel)}\">{esc(text)}</a>"


def _call_dir(run_dir: Path, record: CallRecord) -> str | None:
    for name in (record.call_id, f"{record.policy}--{record.strategy}"):
        if name and "/" not in name and name not in (".", "..") \
                and (run_dir / "calls" / name).is_dir():
            return f"calls/{name}"
    return None


def _fmt(value: float | None, digits: int, unit: str = "") -> str:
    return DASH if value is None else number_text(value, digits) + unit


def _count(value: int | None) -> str:
    return DASH if value is None else str(value)


def _when(epoch: float) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return str(epoch)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "call"


def _unique(anchor: str, taken: set[str]) -> str:
    candidate, n = anchor, 2
    while candidate in taken:
        candidate, n = f"{anchor}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    finite = number(value)
    return None if finite is None else int(finite)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _mapping(value: object) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) and value else None


def _expectation_dict(value: object) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or "outcome" not in value:
        return None
    return dict(value)


def _direction(raw: Mapping[str, Any]) -> Direction:
    return Direction(receiver=_text(raw.get("receiver")) or "?",
                     packets_received=_int(raw.get("packets_received")),
                     packets_lost=_int(raw.get("packets_lost")),
                     loss_pct=number(raw.get("loss_pct")), jitter_ms=number(raw.get("jitter_ms")),
                     bitrate_kbps=number(raw.get("bitrate_kbps")), mos=number(raw.get("mos")),
                     r_factor=number(raw.get("r_factor")),
                     frames_received=_int(raw.get("frames_received")),
                     frames_expected=_int(raw.get("frames_expected")),
                     window_s=number(raw.get("window_s")))
