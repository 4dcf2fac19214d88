"""Does a policy reproduce what was reported? `callwall reproduce POLICY`
places the same call N times per cell in one lab and sums up what a reader
of the reports would compare: how many attempts set up, the MOS and PESQ of
those that did, whether text got through, and what the deciding rules
counted. Each call is judged as in the matrix (harness.session.judged_call);
the summary only counts, it never re-judges.

The summary is a row of the README's "reported vs reproduced" table; its
conditions (machine, load, calls, media window) travel with it."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.calls import CallSettings, check_strategy
from harness.measure.record import CallRecord
from harness.session import judged_call
from harness.spec.policy import Policy
from harness.spec.presets import IDEAL_LINK
from harness.testbed import Lab


@dataclass(frozen=True)
class Cell:
    profile: str
    strategy: str

    @classmethod
    def parse(cls, text: str) -> Cell:
        """`profile:strategy`, e.g. `whatsapp-like:direct`."""
        profile, sep, strategy = text.partition(":")
        if not sep or not profile or not strategy:
            raise ValueError(f"{text!r} is not profile:strategy (e.g. whatsapp-like:direct)")
        check_strategy(profile, strategy)
        return cls(profile, strategy)

    def __str__(self) -> str:
        return f"{self.profile} {self.strategy}"


@dataclass
class CellSummary:
    """What N calls of one cell showed."""

    cell: Cell
    calls: int = 0
    set_up: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    failure_kinds: dict[str, int] = field(default_factory=dict)
    mos: list[float] = field(default_factory=list)
    pesq: list[float] = field(default_factory=list)
    setup_s: list[float] = field(default_factory=list)
    text_ok: dict[str, int] = field(default_factory=dict)
    # Rule id -> packets it counted, summed over the calls.
    rules: dict[str, int] = field(default_factory=dict)
    # Calls that passed as the expectation's declared rare outcome, and the
    # share of calls the policy declares for it (None: it declares none).
    rare: int = 0
    rare_declared_pct: float | None = None

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.set_up += int(record.connected)
        _bump(self.outcomes, record.outcome)
        _bump(self.verdicts, record.verdict)
        self.rare += int(bool(record.judgement.get("rare")))
        if record.failure_kind:
            _bump(self.failure_kinds, record.failure_kind)
        if record.mos is not None:
            self.mos.append(record.mos)
        pesq = (record.pesq or {}).get("mos_lqo")
        if record.connected and isinstance(pesq, (int, float)):
            self.pesq.append(float(pesq))
        if record.setup_s is not None:
            self.setup_s.append(record.setup_s)
        text = getattr(record, "text_ok", None)
        _bump(self.text_ok, "not measured" if text is None else "ok" if text else "failed")
        for counter in record.censor_counters:
            rule = str(counter.get("rule", "")).split(":")[0]
            packets = int(counter.get("packets") or 0)
            if packets:
                self.rules[rule] = self.rules.get(rule, 0) + packets

    def row(self) -> dict[str, Any]:
        return {"cell": str(self.cell), "calls": self.calls, "set_up": self.set_up,
                "outcomes": self.outcomes, "verdicts": self.verdicts,
                "failure_kinds": self.failure_kinds, "mos": _spread(self.mos),
                "pesq": _spread(self.pesq), "setup_s": _spread(self.setup_s),
                "text_ok": self.text_ok, "rules": self.rules, "rare": self.rare,
                "rare_declared_pct": self.rare_declared_pct}

    def markdown(self) -> str:
        mos, pesq = _spread(self.mos), _spread(self.pesq)
        rules = ", ".join(f"`{r}` {n}" for r, n in sorted(self.rules.items())) or "none"
        text = ", ".join(f"{k} {v}" for k, v in sorted(self.text_ok.items()))
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        if self.rare_declared_pct is not None:
            outcomes += (f"; rare outcome {self.rare} of {self.calls}, declared about "
                         f"{self.rare_declared_pct:g} %")
        return (f"{self.cell} | {self.set_up}/{self.calls} set up ({outcomes}) | "
                f"{_fmt(mos)} | {_fmt(pesq)} | {text} | {rules}")


@dataclass(frozen=True)
class Conditions:
    """Where and how the figures were taken."""

    policy: str
    topology: str
    calls_per_cell: int
    media_s: float
    link_profile: str
    host: str
    cpus: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    wall_s: float
    commit: str | None


def reproduce(lab: Lab, policy: Policy, cells: Sequence[Cell], calls: int, out_dir: Path,
              media_s: float = 8.0, link_profile: str = IDEAL_LINK, commit: str | None = None,
              progress: Callable[[str], None] | None = None
              ) -> tuple[Conditions, list[CellSummary]]:
    """`calls` judged calls of every cell, one after another in `lab`, each
    on `link_profile` (the subscriber's access link, harness.link.profile)."""
    load_before = os.getloadavg()
    started = time.monotonic()
    settings = CallSettings(media_s=media_s, capture_pcap=False)
    summaries = []
    for cell in cells:
        expected = policy.expectation(cell.profile, cell.strategy)
        summary = CellSummary(cell, rare_declared_pct=(
            expected.rarely.share_pct if expected and expected.rarely else None))
        for index in range(calls):
            call_dir = out_dir / "calls" / f"{cell.profile}--{cell.strategy}--{index + 1:02d}"
            record = judged_call(lab, policy, cell.strategy, call_dir, settings,
                                 profile=cell.profile, link_profile=link_profile)
            summary.add(record)
            if progress is not None:
                progress(f"{cell} {index + 1}/{calls}: {record.outcome} ({record.verdict})"
                         + (f", MOS {record.mos}" if record.mos is not None else "")
                         + (f", {record.failure_kind}" if record.failure_kind else ""))
        summaries.append(summary)
    conditions = Conditions(
        policy=policy.name, topology=lab.topology.name, calls_per_cell=calls, media_s=media_s,
        link_profile=link_profile,
        host=os.uname().nodename, cpus=os.cpu_count() or 0,
        load_before=tuple(round(x, 2) for x in load_before),  # type: ignore[arg-type]
        load_after=tuple(round(x, 2) for x in os.getloadavg()),  # type: ignore[arg-type]
        wall_s=round(time.monotonic() - started, 1), commit=commit)
    document = {"conditions": asdict(conditions), "cells": [s.row() for s in summaries]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "reproduce.json").write_text(json.dumps(document, indent=2) + "\n")
    return conditions, summaries


def render(conditions: Conditions, summaries: Sequence[CellSummary]) -> str:
    head = (f"policy {conditions.policy} on {conditions.topology}: {conditions.calls_per_cell} "
            f"calls per cell, {conditions.media_s:g} s media window, link profile "
            f"{conditions.link_profile}; {conditions.cpus} CPUs, "
            f"load {conditions.load_before[0]} before, {conditions.load_after[0]} after; "
            f"{conditions.wall_s:g} s")
    lines = [head, "", "cell | set up | MOS (median, min-max) | PESQ (median, min-max) | "
             "text | rules that counted (packets, all calls)", "---|---|---|---|---|---"]
    lines += [s.markdown() for s in summaries]
    return "\n".join(lines)


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "n": len(values)}


def _fmt(spread: dict[str, float] | None) -> str:
    if spread is None:
        return "—"
    return f"{spread['median']:.2f} ({spread['min']:.2f}–{spread['max']:.2f}, n={spread['n']:g})"


def progress_printer(prefix: str) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"[{prefix}] {line}", file=sys.stderr, flush=True)
    return say
