"""Breaks a real call client on purpose, for the tests that prove the judge
says no: run by path inside a lab host as

    python peer_wrapper.py MODE EVENTS OUT -- ARGV...

It starts the real client (ARGV, an argument list) and then, by MODE:

- ``crash-after-media``: once the client's EVENTS file shows its first
  decoded frame, kill it (SIGKILL) and exit 134 like an aborted process:
  no result, a crash the harness did not cause on purpose;
- ``drop-direction``: let the call end normally, then remove the loss and
  packet figures from the client's result OUT (a direction without results).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.05
WAIT_MEDIA_S = 30.0


def _saw_media(events: Path) -> bool:
    try:
        return any(json.loads(line).get("event") == "media"
                   for line in events.read_text().splitlines() if line.strip())
    except (OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    mode, events, out, sep, *command = argv
    assert sep == "--", "usage: MODE EVENTS OUT -- ARGV..."
    child = subprocess.Popen(command)
    if mode == "crash-after-media":
        deadline = time.monotonic() + WAIT_MEDIA_S
        while time.monotonic() < deadline and child.poll() is None:
            if _saw_media(Path(events)):
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                return 134
            time.sleep(POLL_S)
        child.wait()
        return 134
    code = child.wait()
    if mode == "drop-direction":
        result = json.loads(Path(out).read_text())
        for key in ("loss_pct", "packets_received", "packets_lost", "jitter_ms"):
            result.pop(key, None)
        Path(out).write_text(json.dumps(result))
        return code
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
