"""The relay-leg round-trip exchange of the app-like clients that talk to
each other through a relay (whatsapp-like, max-like): each side measures its
own leg to the relay, sends it (median so far) to the other side every
``period_s`` over the lab's signalling server, and keeps the other's latest
in ``session.peer_relay_rtt_ms``; the call's round trip is the sum of the two
legs (harness.calls.app.client). Without a signalling server the call goes on
and says so in ``extra["relay_rtt_exchange"]``."""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics

from harness.calls.app.client import Session
from harness.calls.app.media import cancel
from harness.calls.app.signal_channel import SignalChannel, SignalError

# The key of the signalling message that carries one side's relay leg, in ms.
RELAY_RTT_KEY = "relay_rtt_ms"
SIGNAL_TIMEOUT_S = 5.0


async def share_relay_rtt(session: Session, period_s: float) -> None:
    """Run until cancelled: send this side's leg, read the other's."""
    if session.cfg.signal is None:
        session.extra["relay_rtt_exchange"] = "no signalling server given"
        return
    try:
        channel = await SignalChannel.join(*session.cfg.signal, session.cfg.call_id,
                                           SIGNAL_TIMEOUT_S)
    except SignalError as exc:
        session.extra["relay_rtt_exchange"] = str(exc)
        return
    session.extra["relay_rtt_exchange"] = "joined"
    reader = asyncio.create_task(_read_peer_rtt(session, channel))
    try:
        while True:
            if session.relay_rtt_samples_s:
                channel.send({RELAY_RTT_KEY: round(1000.0 * statistics.median(
                    session.relay_rtt_samples_s), 3)})
            await asyncio.sleep(period_s)
    except SignalError as exc:
        session.extra["relay_rtt_exchange"] = str(exc)
    finally:
        await cancel(reader)
        with contextlib.suppress(Exception):
            await channel.close()


async def _read_peer_rtt(session: Session, channel: SignalChannel) -> None:
    while True:
        try:
            value = await channel.receive(RELAY_RTT_KEY, 3600.0)
        except SignalError as exc:
            if session.peer_relay_rtt_ms is None:  # else: the peer hung up after telling
                session.extra["relay_rtt_exchange"] = str(exc)
            return
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value) and value >= 0:
            session.peer_relay_rtt_ms = float(value)
