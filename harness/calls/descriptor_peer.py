"""One side of a descriptor client's call, inside its lab host: runs the
user's program and turns what it wrote to ``{out_dir}/result.json`` into the
side's report (``<call_dir>/<role>.json``, harness.measure.peer.PeerReport).

    python -m harness.calls.descriptor_peer --role R --program-json '["prog", ...]'
        --out-dir D --report F --received-wav W --run-dir RUN [--program-env-json E]
        --events EVENTS

The program is the argv given as one JSON list (no shell reads it). It is this
process's child, recorded in the run's registry as ``<role> endpoint
program``, and dies with this process (PR_SET_PDEATHSIG), so whatever stops
this process (the call's budget, a fault, Ctrl-C, `callwall clean`) stops it
too. On SIGTERM the program gets SIGTERM and a moment to write its result.

A result that is missing or breaks the contract (harness.spec.descriptor.
parse_result) gives a report with ``wrote_result`` false and error
``peer-crashed``, which the judge counts as the harness's error, never a
pass; the detail says what was wrong.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.calls.events import EventLog
from harness.measure.peer import PeerReport
from harness.netns.registry import Registry
from harness.spec.descriptor import RESULT_FILE, EndpointResult, parse_result

PR_SET_PDEATHSIG = 1
TERM_GRACE_S = 2.0
PROGRAM_WHAT = "endpoint program"


def program_what(role: str) -> str:
    """How the program is named in the registry."""
    return f"{role} {PROGRAM_WHAT}"


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def report_from(result: EndpointResult, role: str, strategy: str | None, profile: str | None,
                exit_code: int | None) -> PeerReport:
    """The side's report from a valid result."""
    extra: dict[str, Any] = {"exit_code": exit_code, "result_contract": "descriptor"}
    frames = result.frames_received or 0
    return PeerReport(
        role=role, connected=result.connected, setup_s=result.setup_s,
        loss_pct=result.loss_pct if result.connected else None,
        jitter_ms=result.jitter_ms, rtt_ms=result.rtt_ms,
        packets_sent=result.packets_sent, packets_received=result.packets_received,
        packets_lost=result.packets_lost, frames_received=frames, frame_ms=result.frame_ms,
        window_s=result.media_seconds,
        error=None if result.connected else (result.error or "not-connected"),
        failure_stage=None if result.connected else "program",
        detail=result.detail, path=result.path, profile=profile, strategy=strategy,
        codec=result.codec, extra=extra)


def broken_report(role: str, detail: str, strategy: str | None, profile: str | None,
                  exit_code: int | None) -> PeerReport:
    """The side's report when the program broke the contract: the harness's error."""
    return PeerReport(role=role, wrote_result=False, error="peer-crashed",
                      failure_stage="process", detail=detail, strategy=strategy,
                      profile=profile, extra={"exit_code": exit_code,
                                              "result_contract": "descriptor"})


def read_result(out_dir: Path) -> EndpointResult:
    """The program's result, checked; ValueError says what is wrong."""
    path = out_dir / RESULT_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"the program wrote no {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    return parse_result(raw)


def received_wav(result: EndpointResult, out_dir: Path) -> Path | None:
    """The program's received audio, which must lie inside out_dir."""
    if result.received_wav is None:
        return None
    given = Path(result.received_wav)
    path = (given if given.is_absolute() else out_dir / given).resolve()
    if not path.is_relative_to(out_dir.resolve()):
        raise ValueError(f"received_wav {result.received_wav!r} lies outside {out_dir}")
    if not path.is_file():
        raise ValueError(f"received_wav {result.received_wav!r}: no such file in {out_dir}")
    return path


def run(args: argparse.Namespace) -> int:
    events = EventLog(Path(args.events) if args.events else None)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).unlink(missing_ok=True)
    program: list[str] = json.loads(args.program_json)
    env = json.loads(args.program_env_json) if args.program_env_json else None
    stopping = {"signal": 0}

    def on_stop(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_stop)
    started = time.monotonic()
    events.emit("attempt", at=started)
    log = open(Path(args.report).with_suffix(".program.log"), "ab")  # noqa: SIM115
    try:
        proc = subprocess.Popen(program, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent)
    except OSError as exc:
        _write(args, broken_report(args.role, f"cannot start {program[0]}: {exc}",
                                   args.strategy, args.profile, None))
        events.emit("failed", error="peer-crashed", stage="process")
        return 1
    _own(args, proc.pid)
    exit_code = _wait(proc, stopping)
    log.close()
    try:
        result = read_result(out_dir)
        wav = received_wav(result, out_dir)
    except ValueError as exc:
        why = f"{exc} (exit code {exit_code}"
        why += f", stopped by {signal.Signals(stopping['signal']).name})" \
            if stopping["signal"] else ")"
        _write(args, broken_report(args.role, why, args.strategy, args.profile, exit_code))
        events.emit("failed", error="peer-crashed", stage="process")
        return 1
    if wav is not None and args.received_wav:
        shutil.copyfile(wav, args.received_wav)
    report = report_from(result, args.role, args.strategy, args.profile, exit_code)
    _write(args, report)
    if result.connected and result.setup_s is not None:
        events.emit("media", at=started + result.setup_s)
    else:
        events.emit("failed", error=report.error, stage="program")
    return 0


def _wait(proc: subprocess.Popen[bytes], stopping: dict[str, int]) -> int | None:
    """Wait for the program; on a stop signal, pass SIGTERM on and give it a
    moment to write its result."""
    while True:
        try:
            return proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
        if stopping["signal"]:
            proc.terminate()
            try:
                return proc.wait(timeout=TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()


def _own(args: argparse.Namespace, pid: int) -> None:
    """Record the program in the run's registry, so cleanup names it too."""
    if not args.run_dir:
        return
    try:
        Registry.load(Path(args.run_dir)).record_process(pid, args.host or "",
                                                         program_what(args.role))
    except (OSError, ValueError, RuntimeError):
        pass  # the lab is going away, or the program already ended: nothing to own


def _write(args: argparse.Namespace, report: PeerReport) -> None:
    path = Path(args.report)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2))
    os.replace(tmp, path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.calls.descriptor_peer",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", required=True, choices=("caller", "callee"))
    p.add_argument("--program-json", required=True, help="the program's argv, a JSON list")
    p.add_argument("--program-env-json", help="its whole environment, a JSON object")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--report", required=True, help="where the side's report goes")
    p.add_argument("--received-wav", help="where the received audio is copied")
    p.add_argument("--run-dir", help="the run's registry directory")
    p.add_argument("--host", help="the lab host it runs in")
    p.add_argument("--strategy")
    p.add_argument("--profile")
    p.add_argument("--events")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
