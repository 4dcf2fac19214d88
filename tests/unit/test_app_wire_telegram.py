"""The telegram-like wire format: the bytes tgcalls and libtgvoip put on the
wire (the hello, the reflector's 64-byte self-info, the data framing, the
TURN Allocate on 1400), each checked byte for byte against the layouts of the
sources (docs/sources.md S24, S60-S62), and against the censor's classifier
references: the hello matches telegram-hello and nothing else; P2P media
matches rtp with payload type 111 only; data through a reflector and the
reflector's answer match none of them; the TURN Allocate and the P2P binding
requests match stun-cookie only."""

from __future__ import annotations

import hashlib
import struct

import aioice.stun
import pytest

from harness.calls.app.telegram_client import partner_tag, peer_tag, turn_username
from harness.censor.signatures import matches
from harness.spec.policy import Signature
from harness.wire import rtcp, stun
from harness.wire import telegram as tg
from harness.wire.rtp import RtpPacket, WireError
from tests.unit.app_wire_support import matched

# Tags as the client derives them, plus edge values. A random tag can by chance
# start like an RTP header (about 1 in 256 for a given payload type) or carry
# the STUN cookie at bytes 4-7 (1 in 2^32), as a real one could.
TAGS = [peer_tag("run-a-call-1", "caller"), peer_tag("run-b-call-7", "callee"),
        b"\x00" * 15 + b"\x01", b"\x11" * 16]
NDPI = Signature(kind="telegram-ndpi")


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("port", tg.REFLECTOR_UDP_PORTS)
def test_hello_is_libtgvoips_udp_ping_and_matches_telegram_hello_only(tag: bytes,
                                                                      port: int) -> None:
    data = tg.hello(tag, 0x0123456789ABCDEF)
    # libtgvoip SendUdpPing: the tag, WriteInt32(-1) x3, WriteInt32(-2), WriteInt64(id),
    # little endian (Buffers.cpp BufferOutputStream::WriteInt32/64).
    expected = tag + struct.pack("<iiii", -1, -1, -1, -2) + struct.pack("<q", 0x0123456789ABCDEF)
    assert data == expected and len(data) == 40
    assert data[16:32] == b"\xff" * 12 + b"\xfe\xff\xff\xff"
    assert matched(data, port) == {"telegram-hello"}
    assert tg.is_hello(data) and tg.is_special(data) and tg.query_id(data) == 0x0123456789ABCDEF


def test_self_info_is_mockreflectors_64_byte_struct() -> None:
    """tests/MockReflector.cpp UdpReflectorSelfInfo (packed, little endian):
    tag, uint64 -1, uint32 -1, magic 0xc01572c7, int32 date, the query id as
    it came, 8 zero bytes, uint32 0xFFFF0000, the IPv4 address as sent
    (network order), uint32 port."""
    tag, query = TAGS[0], bytes.fromhex("0102030405060708")
    data = tg.self_info(tag, query, 1_700_000_000, ("198.18.4.2", 40123))
    expected = (tag + struct.pack("<QI", 2**64 - 1, 2**32 - 1) + struct.pack("<I", 0xC01572C7)
                + struct.pack("<i", 1_700_000_000) + query + struct.pack("<QI", 0, 0xFFFF0000)
                + bytes([198, 18, 4, 2]) + struct.pack("<I", 40123))
    assert data == expected and len(data) == 64
    assert data[28:32] == bytes.fromhex("c77215c0")
    info = tg.parse_self_info(data)
    assert info == tg.SelfInfo(tag, 1_700_000_000, 0x0807060504030201, ("198.18.4.2", 40123))
    assert tg.query_id(data) == tg.query_id(tg.hello(tag, 0x0807060504030201))
    # libtgvoip's client check (VoIPController.cpp): uint64 at 16 and uint32 at 24 all ones.
    assert struct.unpack_from("<QI", data, 16) == (2**64 - 1, 2**32 - 1)
    assert not tg.is_hello(data)


@pytest.mark.parametrize("tag", TAGS)
def test_self_info_matches_no_call_signature_but_ndpis_telegram_rule(tag: bytes) -> None:
    data = tg.self_info(tag, b"\x00" * 8, 1, ("100.64.1.2", 5000))
    assert matched(data, 40000) == set()  # telegram-hello wants exactly 40 bytes
    # nDPI's telegram.c: a port in 500-600, >= 40 bytes, the first 0xFF starts a
    # run of exactly 12 (then 0xc7): the reflector's answer from 599 is Telegram,
    # unless the tag itself holds a 0xFF before the run.
    assert matches(NDPI, data, "udp", 40000, sport=599) == (0xFF not in tag)


