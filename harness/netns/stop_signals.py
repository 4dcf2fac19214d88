"""Turning SIGTERM, SIGINT and SIGHUP into an exception, so that every
`finally` and context manager on the way out runs and the lab is removed.

The first signal raises; later ones are ignored, so cleanup itself is never
cut short by an impatient second Ctrl-C. Only the process that installed the
handlers raises: a forked child (pyroute2 forks one per namespace it enters)
gets the default handlers back, or a SIGTERM meant to end that child would
run the parent's teardown inside it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopRequested(BaseException):
    """A stop signal arrived."""


def _restore_defaults() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def install_stop_handlers() -> None:
    owner = os.getpid()

    def stop(signum: int, _frame: object) -> None:
        if os.getpid() != owner:
            _restore_defaults()
            os.kill(os.getpid(), signum)
            return
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise StopRequested(f"stopped by {signal.Signals(signum).name}")

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    os.register_at_fork(after_in_child=_restore_defaults)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Hold stop signals back while the block runs; a signal that arrived
    meanwhile is delivered (and raises) once the block is done."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
