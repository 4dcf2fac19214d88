"""The app-like clients' receive path and round trips, driven without a lab:
their own media or reports coming back through a relay are dropped and
counted; a relayed call's rtt_ms is end to end (RTCP SR/RR for telegram-like,
both relay legs for whatsapp-like), the relay leg alone is relay_rtt_ms; every
result carries the frame duration it sent."""

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
from harness.calls.app.rtcp import DLSR_UNITS_PER_S, RtcpRoundTrips
from harness.calls.events import EventLog
from harness.measure.refsignal import generate_reference_wav
from harness.services.app_relays.telegram_reflector import ReflectorState
from harness.services.signalling import start_server
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
    transport = whatsapp_client.WhatsAppTransport()
    transport._session = session
    udp = FakeUdp()
    transport.connection_made(udp)  # type: ignore[arg-type]
    transport._relay = (RELAY, 3478)
    payload = opus_frame(whatsapp_client.OPUS)
    transport._send_media(0, 0, payload)
    [(frame, _)] = udp.sent
    transport.datagram_received(frame, (RELAY, 3478))  # the relay sends it back
    stats = session.receiver.stats
    assert stats.frames_decoded == 0 and stats.packets_received == 0
    assert not session.receiver.first_frame.is_set()
    peer_ssrc = RtpPacket.decode(frame).ssrc ^ 0xFFFF
    transport.datagram_received(wa.media_frame(0, 0, peer_ssrc, payload), (RELAY, 3478))
    assert stats.frames_decoded == 1
    assert stats.own_ssrc_dropped == 1


def _telegram_on_reflector(session: Session, tag: bytes) -> tuple[Any, FakeUdp]:
    transport = telegram_client.TelegramTransport()
    transport._session = session
    transport._tag = tag
    udp = FakeUdp()
    transport.connection_made(udp)  # type: ignore[arg-type]
    transport._reflector = (RELAY, 599)
    session.set_path(telegram_client.REFLECTOR, "test")
    return transport, udp


def test_telegram_like_does_not_decode_its_own_media_echoed_by_the_reflector(
        audio: Path) -> None:
    session = session_for(audio, "telegram-like")
    transport, udp = _telegram_on_reflector(session, bytes(range(16)))
    payload = opus_frame(telegram_client.OPUS_NORMAL)
    transport._send_media(0, 0, payload)
    [(packet, to)] = udp.sent
    assert to == (RELAY, 599)
    transport.datagram_received(packet, (RELAY, 599))  # echoed with the same tag
    stats = session.receiver.stats
    assert stats.frames_decoded == 0 and stats.packets_received == 0
    assert stats.own_ssrc_dropped == 1


def test_telegram_like_ignores_its_own_reports_echoed_back(audio: Path) -> None:
    session = session_for(audio, "telegram-like")
    transport, _ = _telegram_on_reflector(session, bytes(range(16)))
    tag, own = bytes(range(16)), session.sender.ssrc
    lossy = tg.sender_report(own, tg.ntp_timestamp(1.0), 0, 1, 1, 0, 0.5, 10, 20)
    transport.datagram_received(tg.tagged(tag, lossy), (RELAY, 599))
    assert session.sender.encoder.settings.bitrate == tg.MAX_BITRATE  # no adaptation
    assert session.receiver.stats.own_rtcp_dropped == 1
    peer = tg.sender_report(own ^ 1, tg.ntp_timestamp(1.0), 0, 1, 1, own, 0.5, 10, 20)
    transport.datagram_received(tg.tagged(tag, peer), (RELAY, 599))
    assert session.sender.encoder.settings.bitrate == tg.MIN_BITRATE  # the peer's loss


# --------------------------------------------------------------------------- round trips


def test_rtcp_round_trip_subtracts_the_time_the_peer_held_the_report() -> None:
    caller, callee = RtcpRoundTrips(), RtcpRoundTrips()
    caller_ssrc, callee_ssrc = 0x1111, 0x2222
    ntp = caller.stamp(100.000, 1_700_000_000.0)
    sr = tg.sender_report(caller_ssrc, ntp, 0, 5, 300, 0, 0.0, 0, 0)
    callee.on_sender_report(sr, 100.020)  # 20 ms caller → relay → callee
    lsr, dlsr = callee.echo(100.520)  # held for 0.5 s
    assert lsr == tg.ntp_middle(ntp) and dlsr == DLSR_UNITS_PER_S // 2
    block = tg.ReportBlock(caller_ssrc, 0.0, lsr, dlsr)
    # Back 40 ms later: 100.560 − 100.000 − 0.500 = 0.060 s, both legs both ways.
    assert caller.round_trip(block, caller_ssrc, 100.560) == pytest.approx(0.060, abs=1e-4)
    assert caller.round_trip(tg.ReportBlock(caller_ssrc, 0.0, 0, 0), caller_ssrc,
                             100.6) is None  # LSR 0: no SR of ours seen
    assert caller.round_trip(tg.ReportBlock(caller_ssrc, 0.0, lsr ^ 1, dlsr), caller_ssrc,
                             100.6) is None  # an SR we never sent
    assert caller.round_trip(tg.ReportBlock(callee_ssrc, 0.0, lsr, dlsr), caller_ssrc,
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
        reflector.packet(tg.hello(transport._tag, 1), side, inbox[side].append)
        inbox[side].clear()
    caller_s.sender.stats.packets_sent = callee_s.sender.stats.packets_sent = 5

    def through_reflector(side: str, udp: FakeUdp, to: str, receiver: Any,
                          one_way_s: float) -> None:
        data, _ = udp.sent.pop()
        reflector.packet(data, side, inbox[side].append)
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


def test_whatsapp_like_sides_swap_their_relay_legs_over_signalling(
        audio: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whatsapp_client, "RTT_SHARE_PERIOD_S", 0.05)

    async def scenario() -> tuple[Session, Session]:
        server, _ = await start_server("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sessions = [session_for(audio, "whatsapp-like", role, ("127.0.0.1", port))
                    for role in ("caller", "callee")]
        sessions[0].relay_rtt_samples_s.extend([0.004, 0.005, 0.006])
        sessions[1].relay_rtt_samples_s.extend([0.030])
        transports = [whatsapp_client.WhatsAppTransport() for _ in sessions]
        tasks = [asyncio.create_task(t._share_relay_rtt(s))
                 for t, s in zip(transports, sessions, strict=True)]
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
