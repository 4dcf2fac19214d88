"""The app-like clients' receive path, round trips and adaptation, driven
without a lab: their own media or reports coming back through a relay are
dropped and counted; a relayed call's rtt_ms is end to end (RTCP SR/RR for
telegram-like, both relay legs for whatsapp-like), the relay leg alone is
relay_rtt_ms; every result carries the frame duration it sent; telegram-like
judges UDP after 4 pings and turns extra EC on over 2 % average loss (as
libtgvoip), allocates at the TURN port; whatsapp-like steps its bitrate
between 24 and 6 kbit/s on the peer's RTCP reports."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.calls.app import telegram_client, whatsapp_client
from harness.calls.app.client import ClientConfig, Session, build_result
from harness.calls.app.media import OpusReceiver, OpusSender, Timeline
from harness.calls.app.opus import OpusEncoder, OpusSettings
from harness.calls.app.relay_rtt import share_relay_rtt
from harness.calls.app.rtcp import DLSR_UNITS_PER_S, RtcpRoundTrips
from harness.calls.events import EventLog
from harness.measure.peer import PeerReport
from harness.measure.refsignal import generate_reference_wav
from harness.services.app_relays.telegram_reflector import ReflectorPort, ReflectorState
from harness.services.signalling import start_server
from harness.wire import rtcp, stun
from harness.wire import telegram as tg
from harness.wire import whatsapp as wa
from harness.wire.rtp import RtpPacket

RELAY = "198.18.9.9"


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_reference_wav(tmp_path_factory.mktemp("clients") / "ref.wav", 1.0)


def session_for(audio: Path, profile: str, role: str = "caller",
                signal: tuple[str, int] | None = None) -> Session:
    """A session built the way harness.calls.app.client.run_call builds it."""
    module: Any = telegram_client if profile == "telegram-like" else whatsapp_client
    opus = module.OPUS_NORMAL if profile == "telegram-like" else module.OPUS
    cfg = ClientConfig(role=role, profile=profile, call_id="run-x-call-1", relay_ip=RELAY,
                       audio=audio, out=audio.with_suffix(".json"), signal=signal)
    return Session(cfg, OpusSender(audio, opus, module.RTP_CLOCK),
                   OpusReceiver(None, module.RTP_CLOCK, opus.frame_ms), EventLog(None))


def opus_frame(settings: OpusSettings) -> bytes:
    return OpusEncoder(settings).encode(np.zeros(settings.frame_samples, dtype=np.int16))


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- own SSRC


def test_the_receiver_drops_and_counts_packets_with_its_own_ssrc(audio: Path) -> None:
    session = session_for(audio, "whatsapp-like")
    own = session.sender.ssrc
    payload = opus_frame(whatsapp_client.OPUS)
    receiver = session.receiver
    receiver.on_rtp(RtpPacket(120, 0, 0, own, payload), 80)
    receiver.on_rtp(RtpPacket(120, 1, 960, own, payload), 80)
    assert receiver.stats.packets_received == 0 and receiver.stats.frames_decoded == 0
    assert not receiver.first_frame.is_set()
    assert receiver.stats.own_ssrc_dropped == 2
    receiver.on_rtp(RtpPacket(120, 0, 0, own ^ 1, payload), 80)  # the peer's stream
    assert receiver.stats.packets_received == 1 and receiver.stats.frames_decoded == 1
    result = build_result(session, Timeline(), None, None)
    assert result["own_ssrc_dropped"] == 2 and result["packets_received"] == 1
    assert result["frame_ms"] == 60


def test_whatsapp_like_does_not_decode_its_own_media_echoed_by_the_relay(audio: Path) -> None:
    session = session_for(audio, "whatsapp-like")
    transport = _whatsapp_on_relay(session)
    udp = transport._transport
    payload = opus_frame(whatsapp_client.OPUS)
    transport._send_media(0, 0, payload)
    [(frame, _)] = udp.sent
    transport.datagram_received(frame, (RELAY, 3478))  # the relay sends it back
    stats = session.receiver.stats
    assert stats.frames_decoded == 0 and stats.packets_received == 0
    assert not session.receiver.first_frame.is_set()
    parsed = wa.parse_media(frame)
    assert parsed.rtp.sequence == 1 and parsed.tag_ok(transport._auth_key)  # WARP starts at 1
    peer_ssrc = parsed.rtp.ssrc ^ 0xFFFF
    transport.datagram_received(wa.media_frame(1, 0, peer_ssrc, payload, 0,
                                               transport._auth_key), (RELAY, 3478))
    assert stats.frames_decoded == 1
    assert stats.own_ssrc_dropped == 1
    forged = wa.media_frame(2, 960, peer_ssrc, payload, 1, wa.warp_auth_key(b"\x00" * 32))
    transport.datagram_received(forged, (RELAY, 3478))
    assert stats.packets_received == 1 and session.extra["warp_tag_mismatch"] == 1


def _whatsapp_on_relay(session: Session) -> Any:
    transport = whatsapp_client.WhatsAppTransport()
    transport._session = session
    transport._auth_key = wa.warp_auth_key(wa.call_key(session.cfg.call_id))
    transport.connection_made(FakeUdp())  # type: ignore[arg-type]
    transport._relay = (RELAY, 3478)
    return transport


def _telegram_on_reflector(session: Session, tag: bytes) -> tuple[Any, FakeUdp]:
    transport = telegram_client.TelegramTransport()
    transport._session = session
    transport._tag = tag
    transport._to = telegram_client.partner_tag(session.cfg.call_id, session.cfg.role)
    udp = FakeUdp()
    transport.connection_made(udp)  # type: ignore[arg-type]
    transport._reflector = (RELAY, 599)
    session.set_path(telegram_client.REFLECTOR, "test")
    return transport, udp


def test_telegram_like_does_not_decode_its_own_media_echoed_by_the_reflector(
        audio: Path) -> None:
    session = session_for(audio, "telegram-like")
    transport, udp = _telegram_on_reflector(session, telegram_client.peer_tag("run-x-call-1",
                                                                              "caller"))
    payload = opus_frame(telegram_client.OPUS_NORMAL)
    transport._send_media(0, 0, payload)
    [(packet, to)] = udp.sent
    assert to == (RELAY, 599)
    assert tg.parse_data(packet).tag == telegram_client.partner_tag("run-x-call-1", "caller")
    # A reflector that got it wrong sends it back, to this side's own tag:
    echoed = tg.data(transport._tag, tg.sender_tag(transport._tag),
                     tg.parse_data(packet).payload)
    transport.datagram_received(echoed, (RELAY, 599))
    stats = session.receiver.stats
    assert stats.frames_decoded == 0 and stats.packets_received == 0
    assert stats.own_ssrc_dropped == 1


def test_telegram_like_ignores_its_own_reports_echoed_back(audio: Path) -> None:
    session = session_for(audio, "telegram-like")
    tag = telegram_client.peer_tag("run-x-call-1", "caller")
    transport, _ = _telegram_on_reflector(session, tag)
    own, peer_tag4 = session.sender.ssrc, tg.sender_tag(transport._to)
    lossy = rtcp.sender_report(own, rtcp.ntp_timestamp(1.0), 0, 1, 1, 0, 0.5, 10, 20)
    transport.datagram_received(tg.data(tag, peer_tag4, lossy), (RELAY, 599))
    assert session.sender.encoder.settings.bitrate == tg.MAX_BITRATE  # no adaptation
    assert session.receiver.stats.own_rtcp_dropped == 1
    peer = rtcp.sender_report(own ^ 1, rtcp.ntp_timestamp(1.0), 0, 1, 1, own, 0.5, 10, 20)
    transport.datagram_received(tg.data(tag, peer_tag4, peer), (RELAY, 599))
    # 50 % in one report: 5 % over the 10-report average, over libtgvoip's 2 %.
    assert session.sender.encoder.settings.bitrate == tg.EXTRA_EC_BITRATE
    assert session.sender.encoder.settings.fec


# --------------------------------------------------------------------------- round trips


def test_rtcp_round_trip_subtracts_the_time_the_peer_held_the_report() -> None:
    caller, callee = RtcpRoundTrips(), RtcpRoundTrips()
    caller_ssrc, callee_ssrc = 0x1111, 0x2222
    ntp = caller.stamp(100.000, 1_700_000_000.0)
    sr = rtcp.sender_report(caller_ssrc, ntp, 0, 5, 300, 0, 0.0, 0, 0)
    callee.on_sender_report(sr, 100.020)  # 20 ms caller → relay → callee
    lsr, dlsr = callee.echo(100.520)  # held for 0.5 s
    assert lsr == rtcp.ntp_middle(ntp) and dlsr == DLSR_UNITS_PER_S // 2
    block = rtcp.ReportBlock(caller_ssrc, 0.0, lsr, dlsr)
    # Back 40 ms later: 100.560 − 100.000 − 0.500 = 0.060 s, both legs both ways.
    assert caller.round_trip(block, caller_ssrc, 100.560) == pytest.approx(0.060, abs=1e-4)
    assert caller.round_trip(rtcp.ReportBlock(caller_ssrc, 0.0, 0, 0), caller_ssrc,
                             100.6) is None  # LSR 0: no SR of ours seen
    assert caller.round_trip(rtcp.ReportBlock(caller_ssrc, 0.0, lsr ^ 1, dlsr), caller_ssrc,
                             100.6) is None  # an SR we never sent
    assert caller.round_trip(rtcp.ReportBlock(callee_ssrc, 0.0, lsr, dlsr), caller_ssrc,
                             100.6) is None  # a block about another stream


def test_telegram_like_rtt_through_the_reflector_is_end_to_end(
        audio: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caller and callee, each on the reflector, trade sender reports through a
    real ReflectorState: the caller's rtt_ms is the round trip peer to peer
    (both legs), its reflector pings are relay_rtt_ms."""
    clock = [100.0]
    monkeypatch.setattr(telegram_client.time, "monotonic", lambda: clock[0])
    reflector = ReflectorState()
    caller_s = session_for(audio, "telegram-like", "caller")
    callee_s = session_for(audio, "telegram-like", "callee")
    caller, caller_udp = _telegram_on_reflector(
        caller_s, telegram_client.peer_tag("run-x-call-1", "caller"))
    callee, callee_udp = _telegram_on_reflector(
        callee_s, telegram_client.peer_tag("run-x-call-1", "callee"))
    inbox: dict[str, list[bytes]] = {"caller": [], "callee": []}
    for side, transport in (("caller", caller), ("callee", callee)):
        reflector.packet(tg.hello(transport._tag, 1), side, inbox[side].append, (RELAY, 1))
        inbox[side].clear()
    caller_s.sender.stats.packets_sent = callee_s.sender.stats.packets_sent = 5

    def through_reflector(side: str, udp: FakeUdp, to: str, receiver: Any,
                          one_way_s: float) -> None:
        data, _ = udp.sent.pop()
        reflector.packet(data, side, inbox[side].append, (RELAY, 1))
        clock[0] += one_way_s
        receiver.datagram_received(inbox[to].pop(), (RELAY, 599))

    caller._send(caller._report_packet(clock[0]))
    through_reflector("caller", caller_udp, "callee", callee, 0.020)
    clock[0] += 0.500
    callee._send(callee._report_packet(clock[0]))
    through_reflector("callee", callee_udp, "caller", caller, 0.040)
    caller_s.relay_rtt_samples_s.extend([0.009, 0.010, 0.011])
    result = build_result(caller_s, Timeline(), None, None)
    assert result["rtt_ms"] == pytest.approx(60.0, abs=0.1)
    assert result["rtt_method"] == "rtcp-sr-rr"
    assert result["relay_rtt_ms"] == pytest.approx(10.0)
    assert result["own_ssrc_dropped"] == 0 and result["own_rtcp_dropped"] == 0


