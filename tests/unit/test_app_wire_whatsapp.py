"""The whatsapp-like wire format against the censor's classifier references:
its STUN dialect matches whatsapp-stun and stun-cookie and nothing else; its
WARP media frames match rtp with payload type 120 and nothing else, its RTCP
reports nothing. The WARP header, integrity tag and compound RTCP report are
checked byte for byte against the layouts wacrg and the whatsapp-rust
reconstruction give (docs/sources.md S63), the HKDF against RFC 5869."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from harness.wire import rtcp
from harness.wire import whatsapp as wa
from harness.wire.rtp import ONE_BYTE_PROFILE, RtpPacket, WireError
from tests.unit.app_wire_support import matched

KEY = wa.warp_auth_key(wa.call_key("run-1-call-1"))

CONTROL = {
    "allocate": wa.allocate("run-1-call-1", 1),
    "allocate-success": wa.allocate_success(wa.allocate("c", 2), b"\x01" * 8),
    "ping": wa.ping(123456789),
    "pong": wa.pong(wa.ping(42)),
}


@pytest.mark.parametrize("name", sorted(CONTROL))
@pytest.mark.parametrize("port", [3478, 3484, 3497, 443])
def test_stun_dialect_matches_whatsapp_and_stun_only(name: str, port: int) -> None:
    assert matched(CONTROL[name].encode(), port) == {"whatsapp-stun", "stun-cookie"}


def test_allocate_carries_the_reported_numbers() -> None:
    data = wa.allocate("call", 7).encode()
    assert data[:2] == b"\x00\x03"
    assert data[4:8] == bytes.fromhex("2112a442")
    assert data[20:22] == b"\x40\x00"  # first attribute in the 0x4000 range
    assert wa.ping(1).encode()[:2] == b"\x08\x01"
    assert wa.pong(wa.ping(1)).encode()[:2] == b"\x08\x02"


def test_allocate_error_is_also_whatsapp_stun() -> None:
    error = wa.allocate_error(wa.allocate("c", 1), "call full").encode()
    assert matched(error, 3478) == {"whatsapp-stun", "stun-cookie"}


@pytest.mark.parametrize("sequence", [1, 2, 999, 65535])
@pytest.mark.parametrize("index", [0, 1, 2, 500])
def test_media_frame_matches_rtp_120_only(sequence: int, index: int) -> None:
    frame = wa.media_frame(sequence, sequence * 960, 0xDEADBEEF, b"\xfc" + b"\x55" * 80,
                           index, KEY)
    assert frame[0] == 0x90 and frame[1] == 120
    assert matched(frame, 3478) == {"rtp-120"}


def test_warp_header_is_whatsapps_16_then_20_bytes() -> None:
    """whatsapp-rust rtp.rs: WHATSAPP_RTP_HEADER_SIZE 16 (profile 0xdebe, no
    words) for packets 0 and 1, 20 with the audio piggyback word 0x30010000
    (warp.rs WARP_PIGGYBACK_START_PACKET 2); then the 4-byte MI tag."""
    opus = b"\x48" + b"\x01" * 30
    first = wa.media_frame(1, 0, 0x01020304, opus, 0, KEY)
    third = wa.media_frame(3, 1920, 0x01020304, opus, 2, KEY)
    assert first[:16] == bytes.fromhex("9078" "0001" "00000000" "01020304" "debe0000")
    assert third[:20] == bytes.fromhex("9078" "0003" "00000780" "01020304" "debe0001"
                                       "30010000")
    for frame, header in ((first, 16), (third, 20)):
        assert frame[header:-4] == opus and len(frame) == header + len(opus) + 4
        # tag = HMAC-SHA1(auth key, packet without tag || ROC big endian)[0..4]
        expected = hmac.new(KEY, frame[:-4] + b"\x00\x00\x00\x00", hashlib.sha1).digest()[:4]
        assert frame[-4:] == expected
    parsed = wa.parse_media(third)
    assert (parsed.rtp.payload_type, parsed.rtp.sequence, parsed.rtp.timestamp,
            parsed.rtp.ssrc, parsed.rtp.payload) == (120, 3, 1920, 0x01020304, opus)
    assert parsed.rtp.extension_profile == wa.WARP_EXTENSION_PROFILE == 0xDEBE
    assert parsed.rtp.extension_data == bytes.fromhex("30010000")
    assert parsed.tag_ok(KEY) and not parsed.tag_ok(KEY, roc=1)
    damaged = third[:30] + bytes([third[30] ^ 1]) + third[31:]
    assert not wa.parse_media(damaged).tag_ok(KEY)
    assert not wa.parse_media(third).tag_ok(wa.warp_auth_key(wa.call_key("other")))


def test_warp_auth_key_is_wacrgs_hkdf() -> None:
    """RFC 5869 test case 3 (SHA-256, no salt, no info), and wacrg's
    "warp auth key" derivation, both against the cryptography package."""
    assert wa.hkdf_sha256(b"\x0b" * 22, b"", 42).hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
    call_key = wa.call_key("c")
    assert wa.warp_auth_key(call_key) == HKDF(hashes.SHA256(), 32, None,
                                              b"warp auth key").derive(call_key)
    with pytest.raises(WireError, match="32 bytes"):
        wa.warp_auth_key(b"short")


def test_a_frame_with_another_profile_is_not_warp() -> None:
    plain = RtpPacket(120, 1, 0, 1, b"opus", extension=True).encode() + b"\x00" * 4
    assert plain[12:14] == ONE_BYTE_PROFILE.to_bytes(2, "big")
    with pytest.raises(WireError, match="0xdebe"):
        wa.parse_media(plain)


def test_compound_report_is_whatsapps_sr_block_and_sdes() -> None:
    """rtcp.rs build_whatsapp_sender_report_with_sdes: SR (V=2, RC=1, PT 200)
    with an RFC 3550 block and 24 zero bytes of statistics (76 bytes, length
    18), then the 32-byte SDES (0x81, PT 202, length 7, SSRC, CNAME item of
    18 bytes, END and padding)."""
    name = wa.cname(bytes.fromhex("0123456789ab"))
    assert name == b"01234@pj56789a.org" and len(name) == 18
    block = rtcp.block(0x0A0B0C0D, 0.25, 30, 400, 0x11223344, 65536)
    ntp = rtcp.ntp_timestamp(1_700_000_000.25)
    data = wa.sender_report(0x01020304, ntp, 960, 10, 1800, name, block)
    assert len(data) == 76 + 32
    assert data[:4] == bytes.fromhex("81c80012") and data[4:8] == bytes.fromhex("01020304")
    assert data[8:28] == struct.pack("!QIII", ntp, 960, 10, 1800)
    assert data[28:52] == block and data[52:76] == b"\x00" * 24
    assert data[76:] == (bytes.fromhex("81ca0007" "01020304" "0112") + name
                         + b"\x00\x00\x00\x00")
    assert wa.is_rtcp(data) and not wa.is_media(data) and not wa.is_wasp(data)
    assert rtcp.rtcp_ssrc(data) == 0x01020304 and rtcp.sender_report_ntp(data) == ntp
    assert rtcp.report_block(data) == rtcp.ReportBlock(0x0A0B0C0D, 0.25, 0x11223344, 65536)
    alone = wa.sender_report(0x01020304, ntp, 960, 10, 1800, name)
    assert alone[:4] == bytes.fromhex("80c80006") and len(alone) == 28 + 32
    assert rtcp.report_block(alone) is None
    for report in (data, alone):
        assert matched(report, 3478) == set()


def test_message_round_trip_keeps_attributes() -> None:
    message = wa.allocate("call-xyz", 2)
    decoded = wa.WaspMessage.decode(message.encode())
    assert decoded == message
    assert decoded.get(wa.ATTR_CALL_ID) == b"call-xyz" and wa.peer_id_of(decoded) == 2
    assert wa.send_time_ns(wa.WaspMessage.decode(wa.ping(99).encode())) == 99


@pytest.mark.parametrize("damage, error", [
    (lambda d: d[:4] + b"\x00\x00\x00\x00" + d[8:], "magic cookie"),
    (lambda d: d[:10], "under 20"),
    (lambda d: d + b"\x00", "length"),
    (lambda d: b"\xc0" + d[1:], "first two bits"),
])
def test_malformed_messages_are_refused(damage: object, error: str) -> None:
    data = wa.allocate("c", 1).encode()
    with pytest.raises(WireError, match=error):
        wa.WaspMessage.decode(damage(data))  # type: ignore[operator]
