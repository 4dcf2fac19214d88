"""`make bench`: run every benchmark module (bench/bench_*.py) and print its
figures. Each module exposes `run() -> list[Figure]`; a benchmark that cannot
run here (missing capability) raises `BenchSkip` with the reason."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


class BenchSkip(Exception):
    """The benchmark cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None

    def render(self) -> str:
        verdict = "" if self.met is None else ("  ok" if self.met else "  MISSED")
        target = f"  (target {self.target})" if self.target else ""
        return f"  {self.name:<58} {self.value:>12.4g} {self.unit:<8}{target}{verdict}"


def discover(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if selected:
        unknown = [s for s in selected if s not in names]
        if unknown:
            raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; have: "
                             f"{', '.join(names)}")
        names = [n for n in names if n in selected]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules, e.g. bench_censor")
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    missed = 0
    for name in discover(args.names):
        module = importlib.import_module(f"bench.{name}")
        print(f"{name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        started = time.monotonic()
        try:
            figures = module.run()
        except BenchSkip as exc:
            print(f"  skipped: {exc}")
            results[name] = {"skipped": str(exc)}
            continue
        for figure in figures:
            print(figure.render(), flush=True)
            missed += figure.met is False
        print(f"  ({time.monotonic() - started:.1f} s)")
        results[name] = [asdict(f) for f in figures]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
