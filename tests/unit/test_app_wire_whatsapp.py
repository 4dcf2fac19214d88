"""The whatsapp-like wire format against the censor's classifier references:
its STUN dialect matches whatsapp-stun and stun-cookie and nothing else; its
WARP media frames match rtp with payload type 120 and nothing else."""

from __future__ import annotations

import pytest

from harness.wire import whatsapp as wa
from harness.wire.rtp import RtpPacket, WireError
from tests.unit.app_wire_support import matched

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


@pytest.mark.parametrize("sequence", [0, 1, 999, 65535])
def test_media_frame_matches_rtp_120_only(sequence: int) -> None:
    frame = wa.media_frame(sequence, sequence * 960, 0xDEADBEEF, b"\xfc" + b"\x55" * 80)
    assert frame[0] == 0x90 and frame[1] == 120
    assert matched(frame, 3478) == {"rtp-120"}


def test_media_frame_round_trip() -> None:
    frame = wa.media_frame(5, 4800, 77, b"opus-bytes")
    packet = RtpPacket.decode(frame)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        120, 5, 4800, 77)
    assert packet.payload == b"opus-bytes" and packet.extension
    assert wa.is_media(frame) and not wa.is_wasp(frame)


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