def test_a_relayed_call_without_an_end_to_end_sample_has_no_rtt(audio: Path) -> None:
    session = session_for(audio, "whatsapp-like")
    session.set_path("udp-relay", "test")
    session.relay_rtt_samples_s.extend([0.010, 0.012, 0.011])
    result = build_result(session, Timeline(), None, None)
    assert result["rtt_ms"] is None and result["rtt_method"] is None
    assert result["relay_rtt_ms"] == pytest.approx(11.0)
    session.peer_relay_rtt_ms = 25.0  # what the callee reported for its own leg
    result = build_result(session, Timeline(), None, None)
    assert result["rtt_ms"] == pytest.approx(36.0) and result["rtt_method"] == "relay-legs-sum"


def test_whatsapp_like_sides_swap_their_relay_legs_over_signalling(audio: Path) -> None:
    async def scenario() -> tuple[Session, Session]:
        server, _ = await start_server("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sessions = [session_for(audio, "whatsapp-like", role, ("127.0.0.1", port))
                    for role in ("caller", "callee")]
        sessions[0].relay_rtt_samples_s.extend([0.004, 0.005, 0.006])
        sessions[1].relay_rtt_samples_s.extend([0.030])
        tasks = [asyncio.create_task(share_relay_rtt(s, period_s=0.05)) for s in sessions]
        try:
            for _ in range(100):
                if all(s.peer_relay_rtt_ms is not None for s in sessions):
                    break
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.close()
        return sessions[0], sessions[1]

    caller, callee = asyncio.run(scenario())
    assert caller.peer_relay_rtt_ms == pytest.approx(30.0)
    assert callee.peer_relay_rtt_ms == pytest.approx(5.0)
    caller.set_path("udp-relay", "test")  # keeps the peer's leg; own samples restart
    caller.relay_rtt_samples_s.append(0.005)
    assert build_result(caller, Timeline(), None, None)["rtt_ms"] == pytest.approx(35.0)


