"""The telegram-like profile's transport: P2P first, then UDP reflectors, then
the TCP relay, as libtgvoip/tgcalls do (docs/sources.md S16, S24, S26, S61, S62).

1. **P2P.** Both sides learn their public address with a STUN Binding
   Request to the server given as ``--stun`` (harness.calls.place gives the
   reflector's UDP port 596: tgcalls' STUN endpoints in phoneConnectionWebrtc
   are Telegram's own), swap it through the signalling server, and punch with
   STUN Binding Requests. So a censor that drops STUN to Telegram's servers
   takes P2P away too, as zapret's `--filter-l7=stun` fix on ports 590-1400
   suggests it did (docs/sources.md S12, S13). The path is P2P only when
   both sides saw their punch answered (they tell each other), so both agree.
2. **UDP reflectors** on 596-599 at the relay: the 40-byte hello, resent
   every 0.5 s until one port answers (with the 64-byte self-info), then every
   10 s (tgcalls). Alongside, as tgcalls gathers every server Telegram hands
   it at once, a TURN Allocate to UDP 1400 (harness.wire.stun: 401, then the
   authenticated request; S18 shows Allocates on 1400); [S] the allocation is
   recorded (``turn`` in the result) but carries no media. UDP pings (the
   hello with a random query id, libtgvoip ``SendUdpPing``) every 0.5 s,
   judged like libtgvoip's ``EvaluateUdpPingResults`` 1 s after the 4th
   (VoIPController.cpp ``udpPingCount==4``): no answer → UDP_NOT_AVAILABLE →
   TCP relay; fewer than 3 → UDP_BAD → TCP relay (libtgvoip also keeps UDP
   and judges again after the 10th, < 7 answers → not available; we move at
   once); 3 or more → UDP_AVAILABLE, the reflector carries the call.
3. **TCP relay** on 443 at the relay.

Audio: Opus in 60 ms frames at 20 kbit/s (RTP clock 48 kHz, RFC 7587). Each
far-end report (RTCP, once a second) gives the loss of the last second; when
their average over the last 10 (missing ones count 0) is over 2 %, the
server default of libtgvoip's ``packet_loss_for_extra_ec``, it turns extra
error correction on and sends 8 kbit/s (VoIPController.cpp
``UpdateCongestion``/``UpdateAudioBitrate``); under 2 % it turns it off and
climbs back by 1000 bit/s per 0.3 s (``audio_bitrate_step_incr``), as
libtgvoip does when its congestion controller allows. [S] libtgvoip's extra
EC appends a secondary encoder's copies of the last 2-4 frames to each
packet; ours is Opus in-band FEC planned for the measured loss; libtgvoip
measures loss from its own acks, ours from the peer's RTCP; the climb is
applied once a report.

Each side reports every REPORT_PERIOD_S: an RTCP sender report with one
report block once it sends media (a receiver report before), whose LSR/DLSR
give the end-to-end round trip through the relays (harness.calls.app.rtcp);
a relayed call's ``rtt_ms`` is that, its reflector/TCP-relay pings are
``relay_rtt_ms`` (harness.calls.app.client). Each side addresses its
reflector packets to the other side's full tag (harness.wire.telegram), so
the reflector never relays a side's packets back to it; reports and media
that still arrive with this side's own SSRC are dropped and counted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, cast

from harness.calls.app.client import CallFailed, Session
from harness.calls.app.media import cancel, change_bitrate
from harness.calls.app.opus import OpusSettings
from harness.calls.app.rtcp import RtcpRoundTrips
from harness.calls.app.signal_channel import SignalChannel, SignalError
from harness.wire import rtcp, stun
from harness.wire import telegram as tg
from harness.wire.rtp import RtpPacket, WireError, is_rtp

P2P, REFLECTOR, TCP = "p2p", "udp-reflector", "tcp-relay"
HELLO_PERIOD_S, HELLO_KEEPALIVE_S, PING_PERIOD_S = 0.5, 10.0, 0.5
# libtgvoip VoIPController.cpp SendUdpPings/EvaluateUdpPingResults: the
# verdict 1 s after the 4th ping; no answer: not available, under 3: bad.
JUDGE_AFTER_PINGS = 4
JUDGE_DELAY_S = 1.0
UDP_BAD_BELOW = 3
TURN_RETRY_S, TURN_REQUESTS = 0.5, 7  # [S] RFC 5389's 7 requests, at a fixed 0.5 s
STUN_TIMEOUT_S, STUN_RETRY_S = 1.5, 0.3  # [S]
PUNCH_S, PUNCH_PERIOD_S = 2.5, 0.2  # [S]
SIGNAL_TIMEOUT_S = 5.0
TCP_CONNECT_S = 5.0
REPORT_PERIOD_S = 1.0
# The climb after extra EC: libtgvoip's step per UpdateAudioBitrate, once a report.
RECOVER_STEP = round(tg.BITRATE_STEP_INCR * REPORT_PERIOD_S / tg.BITRATE_UPDATE_S)
# Coded at 16 kHz (wideband) [S]: fed 48 kHz at 8-20 kbit/s, libopus picks a wider
# band whose extra octave PESQ-WB cannot hear and scores ~2.8 instead of ~3.7 on
# the reference speech; which bandwidth libtgvoip lets Opus use was not checked.
OPUS_NORMAL = OpusSettings(sample_rate=16000, frame_ms=tg.FRAME_MS, bitrate=tg.MAX_BITRATE)
RTP_CLOCK = tg.MEDIA_SAMPLE_RATE


ROLES = ("caller", "callee")


def peer_tag(call_id: str, role: str) -> bytes:
    """This side's 16-byte tag: the call's 12 bytes, then the side's own 4
    [S: both derived here from the call id, where Telegram's server hands out
    the first and tgcalls draws the second at random and sends it to the peer
    in its ICE candidates]."""
    if role not in ROLES:
        raise ValueError(f"role must be caller or callee, got {role!r}")
    call_tag = hashlib.sha256(call_id.encode()).digest()[:tg.CALL_TAG_BYTES]
    own = hashlib.sha256(f"{call_id}/{role}".encode()).digest()[:tg.SENDER_TAG_BYTES]
    return tg.peer_tag(call_tag, own if any(own) else b"\x00\x00\x00\x01")


def partner_tag(call_id: str, role: str) -> bytes:
    """The other side's tag: what this side addresses its reflector packets to."""
    return peer_tag(call_id, ROLES[1 - ROLES.index(role)])


