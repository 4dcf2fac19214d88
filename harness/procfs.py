"""What the kernel says about a process, read from /proc: the one place that
tells a live process from a recycled PID. Standard library only, below every
other layer, so that the registry (harness.netns.registry) and the Docker
engine's owner record (harness.containers.engine) share it."""

from __future__ import annotations

from pathlib import Path


def process_start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if the
    process is gone or a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields restart after ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