def test_data_framing_is_tgcalls_sendto() -> None:
    """ReflectorPort::SendTo: the receiver's tag (the call's 12 bytes and its
    own 4), the sender's 4 bytes, WriteUInt32(size) (big endian), the data,
    zeros to a multiple of 4."""
    to, sender = peer_tag("c", "callee"), tg.sender_tag(peer_tag("c", "caller"))
    data = tg.data(to, sender, b"\x80\x6f\x00\x01abc")
    assert data == to + sender + bytes.fromhex("00000007") + b"\x80\x6f\x00\x01abc" + b"\x00"
    assert len(data) % 4 == 0
    packet = tg.parse_data(data)
    assert packet == tg.DataPacket(to, sender, b"\x80\x6f\x00\x01abc")
    assert packet.sender_tag == peer_tag("c", "caller")
    for size in range(1, 9):  # the padding is never read back as payload
        assert tg.parse_data(tg.data(to, sender, b"x" * size)).payload == b"x" * size


@pytest.mark.parametrize("bad, error", [
    (lambda d: d[:24], "not over 24"),
    (lambda d: d[:20] + b"\x00\x00\x01\x00" + d[24:], "over the"),
    (lambda d: d[:16] + b"\xff" * 12 + d[28:], "special"),
])
def test_data_that_tgcalls_would_not_take_is_refused(bad: object, error: str) -> None:
    data = tg.data(TAGS[0], b"\x01\x02\x03\x04", b"payload!")
    with pytest.raises(WireError, match=error):
        tg.parse_data(bad(data))  # type: ignore[operator]


@pytest.mark.parametrize("tag", TAGS[:2])
def test_reflector_data_matches_no_signature(tag: bytes) -> None:
    media = RtpPacket(111, 3, 2880, 9, b"\x78" * 60).encode()
    report = rtcp.sender_report(7, rtcp.ntp_timestamp(1.0), 2880, 10, 600, 9, 0.5, 3, 12)
    for payload in (media, report):
        assert matched(tg.data(tag, b"\x05\x06\x07\x08", payload), 599) == set()


def test_the_two_sides_tags_share_the_calls_12_bytes() -> None:
    caller, callee = peer_tag("run-a-call-1", "caller"), peer_tag("run-a-call-1", "callee")
    assert caller != callee and caller[:12] == callee[:12]
    assert partner_tag("run-a-call-1", "caller") == callee
    assert partner_tag("run-a-call-1", "callee") == caller
    assert peer_tag("run-b-call-7", "caller")[:12] != caller[:12]
    assert tg.sender_tag(caller) != b"\x00" * 4  # tgcalls draws a non-zero tag
    with pytest.raises(WireError, match="not all zero"):
        tg.peer_tag(caller, b"\x00" * 4)
    with pytest.raises(ValueError, match="role"):
        peer_tag("c", "observer")


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


# --------------------------------------------------------------------------- TURN on 1400


def test_the_first_allocate_is_libwebrtcs_with_tgcalls_software() -> None:
    """TurnAllocateRequest::Prepare: REQUESTED-TRANSPORT 17 << 24; tgcalls'
    TurnCustomizerImpl adds SOFTWARE "Telegram "; no credentials yet."""
    txid = bytes(range(12))
    data = stun.allocate_request(txid, tg.TURN_SOFTWARE)
    assert data == (bytes.fromhex("0003" "0018" "2112a442") + txid
                    + bytes.fromhex("0019" "0004" "11000000")
                    + bytes.fromhex("8022" "0009") + b"Telegram " + b"\x00\x00\x00")
    assert matched(data, tg.TURN_UDP_PORT) == {"stun-cookie"}
    decoded = aioice.stun.parse_message(data)  # an independent STUN parser agrees
    assert decoded.message_method == aioice.stun.Method.ALLOCATE
    assert decoded.attributes["REQUESTED-TRANSPORT"] == 0x11000000
    assert decoded.attributes["SOFTWARE"] == "Telegram "


def test_the_authenticated_allocate_carries_aioices_message_integrity() -> None:
    """The long-term credential (RFC 5389 §10.2, §15.4): key MD5(user:realm:pass),
    HMAC-SHA1 over the message before MESSAGE-INTEGRITY, as aioice computes it."""
    txid = b"\x42" * 12
    auth = stun.TurnAuth("user", "secret", "telegram.org", b"abcdef0123456789")
    data = stun.allocate_request(txid, tg.TURN_SOFTWARE, auth)
    assert auth.key == hashlib.md5(b"user:telegram.org:secret").digest()
    assert data[-24:-20] == bytes.fromhex("00080014")  # MESSAGE-INTEGRITY, 20 bytes, last
    assert data[-20:] == aioice.stun.message_integrity(data[:-24], auth.key)
    decoded = aioice.stun.parse_message(data)
    assert (decoded.attributes["USERNAME"], decoded.attributes["REALM"],
            decoded.attributes["NONCE"]) == ("user", "telegram.org", b"abcdef0123456789")
    message = stun.StunMessage.decode(data)
    assert message.integrity_ok(auth.key)
    assert not message.integrity_ok(stun.long_term_key("user", "telegram.org", "wrong"))
    assert not stun.StunMessage.decode(stun.allocate_request(txid)).integrity_ok(auth.key)