def turn_username(call_id: str, role: str) -> str:
    """[S] This side's TURN username (Telegram's server hands one out)."""
    return f"{peer_tag(call_id, role).hex()}:{role}"


class TelegramTransport(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self._udp: asyncio.DatagramTransport | None = None
        self._session: Session | None = None
        self._tag = b""
        self._to = b""  # the partner's tag
        self._rtcp = RtcpRoundTrips()
        self._stun_waiters: dict[bytes, asyncio.Future[tuple[str, int] | None]] = {}
        self._peer_addr: tuple[str, int] | None = None
        self._p2p_acked = asyncio.Event()
        self._reflector: tuple[str, int] | None = None
        self._answered = asyncio.Event()
        self._pings: dict[int, float] = {}
        self._ping_replies = 0
        self._tcp: asyncio.StreamWriter | None = None
        self._path_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._turn_waiters: dict[bytes, asyncio.Future[stun.StunMessage]] = {}
        self._loss_history: deque[float] = deque([0.0] * tg.LOSS_HISTORY,
                                                 maxlen=tg.LOSS_HISTORY)
        self._extra_ec = False
        self._last_report = (0, 0)  # (expected, received) at the last report

    @property
    def _ssrc(self) -> int:
        """The SSRC of this side's stream (the sender's)."""
        return self._session.sender.ssrc if self._session is not None else 0

    # ------------------------------------------------------------------ Transport

    async def start(self, session: Session) -> None:
        self._session = session
        self._tag = peer_tag(session.cfg.call_id, session.cfg.role)
        self._to = partner_tag(session.cfg.call_id, session.cfg.role)
        session.extra["reflector"] = None
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("0.0.0.0", 0))
        session.sender.send = self._send_media
        if await self._try_p2p(session):
            session.set_path(P2P, "both sides' punches answered")
            self._spawn(self._p2p_checks())
        else:
            self._spawn(self._reflector_ladder(session))
            await self._path_ready.wait()
        self._spawn(self._report())

    async def close(self) -> None:
        for task in self._tasks:
            await cancel(task)
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.ensure_future(work))

    def _switch(self, path: str, reason: str) -> None:
        assert self._session is not None
        self._session.set_path(path, reason)
        self._path_ready.set()

    # ------------------------------------------------------------------ 1. P2P

    async def _try_p2p(self, session: Session) -> bool:
        cfg = session.cfg
        if not cfg.p2p or cfg.signal is None:
            return False
        channel: SignalChannel | None = None
        try:
            channel = await SignalChannel.join(*cfg.signal, cfg.call_id, SIGNAL_TIMEOUT_S)
            await channel.wait_peer(SIGNAL_TIMEOUT_S)
            mine = await self._public_address(cfg.stun)
            channel.send({"endpoint": list(mine) if mine else None})
            theirs = await channel.receive("endpoint", SIGNAL_TIMEOUT_S)
            ok = bool(mine and theirs) and await self._punch((str(theirs[0]), int(theirs[1])))
            channel.send({"p2p": ok})
            peer_ok = bool(await channel.receive("p2p", SIGNAL_TIMEOUT_S))
            session.extra["p2p_attempt"] = {"public": mine, "peer": theirs, "mine_ok": ok,
                                            "peer_ok": peer_ok}
            return ok and peer_ok
        except SignalError as exc:
            session.extra["p2p_attempt"] = {"error": str(exc)}
            return False
        finally:
            if channel is not None:
                await channel.close()

    async def _public_address(self, server: tuple[str, int] | None) -> tuple[str, int] | None:
        if server is None or self._udp is None:
            return None
        deadline = time.monotonic() + STUN_TIMEOUT_S
        while time.monotonic() < deadline:
            txid = os.urandom(12)
            waiter = asyncio.get_running_loop().create_future()
            self._stun_waiters[txid] = waiter
            self._udp.sendto(stun.binding_request(txid), server)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(waiter, STUN_RETRY_S)
        return None

    async def _punch(self, peer: tuple[str, int]) -> bool:
        assert self._udp is not None
        self._peer_addr = peer
        deadline = time.monotonic() + PUNCH_S
        while time.monotonic() < deadline and not self._p2p_acked.is_set():
            self._udp.sendto(stun.binding_request(), peer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._p2p_acked.wait(), PUNCH_PERIOD_S)
        return self._p2p_acked.is_set()

    async def _p2p_checks(self) -> None:
        """Binding requests to the peer every PING_PERIOD_S: the path's RTT."""
        assert self._udp is not None and self._peer_addr is not None
        while True:
            txid = os.urandom(12)
            self._pings[int.from_bytes(txid[:8], "big")] = time.monotonic()
            self._udp.sendto(stun.binding_request(txid), self._peer_addr)
            await asyncio.sleep(PING_PERIOD_S)

    # ------------------------------------------------------------------ 2. reflectors

    async def _reflector_ladder(self, session: Session) -> None:
        self._spawn(self._hellos(session.cfg.relay_ip))
        self._spawn(self._turn_allocate(session))
        for sent in range(1, JUDGE_AFTER_PINGS + 1):
            self._send_ping(session.cfg.relay_ip)
            if sent < JUDGE_AFTER_PINGS:
                await asyncio.sleep(PING_PERIOD_S)
        await asyncio.sleep(JUDGE_DELAY_S)
        replies = self._ping_replies
        if replies == 0:
            await self._to_tcp(session, f"UDP_NOT_AVAILABLE: 0 of {JUDGE_AFTER_PINGS} "
                                        "pings answered")
            return
        if replies < UDP_BAD_BELOW:
            await self._to_tcp(session, f"UDP_BAD: {replies} of {JUDGE_AFTER_PINGS} "
                                        "pings answered")
            return
        session.extra["udp_pings"] = f"UDP_AVAILABLE: {replies} of {JUDGE_AFTER_PINGS} answered"
        while True:  # keep measuring the reflector's RTT
            self._send_ping(session.cfg.relay_ip)
            await asyncio.sleep(PING_PERIOD_S)

    async def _hellos(self, relay_ip: str) -> None:
        assert self._udp is not None
        while not self._answered.is_set():
            for port in tg.REFLECTOR_UDP_PORTS:
                self._udp.sendto(tg.hello(self._tag, _query()), (relay_ip, port))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), HELLO_PERIOD_S)
        while True:
            await asyncio.sleep(HELLO_KEEPALIVE_S)
            if self._reflector is not None:
                self._udp.sendto(tg.hello(self._tag, _query()), self._reflector)

    def _send_ping(self, relay_ip: str) -> None:
        assert self._udp is not None
        query = _query()
        self._pings[query] = time.monotonic()
        targets = [self._reflector] if self._reflector else [
            (relay_ip, port) for port in tg.REFLECTOR_UDP_PORTS]
        for target in targets:
            self._udp.sendto(tg.hello(self._tag, query), target)

    async def _turn_allocate(self, session: Session) -> None:
        """Allocate at the TURN port: 401, then with credentials (RFC 5766 §6)."""
        assert self._udp is not None
        server = (session.cfg.relay_ip, tg.TURN_UDP_PORT)
        info: dict[str, Any] = {"server": f"{server[0]}:{server[1]}", "allocated": False,
                                "requests": 0}
        session.extra["turn"] = info
        username = turn_username(session.cfg.call_id, session.cfg.role)
        auth: stun.TurnAuth | None = None
        for _ in range(TURN_REQUESTS):
            txid = os.urandom(12)
            waiter = asyncio.get_running_loop().create_future()
            self._turn_waiters[txid] = waiter
            self._udp.sendto(stun.allocate_request(txid, tg.TURN_SOFTWARE, auth), server)
            info["requests"] += 1
            try:
                reply = await asyncio.wait_for(waiter, TURN_RETRY_S)
            except TimeoutError:
                continue
            finally:
                self._turn_waiters.pop(txid, None)
            code = stun.read_error_code(reply.get(stun.ERROR_CODE))
            realm, nonce = reply.get(stun.REALM), reply.get(stun.NONCE)
            if reply.msg_type == stun.ALLOCATE_ERROR and code == 401 and auth is None \
                    and realm is not None and nonce is not None:
                auth = stun.TurnAuth(username, tg.turn_password(username),
                                     realm.decode(errors="replace"), nonce)
                info["realm"] = auth.realm
                continue
            if reply.msg_type == stun.ALLOCATE_SUCCESS:
                relayed = reply.get(stun.XOR_RELAYED_ADDRESS)
                address = stun.read_xor_address(relayed) if relayed else None
                info.update(allocated=True,
                            relayed=f"{address[0]}:{address[1]}" if address else None)
            else:
                info["error"] = code
            return

    # ------------------------------------------------------------------ 3. TCP relay

    async def _to_tcp(self, session: Session, reason: str) -> None:
        relay = (session.cfg.relay_ip, tg.TCP_RELAY_PORT)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*relay),
                                                    TCP_CONNECT_S)
        except (OSError, TimeoutError) as exc:
            failure = CallFailed("relay-unreachable", "tcp-relay",
                                 f"{reason}; TCP relay {relay[0]}:{relay[1]} failed: {exc!r}")
            if session.path is None:
                session.fail(failure)
            return
        self._tcp = writer
        self._spawn(self._read_tcp(session, reader))
        self._switch(TCP, reason)
        while not writer.is_closing():  # keepalive and RTT on the TCP relay
            query = _query()
            self._pings[query] = time.monotonic()
            writer.write(tg.tcp_frame(tg.hello(self._tag, query)))
            await asyncio.sleep(PING_PERIOD_S * 2)

    async def _read_tcp(self, session: Session, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (length,) = tg.TCP_FRAME.unpack(await reader.readexactly(tg.TCP_FRAME.size))
                self._relayed(await reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            session.fail(CallFailed("relay-lost", "media", "the TCP relay closed"))

    # ------------------------------------------------------------------ sending

    def _send_media(self, sequence: int, timestamp: int, payload: bytes) -> None:
        self._send(RtpPacket(tg.MEDIA_PAYLOAD_TYPE, sequence, timestamp, self._ssrc,
                             payload).encode())

    def _send(self, packet: bytes) -> None:
        path = self._session.path if self._session else None
        if path == P2P and self._udp and self._peer_addr:
            self._udp.sendto(packet, self._peer_addr)
        elif path == REFLECTOR and self._udp and self._reflector:
            self._udp.sendto(self._for_partner(packet), self._reflector)
        elif path == TCP and self._tcp and not self._tcp.is_closing():
            self._tcp.write(tg.tcp_frame(self._for_partner(packet)))

    def _for_partner(self, packet: bytes) -> bytes:
        return tg.data(self._to, tg.sender_tag(self._tag), packet)

    async def _report(self) -> None:
        """An RTCP report every REPORT_PERIOD_S: the loss since the last, and the
        LSR/DLSR of the peer's last sender report; a sender report (with this
        side's NTP time for the peer to echo) once media went out."""
        assert self._session is not None
        while True:
            await asyncio.sleep(REPORT_PERIOD_S)
            self._send(self._report_packet(time.monotonic()))

    def _report_packet(self, now: float) -> bytes:
        assert self._session is not None
        stats, sent = self._session.receiver.stats, self._session.sender.stats
        expected = stats.expected - self._last_report[0]
        received = stats.packets_received - self._last_report[1]
        self._last_report = (stats.expected, stats.packets_received)
        fraction = max(0.0, (expected - received) / expected) if expected > 0 else 0.0
        lsr, dlsr = self._rtcp.echo(now)
        source = self._rtcp.peer_ssrc or 0
        if sent.packets_sent == 0:
            return rtcp.receiver_report(self._ssrc, source, fraction, stats.lost,
                                        stats.highest_seq or 0, lsr, dlsr)
        return rtcp.sender_report(self._ssrc, self._rtcp.stamp(now, time.time()),
                                  sent.last_timestamp, sent.packets_sent, sent.bytes_sent,
                                  source, fraction, stats.lost, stats.highest_seq or 0, lsr,
                                  dlsr)

    def _adapt(self, fraction_lost: float) -> None:
        """libtgvoip: extra EC and 8 kbit/s while the loss of the last 10
        reports averages over 2 %; below, EC off and the climb back (see the
        module docstring)."""
        session = self._session
        assert session is not None
        self._loss_history.append(fraction_lost)
        average = sum(self._loss_history) / len(self._loss_history)
        current = session.sender.encoder.settings
        if average > tg.EXTRA_EC_ABOVE_LOSS:
            if self._extra_ec:
                return
            self._extra_ec = True
            target = OpusSettings(current.sample_rate, tg.FRAME_MS, tg.EXTRA_EC_BITRATE,
                                  fec=True, expected_loss_pct=min(100, round(100 * average)))
            reason = "extra EC on"
        elif self._extra_ec and average < tg.EXTRA_EC_ABOVE_LOSS:
            self._extra_ec = False
            target = OpusSettings(current.sample_rate, tg.FRAME_MS, current.bitrate)
            reason = "extra EC off"
        elif not self._extra_ec and current.bitrate < tg.MAX_BITRATE:
            target = OpusSettings(current.sample_rate, tg.FRAME_MS,
                                  min(tg.MAX_BITRATE, current.bitrate + RECOVER_STEP))
            reason = "climb"
        else:
            return
        change_bitrate(session.sender, session.bitrate_changes,
                       session.t_attempt or session.t_process, target, reason,
                       loss_pct=round(100 * fraction_lost, 1),
                       avg_loss_pct=round(100 * average, 2))
        session.events.emit("bitrate", bitrate=target.bitrate, fec=target.fec, reason=reason)

    # ------------------------------------------------------------------ receiving

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._udp = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if stun.is_stun(data):
            self._stun(data, addr)
        elif self._session is not None and addr[0] == self._session.cfg.relay_ip:
            self._relayed(data, addr)
        else:
            self._media(data)

    def _stun(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self._udp is not None
        try:
            msg_type, txid, mapped = stun.parse(data)
        except WireError:
            return
        if msg_type in (stun.ALLOCATE_SUCCESS, stun.ALLOCATE_ERROR):
            turn = self._turn_waiters.get(txid)
            if turn is not None and not turn.done():
                turn.set_result(stun.StunMessage.decode(data))
        elif msg_type == stun.BINDING_REQUEST:
            self._udp.sendto(stun.binding_success(txid, addr), addr)
        elif msg_type == stun.BINDING_SUCCESS:
            waiter = self._stun_waiters.pop(txid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(mapped)
            elif addr == self._peer_addr:
                self._p2p_acked.set()
                if self._note_rtt(int.from_bytes(txid[:8], "big"), end_to_end=True):
                    assert self._session is not None
                    self._session.rtt_method = "stun-p2p"

    def _relayed(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        """A packet from the reflector (`addr`) or the TCP relay (no `addr`)."""
        if tg.is_self_info(data):
            with contextlib.suppress(WireError):
                self._answer(tg.parse_self_info(data), addr)
            return
        with contextlib.suppress(WireError):
            packet = tg.parse_data(data)
            if packet.tag[:tg.CALL_TAG_BYTES] == self._tag[:tg.CALL_TAG_BYTES]:
                self._media(packet.payload)

    def _answer(self, info: tg.SelfInfo, addr: tuple[str, int] | None) -> None:
        if info.tag != self._tag:
            return
        if addr is not None and not self._answered.is_set():
            self._reflector = addr
            self._answered.set()
            assert self._session is not None
            self._session.extra["reflector"] = f"{addr[0]}:{addr[1]}"
            self._session.extra["reflector_saw"] = f"{info.address[0]}:{info.address[1]}"
            self._switch(REFLECTOR, f"reflector {addr[0]}:{addr[1]} answered the hello")
        if self._note_rtt(info.query_id) and addr is not None:
            self._ping_replies += 1

    def _rtcp_report(self, packet: bytes, now: float) -> None:
        session = self._session
        assert session is not None
        if rtcp.rtcp_ssrc(packet) == self._ssrc:  # this side's own report, echoed
            session.receiver.stats.own_rtcp_dropped += 1
            return
        if rtcp.is_sender_report(packet):
            self._rtcp.on_sender_report(packet, now)
        block = rtcp.report_block(packet)
        if block is None:
            return
        self._adapt(block.fraction_lost)
        rtt = self._rtcp.round_trip(block, self._ssrc, now)
        if rtt is not None and session.path in (REFLECTOR, TCP):
            session.rtt_samples_s.append(rtt)
            session.rtt_method = "rtcp-sr-rr"

    def _note_rtt(self, query: int, end_to_end: bool = False) -> bool:
        """An answered ping: to the peer itself (P2P, `end_to_end`) or to the
        reflector / TCP relay (one leg)."""
        sent = self._pings.pop(query, None)
        if sent is not None and self._session is not None:
            samples = (self._session.rtt_samples_s if end_to_end
                       else self._session.relay_rtt_samples_s)
            samples.append(time.monotonic() - sent)
        return sent is not None

    def _media(self, packet: bytes) -> None:
        if self._session is None:
            return
        if rtcp.is_rtcp_report(packet):
            with contextlib.suppress(WireError):
                self._rtcp_report(packet, time.monotonic())
        elif is_rtp(packet):
            with contextlib.suppress(WireError):
                self._session.receiver.on_rtp(RtpPacket.decode(packet), len(packet))


def _query() -> int:
    """A random 64-bit query id (libtgvoip SendUdpPing: crypto.rand_bytes)."""
    return int.from_bytes(os.urandom(8), "little")
