"""`callwall report --compare OLD NEW`: what changed between two runs.

Calls are matched by (policy, strategy, link profile) (a repeated one is
matched by its order of appearance), so a call on a link profile is never
compared with the same call on another. For each pair present in both runs: an outcome flip, a
verdict flip, a MOS that moved by more than the threshold. A regression is an
outcome that got worse (connects → degraded or fails, degraded → fails), a
verdict that went pass → fail, or a MOS that dropped by more than the
threshold. Calls present in one run only are listed, and are not regressions.

``error`` (the call could not be judged: the harness or a tool broke) is no
rung of the outcome ladder, and a flip to or from it is reported as such: a
call that worked or passed in the old run and is an ``error`` in the new one
is a regression (an error is never a pass, and hides whatever the call would
have shown); a flip from ``error`` is listed with the reason the old run gave.
A flip to or from ``skipped`` (the call was not placed: a tool is missing) is
listed, and is not a regression."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.report.html import Call, Run, esc, load_run, page, strategy_order, verdict_class
from harness.report.results import headline_reason
from harness.spec.presets import IDEAL_LINK

DEFAULT_MOS_THRESHOLD = 0.5
# The call profile of records that name none (older runs: all were aiortc's).
DEFAULT_PROFILE = "webrtc"
# Higher is better; an outcome not listed here is compared with nothing.
OUTCOME_RANK = {"fails": 0, "degraded": 1, "connects": 2}
# Floats from JSON: a drop of exactly the threshold is not "more than" it.
EPSILON = 1e-9
ERROR = "error"
SKIPPED = "skipped"


@dataclass(frozen=True, order=True)
class CallKey:
    policy: str
    strategy: str
    repeat: int = 0  # 0 for the first call of this pair in its run, 1 for the second...
    link_profile: str = IDEAL_LINK  # the cell's link profile (harness.link.profile)
    profile: str = DEFAULT_PROFILE  # the call profile (webrtc, whatsapp-like, ...)

    @property
    def label(self) -> str:
        shown = self.strategy if self.profile == DEFAULT_PROFILE else \
            f"{self.profile} / {self.strategy}"
        text = f"{self.policy} × {shown}"
        if self.link_profile != IDEAL_LINK:
            text += f" on link {self.link_profile}"
        return text if self.repeat == 0 else f"{text} (#{self.repeat + 1})"


@dataclass(frozen=True)
class CallSummary:
    """What the comparison looks at in one call."""

    outcome: str
    verdict: str
    mos: float | None
    # Why the judge said so (its first reason), for errors and skipped calls.
    why: str = ""


@dataclass(frozen=True)
class Pair:
    key: CallKey
    old: CallSummary
    new: CallSummary


@dataclass(frozen=True)
class OutcomeFlip:
    key: CallKey
    old: str
    new: str
    # The judge's reason on the error (or skipped) side of the flip; not compared.
    why: str = field(default="", compare=False)

    @property
    def regression(self) -> bool:
        if self.new == ERROR:  # a judged call that can no longer be judged
            return self.old in OUTCOME_RANK
        old, new = OUTCOME_RANK.get(self.old), OUTCOME_RANK.get(self.new)
        return old is not None and new is not None and new < old

    @property
    def improvement(self) -> bool:
        old, new = OUTCOME_RANK.get(self.old), OUTCOME_RANK.get(self.new)
        return old is not None and new is not None and new > old

    @property
    def error_flip(self) -> bool:
        return ERROR in (self.old, self.new)


@dataclass(frozen=True)
class VerdictFlip:
    key: CallKey
    old: str
    new: str
    why: str = field(default="", compare=False)

    @property
    def regression(self) -> bool:
        return self.old == "pass" and self.new in ("fail", ERROR)

    @property
    def improvement(self) -> bool:
        return self.old in ("fail", ERROR) and self.new == "pass"

    @property
    def error_flip(self) -> bool:
        return ERROR in (self.old, self.new)


@dataclass(frozen=True)
class MosShift:
    key: CallKey
    old: float
    new: float
    regression: bool  # dropped by more than the threshold (else it rose by more)

    @property
    def delta(self) -> float:
        return self.new - self.old

    @property
    def improvement(self) -> bool:
        return not self.regression


@dataclass(frozen=True)
class RunRef:
    dir: Path
    run_id: str
    topology: str
    calls: int
    errors: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Comparison:
    old: RunRef
    new: RunRef
    mos_threshold: float
    pairs: tuple[Pair, ...]  # every call present in both runs, changed or not
    outcome_flips: tuple[OutcomeFlip, ...]
    verdict_flips: tuple[VerdictFlip, ...]
    mos_shifts: tuple[MosShift, ...]
    only_in_old: tuple[CallKey, ...]
    only_in_new: tuple[CallKey, ...]

    @property
    def changes(self) -> tuple[OutcomeFlip | VerdictFlip | MosShift, ...]:
        return self.outcome_flips + self.verdict_flips + self.mos_shifts

    @property
    def regressions(self) -> tuple[OutcomeFlip | VerdictFlip | MosShift, ...]:
        return tuple(c for c in self.changes if c.regression)

    @property
    def has_regression(self) -> bool:
        return bool(self.regressions)

    @property
    def changed_keys(self) -> set[CallKey]:
        return {c.key for c in self.changes}

    @property
    def new_errors(self) -> tuple[CallKey, ...]:
        """Calls in both runs that the new run could not judge and the old one could."""
        return tuple(p.key for p in self.pairs
                     if p.new.verdict == ERROR and p.old.verdict != ERROR)

    @property
    def errors(self) -> tuple[int, int]:
        """Calls that could not be judged in the old and in the new run (all calls)."""
        return self.old.errors, self.new.errors


def compare_runs(old_dir: Path, new_dir: Path,
                 mos_threshold: float = DEFAULT_MOS_THRESHOLD) -> Comparison:
    """Compare two runs (run directories, results/latest, or their results.json);
    raises harness.report.html.ReportError when either can't be read."""
    if mos_threshold < 0:
        raise ValueError(f"mos_threshold must be >= 0, not {mos_threshold}")
    old_run, new_run = load_run(old_dir), load_run(new_dir)
    old_calls, new_calls = _keyed(old_run.calls), _keyed(new_run.calls)
    pairs, outcomes, verdicts, shifts = [], [], [], []
    for key in sorted(old_calls.keys() & new_calls.keys(), key=_order):
        old, new = _summary(old_calls[key]), _summary(new_calls[key])
        pairs.append(Pair(key, old, new))
        if old.outcome != new.outcome:
            outcomes.append(OutcomeFlip(key, old.outcome, new.outcome,
                                        _why(old, new, old.outcome, new.outcome)))
        if old.verdict != new.verdict:
            verdicts.append(VerdictFlip(key, old.verdict, new.verdict,
                                        _why(old, new, old.verdict, new.verdict)))
        if old.mos is not None and new.mos is not None \
                and abs(new.mos - old.mos) > mos_threshold + EPSILON:
            shifts.append(MosShift(key, old.mos, new.mos, regression=new.mos < old.mos))
    return Comparison(
        old=_ref(old_run), new=_ref(new_run), mos_threshold=mos_threshold,
        pairs=tuple(pairs), outcome_flips=tuple(outcomes), verdict_flips=tuple(verdicts),
        mos_shifts=tuple(shifts),
        only_in_old=tuple(sorted(old_calls.keys() - new_calls.keys(), key=_order)),
        only_in_new=tuple(sorted(new_calls.keys() - old_calls.keys(), key=_order)),
    )