def test_turn_401_and_success_round_trip() -> None:
    request = stun.StunMessage.decode(stun.allocate_request(b"\x01" * 12, tg.TURN_SOFTWARE))
    challenge = stun.StunMessage.decode(stun.unauthorized(request, tg.TURN_REALM, b"n0nce"))
    assert challenge.msg_type == stun.ALLOCATE_ERROR
    assert stun.read_error_code(challenge.get(stun.ERROR_CODE)) == 401
    assert challenge.get(stun.REALM) == b"telegram.org" and challenge.get(stun.NONCE) == b"n0nce"
    key = stun.long_term_key("u", "telegram.org", "p")
    ok = stun.StunMessage.decode(stun.allocate_success(request, ("198.18.9.9", 1400),
                                                       ("100.64.1.2", 4000), 600, key))
    assert ok.msg_type == stun.ALLOCATE_SUCCESS and ok.integrity_ok(key)
    assert stun.read_xor_address(ok.get(stun.XOR_RELAYED_ADDRESS) or b"") == ("198.18.9.9", 1400)
    assert stun.read_xor_address(ok.get(stun.XOR_MAPPED_ADDRESS) or b"") == ("100.64.1.2", 4000)
    assert turn_username("c", "caller") != turn_username("c", "callee")


# --------------------------------------------------------------------------- TCP, RTCP, errors


def test_the_tcp_relay_frames_are_not_classified_as_udp_formats() -> None:
    frame = tg.tcp_frame(tg.hello(TAGS[0], 1))
    assert matched(frame, 443, l4="tcp") == set()
    assert int.from_bytes(frame[:2], "big") == 40


def test_receiver_report_bytes_are_unchanged_without_lsr() -> None:
    # RFC 3550 §6.4.2: V=2 RC=1, type 201, length 7, SSRC, then one block whose
    # jitter, LSR and DLSR are zero when no sender report was seen.
    report = rtcp.receiver_report(1, 2, 0.25, 30, 400)
    assert report == bytes.fromhex("81c90007" "00000001" "00000002" "4000001e"
                                   "00000190" "00000000" "00000000" "00000000")
    assert rtcp.is_receiver_report(report)
    assert rtcp.report_fraction_lost(report) == pytest.approx(0.25, abs=1 / 256)
    assert rtcp.report_block(report) == rtcp.ReportBlock(source=2, fraction_lost=0.25,
                                                         last_sr=0, delay_since_last_sr=0)
    assert not rtcp.is_receiver_report(RtpPacket(111, 1, 1, 1, b"").encode())


def test_sender_report_carries_ntp_time_and_a_report_block() -> None:
    ntp = rtcp.ntp_timestamp(1_700_000_000.5)
    assert ntp >> 32 == 1_700_000_000 + rtcp.NTP_EPOCH_OFFSET_S and ntp & 0xFFFFFFFF == 2**31
    report = rtcp.sender_report(7, ntp, 2880, 10, 600, 9, 0.5, 3, 12, 0x12345678, 65536)
    assert len(report) == 52 and report[:4] == bytes.fromhex("81c8000c")
    assert rtcp.is_sender_report(report) and rtcp.is_rtcp_report(report)
    assert not rtcp.is_receiver_report(report)
    assert rtcp.rtcp_ssrc(report) == 7 and rtcp.sender_report_ntp(report) == ntp
    assert rtcp.ntp_middle(ntp) == ((ntp >> 16) & 0xFFFFFFFF)
    assert rtcp.report_block(report) == rtcp.ReportBlock(9, 0.5, 0x12345678, 65536)
    assert matched(report, 40000) == set()


def test_bad_tags_and_lengths_are_refused() -> None:
    with pytest.raises(WireError, match="16 bytes"):
        tg.hello(b"short", 1)
    with pytest.raises(WireError, match="64-byte"):
        tg.parse_self_info(tg.hello(TAGS[0], 1))
    with pytest.raises(WireError, match="8 bytes"):
        tg.self_info(TAGS[0], b"\x00" * 7, 0, ("1.2.3.4", 1))
    with pytest.raises(WireError, match="sender tag"):
        tg.data(TAGS[0], b"\x01", b"x")
    with pytest.raises(WireError, match="65535"):
        tg.tcp_frame(b"\x00" * 70000)