# ------------------------------------------------------------------- telegram-like UDP verdict


class AnsweringReflector(FakeUdp):
    """Answers the first `pings` UDP pings (hellos whose query the transport
    timed; one answer per query, whichever port it went to) with the
    reflector's self-info; hellos of the hello loop and TURN requests go
    unanswered."""

    def __init__(self, transport: Any, pings: int) -> None:
        super().__init__()
        self.transport, self.pings = transport, pings
        self.answered: set[int] = set()

    def sendto(self, data: bytes, addr: Any = None) -> None:
        super().sendto(data, addr)
        if not tg.is_hello(data) or tg.query_id(data) not in self.transport._pings:
            return
        if tg.query_id(data) not in self.answered and len(self.answered) < self.pings:
            self.answered.add(tg.query_id(data))
            answer = tg.self_info(data[:16], data[32:40], 0, ("100.64.1.2", 4000))
            asyncio.get_running_loop().call_soon(self.transport.datagram_received, answer, addr)


@pytest.mark.parametrize("answered, verdict", [(0, "UDP_NOT_AVAILABLE: 0 of 4"),
                                               (2, "UDP_BAD: 2 of 4"), (3, None), (4, None)])
def test_telegram_like_judges_udp_after_4_pings_as_libtgvoip(
        audio: Path, monkeypatch: pytest.MonkeyPatch, answered: int, verdict: str | None) -> None:
    monkeypatch.setattr(telegram_client, "PING_PERIOD_S", 0.01)
    monkeypatch.setattr(telegram_client, "JUDGE_DELAY_S", 0.05)
    monkeypatch.setattr(telegram_client, "TURN_RETRY_S", 0.01)
    session = session_for(audio, "telegram-like")
    transport = telegram_client.TelegramTransport()
    transport._session = session
    transport._tag = telegram_client.peer_tag("run-x-call-1", "caller")
    udp = AnsweringReflector(transport, answered)
    transport.connection_made(udp)  # type: ignore[arg-type]
    moved: list[str] = []

    async def to_tcp(_: Session, reason: str) -> None:
        moved.append(reason)

    monkeypatch.setattr(transport, "_to_tcp", to_tcp)

    async def scenario() -> None:
        ladder = asyncio.ensure_future(transport._reflector_ladder(session))
        await asyncio.sleep(0.5)
        ladder.cancel()
        await transport.close()

    asyncio.run(scenario())
    pings = [d for d, a in udp.sent if tg.is_hello(d) and a[1] == 599]
    assert len(pings) >= 4
    assert {a[1] for d, a in udp.sent if tg.is_hello(d)} == set(tg.REFLECTOR_UDP_PORTS)
    assert not any(tg.is_hello(d) for d, a in udp.sent if a[1] == tg.TURN_UDP_PORT)
    if verdict is None:
        assert moved == [] and session.path == telegram_client.REFLECTOR
        assert session.extra["udp_pings"].startswith("UDP_AVAILABLE")
    else:
        assert len(moved) == 1 and moved[0].startswith(verdict)


