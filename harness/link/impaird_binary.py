"""Where the userspace impairment daemon `callwall-impaird` lives, and the
constants its command line and its iptables rule share with the Python side.

The daemon is C (harness/link/impaird/), built by `make install` into the
venv's bin directory, because a Python NFQUEUE loop carried only 39k pps.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

BINARY_NAME = "callwall-impaird"
# Duplicates are re-sent through a raw socket carrying this fwmark; the NFQUEUE
# rule must skip marked packets (`-m mark ! --mark 0x1d0f`) or copies would loop.
DUP_MARK = 0x1D0F
# `callwall-impaird --config FILE` exits with this status on a bad config file,
# printing `FILE:LINE: key: message` on stderr.
EXIT_CONFIG_ERROR = 2


class ImpairdMissing(FileNotFoundError):
    """The daemon has not been built."""


def impaird_path() -> Path:
    """The venv's own build first (so a stale copy elsewhere on PATH never wins),
    then PATH."""
    built = Path(sys.prefix) / "bin" / BINARY_NAME
    if built.is_file():
        return built
    found = shutil.which(BINARY_NAME)
    if found is not None:
        return Path(found)
    raise ImpairdMissing(
        f"{BINARY_NAME} not found in {built.parent} nor on PATH: run `make install` "
        f"(it builds harness/link/impaird/ with gcc)")


def nfqueue_rule(interface: str, queue: int, action: str = "-A") -> list[str]:
    """The iptables arguments that add (`-A`) or delete (`-D`) the rule handing
    packets leaving `interface` to the daemon's queue, skipping its own
    duplicates; with --queue-bypass, packets pass unimpaired while no daemon is
    bound."""
    if action not in ("-A", "-D", "-C"):
        raise ValueError(f"action must be -A, -D or -C, not {action!r}")
    return ["-t", "mangle", action, "POSTROUTING", "-o", interface, "-m", "mark", "!",
            "--mark", f"0x{DUP_MARK:x}", "-j", "NFQUEUE", "--queue-num", str(queue),
            "--queue-bypass"]
