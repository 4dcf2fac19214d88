"""Turning SIGTERM, SIGINT and SIGHUP into an exception, so that every
`finally` and context manager on the way out runs and the lab is removed.
The first signal raises; later ones are ignored, so cleanup itself is never
cut short by an impatient second Ctrl-C."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopRequested(BaseException):
    """A stop signal arrived."""


def install_stop_handlers() -> None:
    def stop(signum: int, _frame: object) -> None:
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise StopRequested(f"stopped by {signal.Signals(signum).name}")

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
