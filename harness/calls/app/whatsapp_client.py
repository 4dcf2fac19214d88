"""The whatsapp-like profile's transport: relay first and relay only.

It allocates at the relay (0x0003, with the call id and its peer id in
0x4000-range attributes), retransmitting every ALLOCATE_RETRY_S and walking
the reported WhatsApp call ports, then sends its media as WARP frames
(harness.wire.whatsapp: RTP 0x90/120, extension profile 0xDEBE, a 4-byte
integrity tag) to the port that answered and keeps the binding alive with
0x0801 pings. If no allocate is answered in ALLOCATE_TIMEOUT_S the call fails
with ``relay-unreachable``: WhatsApp has no documented TCP fallback for calls
(docs/sources.md S19, S20: the official proxy is chat only, calls need a UDP
tunnel).

Bitrate: Opus at 16 kHz in 60 ms frames, starting at 24 kbit/s and adapted
between 24 and 6 kbit/s to the loss the other side reports. Every
REPORT_PERIOD_S each side sends WhatsApp's compound RTCP report (a sender
report with one report block about what it received, and an SDES,
harness.wire.whatsapp.sender_report); the fraction lost in the block about
this side's stream drives :class:`LossBasedBitrate`. That WhatsApp adapts
its audio bitrate down to about 6 kbit/s as the network degrades is reported
(Meta's MLow post, docs/sources.md S64: a bandwidth estimator lowers the
codec's bitrate, 6 kbit/s is Opus's lowest operating point); the control law
is a guess [S] (libwebrtc's loss-based rule, S65), and so are 24 kbit/s as
the start [S] and the report period [S]. Each change is in the result's
``bitrate_changes``, and each timeline row carries the bitrate then.

Round trips: the 0x0801/0x0802 pings measure this side's leg to the relay
(``relay_rtt_ms``). For the end-to-end ``rtt_ms`` each side sends its relay
leg (median so far) to the other every RTT_SHARE_PERIOD_S over the lab's
signalling server (``--signal``, where the real app has its own servers),
and the call's round trip is the sum of the two legs
(harness.calls.app.client); the RTCP reports' LSR/DLSR are filled in but not
used for it. Without signalling the call goes on and ``rtt_ms`` stays null.
Media or reports arriving with this side's own SSRC are dropped
(harness.calls.app.media) and counted; frames whose integrity tag does not
match are dropped and counted in ``warp_tag_mismatch``."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import cast

from harness.calls.app.client import CallFailed, Session
from harness.calls.app.media import cancel, change_bitrate
from harness.calls.app.opus import OpusSettings
from harness.calls.app.relay_rtt import share_relay_rtt
from harness.calls.app.rtcp import RtcpRoundTrips
from harness.wire import rtcp
from harness.wire import whatsapp as wa
from harness.wire.rtp import WireError

# The ports a circumvention-list commenter attributes to WhatsApp calls
# (docs/sources.md S19, S20, Flowseal PR #8553); 3478 first: the one SonicWall lists.
CALL_PORTS = (3478, 3479, 3480, 3481, 3482, 3484, 3488, 3489, 3491, 3492, 3493, 3495,
              3496, 3497)
ALLOCATE_RETRY_S = 0.5  # [S] the real retransmission schedule is not reported
ALLOCATE_TIMEOUT_S = 8.0  # [S]
PING_PERIOD_S = 1.0  # [S] keepalive period not reported
MAX_BITRATE = 24000  # [S] WhatsApp's starting Opus bitrate is not reported
MIN_BITRATE = 6000  # Opus's lowest operating point, where Meta's post has it (S64)
OPUS = OpusSettings(sample_rate=wa.MEDIA_SAMPLE_RATE, frame_ms=wa.MEDIA_FRAME_MS,
                    bitrate=MAX_BITRATE)
REPORT_PERIOD_S = 1.0  # [S] WhatsApp's RTCP interval is not reported
RTP_CLOCK = wa.MEDIA_SAMPLE_RATE
PEER_IDS = {"caller": 1, "callee": 2}
RTT_SHARE_PERIOD_S = 1.0  # [S]


@dataclass
class LossBasedBitrate:
    """The sender's bitrate, stepped on each report of the loss of its stream.

    [S] The control law is a guess: libwebrtc's loss-based rule
    (SendSideBandwidthEstimation::UpdateEstimate, draft-ietf-rmcat-gcc-02 §6;
    docs/sources.md S65), applied once a report. With the report's 8-bit
    fraction lost f: f <= 5 (about 2 %) → bitrate × 1.08 + 1000 bit/s;
    f <= 26 (about 10 %) → unchanged; above → bitrate × (512 − f) / 512
    (= 1 − loss/2). Kept within [minimum, maximum] and rounded to 100 bit/s.
    Under 25 % loss it falls from 24 to 6 kbit/s in 11 reports (50 %: 5);
    with no loss it climbs back from 6 to 24 in 9."""

    bitrate: int = MAX_BITRATE
    minimum: int = MIN_BITRATE
    maximum: int = MAX_BITRATE

    LOW_LOSS = 5  # of 256: libwebrtc's 2 % (kDefaultLowLossThreshold)
    HIGH_LOSS = 26  # of 256: libwebrtc's 10 % (kDefaultHighLossThreshold)

    def on_report(self, fraction_lost: int) -> int:
        """The bitrate after a report whose fraction lost is `fraction_lost`/256."""
        if not 0 <= fraction_lost <= 255:
            raise ValueError(f"fraction lost is 0..255, got {fraction_lost}")
        if fraction_lost <= self.LOW_LOSS:
            target = self.bitrate * 1.08 + 1000
        elif fraction_lost <= self.HIGH_LOSS:
            target = self.bitrate
        else:
            target = self.bitrate * (512 - fraction_lost) / 512
        self.bitrate = int(round(max(self.minimum, min(self.maximum, target)) / 100) * 100)
        return self.bitrate


class WhatsAppTransport(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._session: Session | None = None
        self._allocated: asyncio.Future[tuple[str, int]] | None = None
        self._relay: tuple[str, int] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._sharer: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._auth_key = b""
        self._cname = wa.cname(os.urandom(6))
        self._rtcp = RtcpRoundTrips()
        self._bitrate = LossBasedBitrate()
        self._peer_ssrc: int | None = None
        self._last_report = (0, 0)  # (expected, received) at the last report
        self._tag_mismatch = 0

    # ------------------------------------------------------------------ Transport

    async def start(self, session: Session) -> None:
        self._session = session
        self._auth_key = wa.warp_auth_key(wa.call_key(session.cfg.call_id))
        loop = asyncio.get_running_loop()
        self._allocated = loop.create_future()
        self._sharer = asyncio.create_task(share_relay_rtt(session, RTT_SHARE_PERIOD_S))
        await loop.create_datagram_endpoint(lambda: self, local_addr=("0.0.0.0", 0))
        self._relay = await self._allocate(session)
        session.extra["relay"] = f"{self._relay[0]}:{self._relay[1]}"
        session.set_path("udp-relay", f"allocated at {self._relay[0]}:{self._relay[1]}")
        session.sender.send = self._send_media
        self._pinger = asyncio.create_task(self._ping())
        self._reporter = asyncio.create_task(self._report())

    async def close(self) -> None:
        await cancel(self._pinger)
        await cancel(self._sharer)
        await cancel(self._reporter)
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

    def _send_media(self, sequence: int, timestamp: int, payload: bytes) -> None:
        """`sequence` is the frame's index in the stream; WARP's sequence
        numbers start at 1, the rollover counter is what lies above 16 bits."""
        if self._transport is not None and self._relay is not None and self._session:
            number = sequence + wa.FIRST_SEQUENCE
            self._transport.sendto(wa.media_frame(number & 0xFFFF, timestamp,
                                                  self._session.sender.ssrc, payload,
                                                  sequence, self._auth_key, number >> 16),
                                   self._relay)

    # ------------------------------------------------------------------ RTCP and the bitrate

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(REPORT_PERIOD_S)
            if self._transport is not None and self._relay is not None:
                self._transport.sendto(self._report_packet(time.monotonic()), self._relay)

    def _report_packet(self, now: float) -> bytes:
        """The compound report: this side's SR, with a block about the peer's
        stream once any of it arrived."""
        session = self._session
        assert session is not None
        stats, sent = session.receiver.stats, session.sender.stats
        expected = stats.expected - self._last_report[0]
        received = stats.packets_received - self._last_report[1]
        self._last_report = (stats.expected, stats.packets_received)
        block = None
        if self._peer_ssrc is not None:
            fraction = max(0.0, (expected - received) / expected) if expected > 0 else 0.0
            lsr, dlsr = self._rtcp.echo(now)
            block = rtcp.block(self._peer_ssrc, fraction, stats.lost, stats.highest_seq or 0,
                               lsr, dlsr)
        return wa.sender_report(session.sender.ssrc, self._rtcp.stamp(now, time.time()),
                                sent.last_timestamp, sent.packets_sent, sent.bytes_sent,
                                self._cname, block)

    def _on_rtcp(self, data: bytes) -> None:
        session = self._session
        assert session is not None
        try:
            if rtcp.rtcp_ssrc(data) == session.sender.ssrc:  # this side's own, echoed
                session.receiver.stats.own_rtcp_dropped += 1
                return
            self._rtcp.on_sender_report(data, time.monotonic())
            block = rtcp.report_block(data)
        except WireError:
            return
        if block is None or block.source != session.sender.ssrc:
            return
        fraction = min(255, round(block.fraction_lost * 256))
        before = self._bitrate.bitrate
        after = self._bitrate.on_report(fraction)
        if after != before:
            reason = "loss over 10 %" if after < before else "loss under 2 %"
            change_bitrate(session.sender, session.bitrate_changes,
                           session.t_attempt or session.t_process,
                           OpusSettings(OPUS.sample_rate, OPUS.frame_ms, after), reason,
                           loss_pct=round(100 * fraction / 256, 1))
            session.events.emit("bitrate", bitrate=after, reason=reason)

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        session = self._session
        assert session is not None
        if wa.is_media(data):
            try:
                frame = wa.parse_media(data)
            except WireError:
                return
            if not frame.tag_ok(self._auth_key):  # rollover 0: 2^16 frames last over an hour
                self._tag_mismatch += 1
                session.extra["warp_tag_mismatch"] = self._tag_mismatch
                return
            if frame.rtp.ssrc != session.sender.ssrc:
                self._peer_ssrc = frame.rtp.ssrc
            session.receiver.on_rtp(frame.rtp, len(data))
            return
        if wa.is_rtcp(data):
            self._on_rtcp(data)
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