def test_telegram_like_allocates_at_the_turn_port_of_a_real_reflector(
        audio: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_client, "TURN_RETRY_S", 0.2)
    session = session_for(audio, "telegram-like")
    transport = telegram_client.TelegramTransport()
    transport._session = session
    server = ReflectorPort(ReflectorState(), turn=True)
    client_addr = ("100.64.1.2", 4000)

    class ToServer(FakeUdp):
        def sendto(self, data: bytes, addr: Any = None) -> None:
            super().sendto(data, addr)
            assert addr == (RELAY, tg.TURN_UDP_PORT)
            server.datagram_received(data, client_addr)

    class ToClient(FakeUdp):
        def get_extra_info(self, name: str) -> Any:
            return (RELAY, tg.TURN_UDP_PORT) if name == "sockname" else None

        def sendto(self, data: bytes, addr: Any = None) -> None:
            asyncio.get_running_loop().call_soon(transport.datagram_received, data,
                                                 (RELAY, tg.TURN_UDP_PORT))

    udp = ToServer()
    transport.connection_made(udp)  # type: ignore[arg-type]
    server.connection_made(ToClient())  # type: ignore[arg-type]
    asyncio.run(transport._turn_allocate(session))
    first, second = (stun.StunMessage.decode(d) for d, _ in udp.sent)
    assert first.get(stun.SOFTWARE) == b"Telegram " and first.get(stun.USERNAME) is None
    assert second.get(stun.USERNAME) == telegram_client.turn_username("run-x-call-1",
                                                                      "caller").encode()
    assert session.extra["turn"] == {"server": f"{RELAY}:1400", "allocated": True,
                                     "requests": 2, "realm": "telegram.org",
                                     "relayed": f"{RELAY}:1400"}


