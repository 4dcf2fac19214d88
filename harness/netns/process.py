"""Is a service listening yet? Read from /proc/<pid>/net, which shows the
sockets of the namespace that <pid> lives in, so no probe has to enter it."""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable
from pathlib import Path

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


def listening_ports(pid: int, proto: str) -> set[int]:
    """Ports with a listening TCP or a bound UDP socket in `pid`'s namespace."""
    wanted = TCP_LISTEN if proto == "tcp" else UDP_UNCONNECTED
    try:
        lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return set()
    ports = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == wanted:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# (pid, proto) -> the ports open in pid's namespace; LabHost.listening_ports
# is one, and a fake host answers without real sockets.
PortProbe = Callable[[int, str], Container[int]]


def wait_listening(pid: int, sockets: Iterable[tuple[str, int]], timeout_s: float, *,
                   probe: PortProbe = listening_ports,
                   running: Callable[[], bool] | None = None) -> list[tuple[str, int]]:
    """Wait until every (proto, port) is open; return the ones still missing.
    With `running`, stop waiting as soon as it says the process has ended."""
    missing = list(sockets)
    deadline = time.monotonic() + timeout_s
    while missing and time.monotonic() < deadline:
        missing = [(proto, port) for proto, port in missing if port not in probe(pid, proto)]
        if missing:
            if running is not None and not running():
                break
            time.sleep(0.05)
    return missing
