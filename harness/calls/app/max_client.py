"""The max-like profile's transport: a domestic app's call through its own UDP
relay (harness.services.max_relay on host ``max``), relay only, plain RTP.

What Max really uses for calls is not established here: nothing public
describes its wire format, ports or codec settings. Every parameter below is
a guess [S], chosen as the simplest honest stand-in (no STUN dialect, no
P2P); what the profile measures is whether a domestic app's servers stay
reachable under a policy, not how Max's own protocol fares.

It registers at the relay with a JSON hello (its call id and role), repeated
every HELLO_RETRY_S until answered (``relay-unreachable`` after
HELLO_TIMEOUT_S), then sends its Opus frames as RTP to the relay and repeats
the hello every KEEPALIVE_S; the answers time this side's relay leg
(``relay_rtt_ms``). As whatsapp-like, each side sends its relay leg to the
other over the app's chat server, and the call's ``rtt_ms`` is the sum of
the two legs (harness.calls.app.client)."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from harness.calls.app.client import CallFailed, Session
from harness.calls.app.media import cancel
from harness.calls.app.opus import OpusSettings
from harness.calls.app.relay_rtt import share_relay_rtt
from harness.services import max_relay
from harness.wire.rtp import RtpPacket, WireError

OPUS = OpusSettings(sample_rate=48000, frame_ms=20, bitrate=32000)  # [S]
RTP_CLOCK = 48000
PAYLOAD_TYPE = 111  # [S] a dynamic payload type, as WebRTC stacks give Opus
HELLO_RETRY_S = 0.5  # [S]
HELLO_TIMEOUT_S = 8.0  # [S]
KEEPALIVE_S = 1.0  # [S]
RTT_SHARE_PERIOD_S = 1.0


class MaxTransport(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._session: Session | None = None
        self._registered: asyncio.Future[None] | None = None
        self._relay: tuple[str, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ Transport

    async def start(self, session: Session) -> None:
        self._session = session
        loop = asyncio.get_running_loop()
        self._registered = loop.create_future()
        self._relay = (session.cfg.relay_ip, max_relay.PORT)
        self._tasks.append(asyncio.create_task(share_relay_rtt(session, RTT_SHARE_PERIOD_S)))
        await loop.create_datagram_endpoint(lambda: self, local_addr=("0.0.0.0", 0))
        await self._register(session)
        session.extra["relay"] = f"{self._relay[0]}:{self._relay[1]}"
        session.set_path("udp-relay", f"registered at {self._relay[0]}:{self._relay[1]}")
        session.sender.send = self._send_media
        self._tasks.append(asyncio.create_task(self._keepalive()))

    async def close(self) -> None:
        for task in self._tasks:
            await cancel(task)
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ the relay

    def _hello(self) -> None:
        assert self._transport is not None and self._relay is not None
        assert self._session is not None
        cfg = self._session.cfg
        self._transport.sendto(max_relay.hello(cfg.call_id, cfg.role, time.monotonic()),
                               self._relay)

    async def _register(self, session: Session) -> None:
        assert self._registered is not None
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        attempts = 0
        while time.monotonic() < deadline:
            self._hello()
            attempts += 1
            done, _ = await asyncio.wait({self._registered}, timeout=HELLO_RETRY_S)
            if done:
                return
        raise CallFailed("relay-unreachable", "allocate",
                         f"{attempts} hellos to the relay {session.cfg.relay_ip}:"
                         f"{max_relay.PORT} unanswered in {HELLO_TIMEOUT_S:g} s")

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            self._hello()

    def _send_media(self, sequence: int, timestamp: int, payload: bytes) -> None:
        if self._transport is None or self._relay is None or self._session is None:
            return
        packet = RtpPacket(PAYLOAD_TYPE, sequence, timestamp, self._session.sender.ssrc,
                           payload)
        self._transport.sendto(packet.encode(), self._relay)

    # ------------------------------------------------------------------ the peer's relay leg

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        session = self._session
        if session is None:
            return
        if max_relay.is_control(data):
            message = max_relay.parse_control(data)
            if message is None or message.get("ok") != session.cfg.call_id:
                return
            if self._registered is not None and not self._registered.done():
                self._registered.set_result(None)
            sent = message.get("t")
            if isinstance(sent, int | float) and not isinstance(sent, bool):
                rtt = time.monotonic() - float(sent)
                if 0 <= rtt < 60:
                    session.relay_rtt_samples_s.append(rtt)
            return
        try:
            session.receiver.on_rtp(RtpPacket.decode(data), len(data))
        except WireError:
            pass