# --------------------------------------------------------------------------- telegram-like extra EC


def test_telegram_like_extra_ec_follows_libtgvoips_10_second_average(audio: Path) -> None:
    session = session_for(audio, "telegram-like")
    transport, _ = _telegram_on_reflector(session, telegram_client.peer_tag("run-x-call-1",
                                                                            "caller"))
    seen = []
    for fraction in [0.03] * 10 + [0.0] * 8:
        transport._adapt(fraction)
        settings = session.sender.encoder.settings
        seen.append((settings.bitrate, settings.fec))
    # 3 % a second: the zero-filled 10-report average passes 2 % at the 7th.
    assert seen[5] == (tg.MAX_BITRATE, False) and seen[6] == (tg.EXTRA_EC_BITRATE, True)
    # Clean again: the average falls under 2 % at the 4th clean report
    # (0.3 + 0.03 * 6 ... = 1.8 %): extra EC off at 8 kbit/s, then the climb,
    # 1000 bit/s per 0.3 s, once a second.
    assert seen[13] == (tg.EXTRA_EC_BITRATE, False)
    assert [b for b, _ in seen[14:]] == [11333, 14666, 17999, 20000]
    changes = session.bitrate_changes
    assert [c["reason"] for c in changes][:2] == ["extra EC on", "extra EC off"]
    assert changes[0]["avg_loss_pct"] == 2.1 and changes[0]["loss_pct"] == 3.0
    result = build_result(session, Timeline(), None, None)
    report = PeerReport.from_dict(result, "caller")
    assert report.bitrate_changes[0]["bitrate"] == tg.EXTRA_EC_BITRATE
    assert "bitrate_changes" not in report.extra


# --------------------------------------------------------------------------- whatsapp-like bitrate


def test_whatsapp_like_bitrate_law_is_libwebrtcs_loss_rule() -> None:
    law = whatsapp_client.LossBasedBitrate()
    assert law.on_report(0) == 24000  # already at the top
    assert law.on_report(26) == 24000  # 10 %: hold
    assert law.on_report(64) == 21000  # 25 %: × (512 − 64) / 512
    steps = [law.on_report(64) for _ in range(12)]
    assert steps[-1] == whatsapp_client.MIN_BITRATE == 6000 and steps.index(6000) == 9
    assert law.on_report(5) == 7500  # 2 %: × 1.08 + 1000
    with pytest.raises(ValueError, match="0..255"):
        law.on_report(256)


