"""The whatsapp-like profile's transport: relay first and relay only.

It allocates at the relay (0x0003, with the call id and its peer id in
0x4000-range attributes), retransmitting every ALLOCATE_RETRY_S and walking
the reported WhatsApp call ports, then sends its media as WARP frames to the
port that answered and keeps the binding alive with 0x0801 pings. If no
allocate is answered in ALLOCATE_TIMEOUT_S the call fails with
``relay-unreachable``: WhatsApp has no documented TCP fallback for calls
(restrictions.md §2.1: the official proxy is chat only, calls need a UDP
tunnel)."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import cast

from harness.calls.app.client import CallFailed, Session
from harness.calls.app.media import cancel
from harness.calls.app.opus import OpusSettings
from harness.wire import whatsapp as wa
from harness.wire.rtp import RtpPacket, WireError

# The ports a circumvention-list commenter attributes to WhatsApp calls
# (restrictions.md §2.1, Flowseal PR #8553); 3478 first: the one SonicWall lists.
CALL_PORTS = (3478, 3479, 3480, 3481, 3482, 3484, 3488, 3489, 3491, 3492, 3493, 3495,
              3496, 3497)
ALLOCATE_RETRY_S = 0.5  # [S] the real retransmission schedule is not reported
ALLOCATE_TIMEOUT_S = 8.0  # [S]
PING_PERIOD_S = 1.0  # [S] keepalive period not reported
OPUS = OpusSettings(sample_rate=wa.MEDIA_SAMPLE_RATE, frame_ms=wa.MEDIA_FRAME_MS,
                    bitrate=24000)  # [S] WhatsApp's Opus bitrate is not reported
RTP_CLOCK = wa.MEDIA_SAMPLE_RATE
PEER_IDS = {"caller": 1, "callee": 2}


class WhatsAppTransport(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._session: Session | None = None
        self._allocated: asyncio.Future[tuple[str, int]] | None = None
        self._relay: tuple[str, int] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._ssrc = struct.unpack("!I", os.urandom(4))[0]

    # ------------------------------------------------------------------ Transport

    async def start(self, session: Session) -> None:
        self._session = session
        loop = asyncio.get_running_loop()
        self._allocated = loop.create_future()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("0.0.0.0", 0))
        self._relay = await self._allocate(session)
        session.extra["relay"] = f"{self._relay[0]}:{self._relay[1]}"
        session.set_path("udp-relay", f"allocated at {self._relay[0]}:{self._relay[1]}")
        session.sender.send = self._send_media
        self._pinger = asyncio.create_task(self._ping())

    async def close(self) -> None:
        await cancel(self._pinger)
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

    def _send_media(self, sequence: int, timestamp: int, payload: bytes) -> None:
        if self._transport is not None and self._relay is not None:
            self._transport.sendto(wa.media_frame(sequence, timestamp, self._ssrc, payload),
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
                session.rtt_samples_s.append((time.monotonic_ns() - sent) / 1e9)
