"""Text messages during an app-like call, over the app's own signalling
connection (harness.calls.app.signal_channel), so a policy that leaves the
chat server alone while it breaks the call shows "text kept working while
calls failed", and one that blocks the chat server shows text failing too.

Each side sends `count` messages, one every `period_s`, numbered 0..count-1,
from when both sides are in the call's room, and counts the distinct
messages of the other side that arrive within count x period_s + GRACE_S.
The result fields (harness.measure.peer.PeerReport reads them):

* ``text_sent``: messages this side handed to its signalling connection;
* ``text_received``: distinct messages of the other side that arrived;
* ``text_expected``: how many the other side sends (the same `count`);
* ``text_ok``: True when every one of them arrived, False when some did not
  (or the side never reached its chat server, so no text could flow), None
  when the side did not exchange text at all;
* ``text_detail``: why text stopped, when it did."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from harness.calls.app.signal_channel import SignalChannel, SignalError

TEXT_KEY = "text"
TEXT_PERIOD_S = 1.0
# How long past the other side's last message (on a clock started when both
# sides were present) its messages may still arrive.
GRACE_S = 5.0


@dataclass
class TextCounts:
    expected: int
    sent: int = 0
    received: set[int] = field(default_factory=set)
    detail: str | None = None
    exchanged: bool = False  # the exchange ran (both sides were in the room)

    @property
    def ok(self) -> bool:
        return len(self.received) >= self.expected

    def result(self) -> dict[str, Any]:
        return {"text_sent": self.sent, "text_received": len(self.received),
                "text_expected": self.expected, "text_ok": self.ok,
                "text_detail": self.detail}


def no_text(expected: int, why: str) -> dict[str, Any]:
    """The fields of a side whose chat server could not be used: no text went
    either way, which is a failed exchange, not a missing one."""
    return TextCounts(expected, detail=why).result()


class TextExchange:
    def __init__(self, channel: SignalChannel, role: str, count: int,
                 period_s: float = TEXT_PERIOD_S) -> None:
        self.channel, self.role, self.period_s = channel, role, period_s
        self.counts = TextCounts(count)
        self.deadline = time.monotonic() + count * period_s + GRACE_S

    async def run(self) -> None:
        """Send and receive until every message of the other side arrived and
        all of ours are sent, the deadline passed, or signalling broke."""
        self.counts.exchanged = True
        sender = asyncio.ensure_future(self._send())
        try:
            await self._receive()
            await asyncio.wait_for(asyncio.shield(sender),
                                   max(0.0, self.deadline - time.monotonic()))
        except (SignalError, TimeoutError) as exc:
            self.counts.detail = self.counts.detail or str(exc)
        finally:
            sender.cancel()

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for seq in range(self.counts.expected):
            self.channel.send({TEXT_KEY: {"seq": seq, "from": self.role}})
            self.counts.sent += 1
            await asyncio.sleep(max(0.0, start + (seq + 1) * self.period_s - loop.time()))

    async def _receive(self) -> None:
        counts = self.counts
        while not counts.ok:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                counts.detail = (f"{len(counts.received)} of {counts.expected} messages of "
                                 "the other side arrived in time")
                return
            try:
                message = await self.channel.receive(TEXT_KEY, remaining)
            except SignalError as exc:
                counts.detail = (f"{len(counts.received)} of {counts.expected} messages of "
                                 f"the other side arrived: {exc}")
                return
            seq = message.get("seq") if isinstance(message, dict) else None
            if isinstance(seq, int) and not isinstance(seq, bool) \
                    and 0 <= seq < counts.expected and message.get("from") != self.role:
                counts.received.add(seq)