def render_text(comparison: Comparison) -> str:
    """The comparison as printed by `callwall report --compare`."""
    c = comparison
    lines = [f"{label}: {ref.run_id}  {ref.dir}  ({_plural(ref.calls, 'call')})"
             for label, ref in (("old", c.old), ("new", c.new))]
    if c.old.topology != c.new.topology:
        lines.append(f"note: different topologies ({c.old.topology or '?'} → "
                     f"{c.new.topology or '?'})")
    rows = [(_mark(change), change.key.label, _what(change), _change_text(change))
            for change in sorted(c.changes, key=lambda ch: (_order(ch.key), _kind_order(ch)))]
    if rows:
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines.append("")
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
                  + "  " + row[3] for row in rows]
    only = [f"{title}: " + ", ".join(k.label for k in keys)
            for title, keys in (("only in old", c.only_in_old), ("only in new", c.only_in_new))
            if keys]
    if only:
        lines += ["", *only]
    lines.append("")
    if c.new_errors:
        lines.append(_new_errors_line(c))
    lines.append(_summary_line(c))
    return "\n".join(lines)


def write_comparison_html(comparison: Comparison, path: Path) -> Path:
    """The comparison as one self-contained HTML page at `path`."""
    c = comparison
    path = Path(path)
    changed = c.changed_keys
    verdict = ("<p class=\"lead\"><span class=\"badge fail\">regression</span> "
               if c.has_regression else "<p class=\"lead\"><span class=\"badge pass\">no "
               "regression</span> ") + f"{esc(_summary_line(c))}</p>"
    if c.new_errors:
        verdict += (f"<p class=\"lead\"><span class=\"badge error\">error</span> "
                    f"{esc(_new_errors_line(c))}</p>")
    runs = _table_html(("", "run", "directory", "topology", "calls", "could not be judged",
                        "skipped"),
                       [[("th", label), ("td", ref.run_id), ("td", str(ref.dir)),
                         ("td", ref.topology or "—"), ("td", str(ref.calls)),
                         ("td", str(ref.errors)), ("td", str(ref.skipped))]
                        for label, ref in (("old", c.old), ("new", c.new))])
    change_rows = []
    for change in sorted(c.changes, key=lambda ch: (_order(ch.key), _kind_order(ch))):
        css = "fail" if change.regression else "pass" if change.improvement else "noexp"
        if isinstance(change, OutcomeFlip | VerdictFlip) and change.error_flip:
            css += " errorflip"
        change_rows.append(f"<tr class=\"{css}\"><td>{esc(_mark(change))}</td>"
                           f"<td>{esc(change.key.label)}</td><td>{esc(_what(change))}</td>"
                           f"<td>{esc(_change_text(change))}</td></tr>")
    changes = ("<table><thead><tr><th></th><th>call</th><th>what</th><th>change</th></tr>"
               f"</thead><tbody>{''.join(change_rows)}</tbody></table>" if change_rows
               else "<p class=\"muted\">No outcome, verdict or MOS change.</p>")
    only = "".join(f"<h3>{title}</h3><ul>" + "".join(f"<li>{esc(k.label)}</li>" for k in keys)
                   + "</ul>" for title, keys in (("Only in the old run", c.only_in_old),
                                                 ("Only in the new run", c.only_in_new)) if keys)
    all_rows = []
    for pair in c.pairs:
        css = (" class=\"changed\"" if pair.key in changed else "")
        all_rows.append(
            f"<tr{css}><td>{esc(pair.key.label)}</td>"
            f"<td>{esc(pair.old.outcome)}</td><td>{esc(pair.new.outcome)}</td>"
            f"<td class=\"{verdict_class(pair.old.verdict)}\">{esc(pair.old.verdict)}</td>"
            f"<td class=\"{verdict_class(pair.new.verdict)}\">{esc(pair.new.verdict)}</td>"
            f"<td class=\"num\">{_mos(pair.old.mos)}</td><td class=\"num\">{_mos(pair.new.mos)}"
            f"</td><td class=\"num\">{_delta(pair.old.mos, pair.new.mos)}</td></tr>")
    everything = ("<table><thead><tr><th>call</th><th>old outcome</th><th>new outcome</th>"
                  "<th>old verdict</th><th>new verdict</th><th>old MOS</th><th>new MOS</th>"
                  f"<th>Δ MOS</th></tr></thead><tbody>{''.join(all_rows)}</tbody></table>"
                  if all_rows else "<p class=\"muted\">No call in common.</p>")
    body = (f"<header><h1>callwall: {esc(c.old.run_id)} → {esc(c.new.run_id)}</h1>{verdict}"
            f"</header><section><h2>Runs</h2>{runs}<p class=\"legend\">MOS threshold "
            f"{c.mos_threshold:g}</p></section>"
            f"<section><h2>Changes</h2>{changes}{only}</section>"
            f"<section><h2>All calls in both runs</h2>{everything}</section>")
    html_text = page(f"callwall compare {c.old.run_id} → {c.new.run_id}", body,
                     footer="Generated by callwall from the two runs' results.json.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- helpers

def _keyed(calls: Sequence[Call]) -> dict[CallKey, Call]:
    keyed: dict[CallKey, Call] = {}
    seen: dict[tuple[str, str, str, str], int] = {}
    for call in calls:
        profile = call.record.profile or DEFAULT_PROFILE
        cell = (call.policy, profile, call.strategy, call.record.link_profile)
        repeat = seen.get(cell, 0)
        seen[cell] = repeat + 1
        keyed[CallKey(call.policy, call.strategy, repeat, call.record.link_profile,
                      profile)] = call
    return keyed


def _order(key: CallKey) -> tuple[str, bool, str, tuple[int, str], bool, str, int]:
    return (key.policy, key.profile != DEFAULT_PROFILE, key.profile,
            strategy_order(key.strategy), key.link_profile != IDEAL_LINK, key.link_profile,
            key.repeat)


def _summary(call: Call) -> CallSummary:
    record = call.record
    why = headline_reason(record) or record.error or ""
    return CallSummary(record.outcome, record.verdict, record.mos, why)


def _why(old: CallSummary, new: CallSummary, before: str, after: str) -> str:
    """The reason on the error or skipped side of a flip (the new side first)."""
    if after in (ERROR, SKIPPED):
        return new.why
    if before in (ERROR, SKIPPED):
        return old.why
    return ""


def _ref(run: Run) -> RunRef:
    verdicts = [c.record.verdict for c in run.calls]
    return RunRef(run.dir, run.run_id, str(run.meta.get("topology") or ""), len(run.calls),
                  errors=verdicts.count(ERROR), skipped=verdicts.count(SKIPPED))


def _kind_order(change: OutcomeFlip | VerdictFlip | MosShift) -> int:
    return {OutcomeFlip: 0, VerdictFlip: 1, MosShift: 2}[type(change)]


def _what(change: OutcomeFlip | VerdictFlip | MosShift) -> str:
    return {OutcomeFlip: "outcome", VerdictFlip: "verdict", MosShift: "MOS"}[type(change)]


def _mark(change: OutcomeFlip | VerdictFlip | MosShift) -> str:
    if change.regression:
        return "REGRESSION"
    return "improved" if change.improvement else "changed"


def _change_text(change: OutcomeFlip | VerdictFlip | MosShift) -> str:
    if isinstance(change, MosShift):
        return f"{change.old:.2f} → {change.new:.2f} ({change.delta:+.2f})"
    text = f"{change.old} → {change.new}"
    why = f": {change.why}" if change.why else ""
    if change.new == ERROR:
        return f"{text} (could not be judged in the new run{why})"
    if change.old == ERROR:
        return f"{text} (could not be judged in the old run{why})"
    if change.new == SKIPPED:
        return f"{text} (not placed in the new run{why})"
    if change.old == SKIPPED:
        return f"{text} (not placed in the old run{why})"
    return text


def _new_errors_line(c: Comparison) -> str:
    keys = c.new_errors
    calls = "1 call" if len(keys) == 1 else f"{len(keys)} calls"
    return (f"{calls} could not be judged in the new run (error) where the old run judged "
            f"them: " + ", ".join(k.label for k in keys))


def _summary_line(c: Comparison) -> str:
    regressions = len(c.regressions)
    return (f"{_plural(len(c.pairs), 'call')} in both runs, {len(c.changed_keys)} changed; "
            f"{_plural(regressions, 'regression')}; "
            f"{len(c.only_in_old)} only in old, {len(c.only_in_new)} only in new; "
            f"could not be judged: {c.old.errors} old, {c.new.errors} new "
            f"(MOS threshold {c.mos_threshold:g})")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _mos(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _delta(old: float | None, new: float | None) -> str:
    return "—" if old is None or new is None else f"{new - old:+.2f}"


def _table_html(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<{tag}>{esc(text)}</{tag}>" for tag, text in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
