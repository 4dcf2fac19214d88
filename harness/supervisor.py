"""The process that owns a lab started by `callwall up`.

Mininet hosts live as long as their shells, and the shells as long as the
process holding their pipes: this supervisor is that process. It builds the
lab, reports one JSON line on stdout (ready, or the error), moves its output
to the run's log, then waits for SIGTERM/SIGINT/SIGHUP and takes the lab down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from harness.netns.stop_signals import StopRequested, install_stop_handlers
from harness.spec.policy import load_policy
from harness.testbed import Lab

LOG_NAME = "supervisor.log"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="own one callwall lab until told to stop")
    parser.add_argument("--topology", required=True, type=Path)
    parser.add_argument("--policy", required=True, type=Path)
    args = parser.parse_args(argv)
    install_stop_handlers()
    lab = Lab.create(args.topology)
    try:
        lab.up()
        lab.apply_policy(load_policy(args.policy, lab.topology.sets.keys()))
    except (Exception, StopRequested) as exc:  # reported to `callwall up`, which prints it
        _report({"error": str(exc) or type(exc).__name__, "run_id": lab.run_id})
        lab.down()
        return 1
    _report({"ready": lab.run_id})
    _redirect_output(lab.registry.files / LOG_NAME)
    try:
        while True:
            signal.pause()
    except StopRequested:
        pass
    finally:
        lab.down()
    return 0


def _report(message: dict[str, str]) -> None:
    print(json.dumps(message), flush=True)


def _redirect_output(log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, sys.stdout.fileno())
    os.dup2(fd, sys.stderr.fileno())
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
