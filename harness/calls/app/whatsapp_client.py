"""The whatsapp-like profile's transport: relay first and relay only.

It allocates at the relay (0x0003, with the call id and its peer id in
0x4000-range attributes), retransmitting every ALLOCATE_RETRY_S and walking
the reported WhatsApp call ports, then sends its media as WARP frames to the
port that answered and keeps the binding alive with 0x0801 pings. If no
allocate is answered in ALLOCATE_TIMEOUT_S the call fails with
``relay-unreachable``: WhatsApp has no documented TCP fallback for calls
(docs/sources.md S19, S20: the official proxy is chat only, calls need a UDP
tunnel).

Round trips: the 0x0801/0x0802 pings measure this side's leg to the relay
(``relay_rtt_ms``). WhatsApp-like sends no RTCP, so for the end-to-end
``rtt_ms`` each side sends its relay leg (median so far) to the other every
RTT_SHARE_PERIOD_S over the lab's signalling server (``--signal``, where the
real app has its own servers), and the call's round trip is the sum of the two
legs (harness.calls.app.client). Without signalling the call goes on and
``rtt_ms`` stays null. Media arriving with this side's own SSRC is dropped
(harness.calls.app.media)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from typing import cast

from harness.calls.app.client import CallFailed, Session
from harness.calls.app.media import cancel
from harness.calls.app.opus import OpusSettings
from harness.calls.app.signal_channel import SignalChannel, SignalError
from harness.wire import whatsapp as wa
from harness.wire.rtp import RtpPacket, WireError

# The ports a circumvention-list commenter attributes to WhatsApp calls
# (docs/sources.md S19, S20, Flowseal PR #8553); 3478 first: the one SonicWall lists.
CALL_PORTS = (3478, 3479, 3480, 3481, 3482, 3484, 3488, 3489, 3491, 3492, 3493, 3495,
              3496, 3497)
ALLOCATE_RETRY_S = 0.5  # [S] the real retransmission schedule is not reported
ALLOCATE_TIMEOUT_S = 8.0  # [S]
PING_PERIOD_S = 1.0  # [S] keepalive period not reported
OPUS = OpusSettings(sample_rate=wa.MEDIA_SAMPLE_RATE, frame_ms=wa.MEDIA_FRAME_MS,
                    bitrate=24000)  # [S] WhatsApp's Opus bitrate is not reported
RTP_CLOCK = wa.MEDIA_SAMPLE_RATE
PEER_IDS = {"caller": 1, "callee": 2}
RTT_SHARE_PERIOD_S = 1.0  # [S]
SIGNAL_TIMEOUT_S = 5.0
RELAY_RTT_KEY = "relay_rtt_ms"


class WhatsAppTransport(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._session: Session | None = None
        self._allocated: asyncio.Future[tuple[str, int]] | None = None
        self._relay: tuple[str, int] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._sharer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ Transport

    async def start(self, session: Session) -> None:
        self._session = session
        loop = asyncio.get_running_loop()
        self._allocated = loop.create_future()
        self._sharer = asyncio.create_task(self._share_relay_rtt(session))
        await loop.create_datagram_endpoint(lambda: self, local_addr=("0.0.0.0", 0))
        self._relay = await self._allocate(session)
        session.extra["relay"] = f"{self._relay[0]}:{self._relay[1]}"
        session.set_path("udp-relay", f"allocated at {self._relay[0]}:{self._relay[1]}")
        session.sender.send = self._send_media
        self._pinger = asyncio.create_task(self._ping())

    async def close(self) -> None:
        await cancel(self._pinger)
        await cancel(self._sharer)
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ allocate and ping

    async def _allocate(self, session: Session) -> tuple[str, int]:
        assert self._transport is not None and self._allocated is not None
        request = wa.allocate(session.cfg.call_id, PEER_IDS[session.cfg.role]).encode()
        deadline = time.monotonic() + ALLOCATE_TIMEOUT_S
        attempt = 0
        while time.monotonic() < deadline:
            port = CALL_PORTS[attempt % len(CALL_PORTS)]
            self._transport.sendto(request, (session.cfg.relay_ip, port))
            attempt += 1
            done, _ = await asyncio.wait({self._allocated}, timeout=ALLOCATE_RETRY_S)
            if done:
                return self._allocated.result()
        raise CallFailed("relay-unreachable", "allocate",
                         f"{attempt} allocate requests to {session.cfg.relay_ip} on UDP "
                         f"{CALL_PORTS[0]}-{CALL_PORTS[-1]} unanswered in "
                         f"{ALLOCATE_TIMEOUT_S:g} s; whatsapp-like has no TCP fallback")

    async def _ping(self) -> None:
        assert self._transport is not None and self._relay is not None
        while True:
            self._transport.sendto(wa.ping(time.monotonic_ns()).encode(), self._relay)
            await asyncio.sleep(PING_PERIOD_S)

    # ------------------------------------------------------------------ the peer's relay leg

    async def _share_relay_rtt(self, session: Session) -> None:
        """Send this side's relay RTT to the peer every RTT_SHARE_PERIOD_S over
        signalling, and keep the peer's latest in ``session.peer_relay_rtt_ms``."""
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
        reader = asyncio.create_task(self._read_peer_rtt(session, channel))
        try:
            while True:
                if session.relay_rtt_samples_s:
                    channel.send({RELAY_RTT_KEY: round(1000.0 * statistics.median(
                        session.relay_rtt_samples_s), 3)})
                await asyncio.sleep(RTT_SHARE_PERIOD_S)
        finally:
            await cancel(reader)
            with contextlib.suppress(Exception):
                await channel.close()

    @staticmethod
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

    def _send_media(self, sequence: int, timestamp: int, payload: bytes) -> None:
        if self._transport is not None and self._relay is not None and self._session:
            self._transport.sendto(wa.media_frame(sequence, timestamp,
                                                  self._session.sender.ssrc, payload),
                                   self._relay)

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        session = self._session
        assert session is not None
        if wa.is_media(data):
            try:
                session.receiver.on_rtp(RtpPacket.decode(data), len(data))
            except WireError:
                pass
            return
        try:
            message = wa.WaspMessage.decode(data)
        except WireError:
            return
        if message.msg_type == wa.ALLOCATE_SUCCESS and self._allocated is not None:
            if not self._allocated.done():
                self._allocated.set_result(addr)
        elif message.msg_type == wa.ALLOCATE_ERROR:
            reason = (message.get(wa.ATTR_ERROR) or b"").decode(errors="replace")
            session.fail(CallFailed("relay-refused", "allocate", reason))
        elif message.msg_type == wa.PONG:
            sent = wa.send_time_ns(message)
            if sent is not None:
                session.relay_rtt_samples_s.append((time.monotonic_ns() - sent) / 1e9)
