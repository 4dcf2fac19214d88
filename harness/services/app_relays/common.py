"""What both app relays share: a port-range argument, running until SIGTERM,
and a stats line on exit (for the service log)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


def parse_ports(text: str) -> list[int]:
    """"3478-3497" or "596-599,1400" → the ports, each 1..65535."""
    ports: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if sep else low)
        except ValueError:
            raise ValueError(f"ports: {part!r} is not PORT or LOW-HIGH") from None
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"ports: {part!r} is not within 1..65535 in order")
        ports.extend(range(first, last + 1))
    return ports


async def until_terminated() -> None:
    """Wait for SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def announce_ready(what: str) -> None:
    print(f"{what} ready", flush=True)


def log(line: str) -> None:
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)