def test_whatsapp_like_adapts_to_the_peers_reports_and_records_it(audio: Path) -> None:
    session = session_for(audio, "whatsapp-like")
    transport = _whatsapp_on_relay(session)
    own = session.sender.ssrc
    name = wa.cname(b"\x01" * 6)

    def peer_report(fraction: float, about: int = own, sender: int = own ^ 1) -> bytes:
        return wa.sender_report(sender, rtcp.ntp_timestamp(1.0), 0, 1, 1, name,
                                rtcp.block(about, fraction, 10, 20, 0, 0))

    transport.datagram_received(peer_report(0.5, sender=own), (RELAY, 3478))  # own, echoed
    assert session.receiver.stats.own_rtcp_dropped == 1
    transport.datagram_received(peer_report(0.5, about=own ^ 7), (RELAY, 3478))  # not us
    assert session.sender.encoder.settings.bitrate == 24000 and not session.bitrate_changes
    for _ in range(6):
        transport.datagram_received(peer_report(0.25), (RELAY, 3478))
    bitrates = [c["bitrate"] for c in session.bitrate_changes]
    assert bitrates == [21000, 18400, 16100, 14100, 12300, 10800]
    assert session.sender.encoder.settings.bitrate == 10800
    assert session.bitrate_changes[0]["loss_pct"] == 25.0
    transport.datagram_received(peer_report(0.0), (RELAY, 3478))
    assert session.sender.encoder.settings.bitrate == 12700
    timeline = Timeline()
    timeline.add(session.sender, session.receiver)
    assert timeline.rows[-1]["bitrate"] == 12700
    report = PeerReport.from_dict(build_result(session, timeline, None, None), "caller")
    assert [c["bitrate"] for c in report.bitrate_changes][-1] == 12700


def test_whatsapp_like_reports_what_it_received(audio: Path) -> None:
    session = session_for(audio, "whatsapp-like")
    transport = _whatsapp_on_relay(session)
    payload = opus_frame(whatsapp_client.OPUS)
    peer = session.sender.ssrc ^ 0x55
    for number in (1, 2, 4):  # the 3rd frame lost
        transport.datagram_received(
            wa.media_frame(number, (number - 1) * 960, peer, payload, number - 1,
                           transport._auth_key), (RELAY, 3478))
    report = transport._report_packet(100.0)
    block = rtcp.report_block(report)
    assert block is not None and block.source == peer
    assert block.fraction_lost == pytest.approx(0.25, abs=1 / 256)
    assert wa.is_rtcp(report) and rtcp.rtcp_ssrc(report) == session.sender.ssrc


# --------------------------------------------------------------------------- signal-like


def test_signal_like_gathers_every_candidate_in_one_configuration() -> None:
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    from harness.calls.peer import gather_all
    from harness.calls.strategies import (
        GATHER_ALL,
        TurnCredentials,
        TurnServer,
        build_rtc_configuration,
    )
    from harness.netns.endpoint import Endpoint

    config = build_rtc_configuration(GATHER_ALL, Endpoint("198.18.0.5", 3478),
                                     TurnServer("198.18.0.6", 3478, 443),
                                     TurnCredentials("u", "p"))
    assert config.iceTransportPolicy == RTCIceTransportPolicy.ALL
    [stun_server, relay] = config.iceServers or []
    assert stun_server.urls == "stun:198.18.0.5:3478"
    assert relay.urls == ["turn:198.18.0.6:3478?transport=udp",
                          "turns:198.18.0.6:443?transport=tcp"]
    # aiortc takes the first TURN URL; the TLS one is what gather_all adds.
    assert gather_all.extra_turn_servers(config) == [
        gather_all.ExtraTurn(("198.18.0.6", 443), "u", "p", ssl=True, transport="tcp")]
    assert gather_all.RELAY_LOCAL_PREF["tls"] < gather_all.RELAY_LOCAL_PREF["udp"]


@pytest.mark.parametrize("caller, callee, path", [
    ({"local_type": "host"}, {"local_type": "srflx"}, "udp"),
    ({"local_type": "relay", "local_relay_protocol": "tls"}, {"local_type": "host"},
     "turn-tls-443"),
    ({"local_type": "host"}, {"local_type": "relay", "local_relay_protocol": "udp"}, "turn-udp"),
    (None, None, None),
])
def test_signal_like_names_its_path_by_the_selected_pairs(caller: Any, callee: Any,
                                                          path: str | None) -> None:
    from harness.calls.signal_like import call_path, describe

    assert call_path([caller, callee]) == path
    if caller is not None:
        assert describe(caller).startswith(caller["local_type"])
