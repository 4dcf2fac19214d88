"""The telegram-like wire format against the censor's classifier references:
the 40-byte reflector hello matches telegram-hello and nothing else; P2P media
matches rtp with payload type 111 only; what goes through a reflector after
the hello (tag + packet) and the reflector's answer match nothing; the P2P
binding requests match stun-cookie only."""

from __future__ import annotations

import pytest

from harness.calls.app.telegram_client import peer_tag
from harness.wire import stun
from harness.wire import telegram as tg
from harness.wire.rtp import RtpPacket, WireError
from tests.unit.app_wire_support import matched

# Tags as the client derives them, plus edge values. A random tag can by chance
# start like an RTP header (about 1 in 256 for a given payload type) or carry
# the STUN cookie at bytes 4-7 (1 in 2^32), as a real one could.
TAGS = [peer_tag("run-a-call-1", "caller"), peer_tag("run-b-call-7", "callee"),
        b"\x00" * 16, b"\x11" * 16]


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("port", list(tg.REFLECTOR_UDP_PORTS) + [443])
def test_hello_matches_telegram_hello_only(tag: bytes, port: int) -> None:
    data = tg.hello(tag, 0x0123456789ABCDEF)
    assert len(data) == 40
    assert data[16:32] == b"\xff" * 12 + b"\xfe\xff\xff\xff"
    assert matched(data, port) == {"telegram-hello"}


@pytest.mark.parametrize("tag", TAGS)
def test_answer_and_tagged_packets_match_nothing(tag: bytes) -> None:
    assert matched(tg.answer(tag, 5), 40000) == set()
    media = RtpPacket(111, 3, 2880, 9, b"\x78" * 60).encode()
    assert matched(tg.tagged(tag, media), 599) == set()


@pytest.mark.parametrize("sequence", [0, 17, 4096])
def test_p2p_media_matches_rtp_111_only(sequence: int) -> None:
    media = RtpPacket(tg.MEDIA_PAYLOAD_TYPE, sequence, sequence * 2880, 0xABCDEF01,
                      b"\x78" + b"\x10" * 40).encode()
    assert media[0] == 0x80
    assert matched(media, 51234) == {"rtp-111"}


def test_p2p_binding_matches_stun_cookie_only() -> None:
    request = stun.binding_request(b"\x07" * 12)
    success = stun.binding_success(b"\x07" * 12, ("198.18.4.2", 40000))
    assert matched(request, 40000) == {"stun-cookie"}
    assert matched(success, 40000) == {"stun-cookie"}
    assert stun.parse(success) == (stun.BINDING_SUCCESS, b"\x07" * 12, ("198.18.4.2", 40000))


def test_the_tcp_relay_frames_are_not_classified_as_udp_formats() -> None:
    frame = tg.tcp_frame(tg.hello(TAGS[0], 1))
    assert matched(frame, 443, l4="tcp") == set()
    assert int.from_bytes(frame[:2], "big") == 40


def test_query_ids_and_kinds() -> None:
    hello, answer = tg.hello(TAGS[0], 77), tg.answer(TAGS[0], 77)
    assert tg.is_hello(hello) and not tg.is_answer(hello)
    assert tg.is_answer(answer) and not tg.is_hello(answer)
    assert tg.query_id(hello) == tg.query_id(answer) == 77
    assert tg.split_tag(tg.tagged(TAGS[1], b"x")) == (TAGS[1], b"x")


def test_receiver_report_carries_the_loss_fraction() -> None:
    report = tg.receiver_report(1, 2, 0.25, 30, 400)
    assert tg.is_receiver_report(report)
    assert tg.report_fraction_lost(report) == pytest.approx(0.25, abs=1 / 256)
    assert not tg.is_receiver_report(RtpPacket(111, 1, 1, 1, b"").encode())


def test_the_two_sides_tags_differ_in_the_side_bit_only() -> None:
    caller, callee = peer_tag("run-a-call-1", "caller"), peer_tag("run-a-call-1", "callee")
    assert caller != callee and caller[:15] == callee[:15]
    assert (caller[15] & 1, callee[15] & 1) == (0, 1)
    assert tg.partner_tag(caller) == callee and tg.partner_tag(callee) == caller
    assert tg.side_tag(callee, 0) == caller and tg.side_tag(caller, 1) == callee
    assert peer_tag("run-b-call-7", "caller")[:15] != caller[:15]
    with pytest.raises(WireError, match="side"):
        tg.side_tag(caller, 2)


def test_receiver_report_bytes_are_unchanged_without_lsr() -> None:
    # RFC 3550 §6.4.2: V=2 RC=1, type 201, length 7, SSRC, then one block whose
    # jitter, LSR and DLSR are zero when no sender report was seen.
    report = tg.receiver_report(1, 2, 0.25, 30, 400)
    assert report == bytes.fromhex("81c90007" "00000001" "00000002" "4000001e"
                                   "00000190" "00000000" "00000000" "00000000")
    block = tg.report_block(report)
    assert block == tg.ReportBlock(source=2, fraction_lost=0.25, last_sr=0,
                                   delay_since_last_sr=0)


def test_sender_report_carries_ntp_time_and_a_report_block() -> None:
    ntp = tg.ntp_timestamp(1_700_000_000.5)
    assert ntp >> 32 == 1_700_000_000 + tg.NTP_EPOCH_OFFSET_S and ntp & 0xFFFFFFFF == 2**31
    report = tg.sender_report(7, ntp, 2880, 10, 600, 9, 0.5, 3, 12, 0x12345678, 65536)
    assert len(report) == 52 and report[:4] == bytes.fromhex("81c8000c")
    assert tg.is_sender_report(report) and tg.is_rtcp_report(report)
    assert not tg.is_receiver_report(report)
    assert tg.rtcp_ssrc(report) == 7 and tg.sender_report_ntp(report) == ntp
    assert tg.ntp_middle(ntp) == ((ntp >> 16) & 0xFFFFFFFF)
    assert tg.report_block(report) == tg.ReportBlock(9, 0.5, 0x12345678, 65536)
    # A tagged SR matches no censor signature, like the RR before it.
    assert matched(tg.tagged(TAGS[0], report), 599) == set()
    assert matched(report, 40000) == set()


def test_bad_tags_and_lengths_are_refused() -> None:
    with pytest.raises(WireError, match="16 bytes"):
        tg.hello(b"short", 1)
    with pytest.raises(WireError, match="40 bytes"):
        tg.query_id(b"\x00" * 39)
    with pytest.raises(WireError, match="65535"):
        tg.tcp_frame(b"\x00" * 70000)
