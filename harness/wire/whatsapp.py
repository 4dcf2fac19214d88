"""The WhatsApp-like relay dialect ("WASP"): RFC 5389 framing with the magic
cookie 0x2112A442, allocate 0x0003, keepalive ping/pong 0x0801/0x0802 and
attributes in the 0x4000 range; media in "WARP" frames (first byte 0x90,
payload type 120, 60 ms Opus at 16 kHz).

Source: docs/sources.md S19, S20 (wacrg.org, rated "probable" there; nDPI's
WHATSAPP_CALL rule on types 0x0800-0x0802 and attributes 0x4000-0x4004/0x4007).
What the attributes carry, the success type 0x0103 and the error type 0x0113
are ours [S]: only the numbers above are reported. The real media is SRTP; ours
is plain RTP with the same header [S] (a classifier sees the same bytes)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from harness.wire.rtp import RtpPacket, WireError

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")
ALLOCATE = 0x0003
ALLOCATE_SUCCESS = 0x0103
ALLOCATE_ERROR = 0x0113
PING = 0x0801
PONG = 0x0802
MESSAGE_TYPES = (ALLOCATE, ALLOCATE_SUCCESS, ALLOCATE_ERROR, PING, PONG)

# Attributes (nDPI: 0x4000-0x4004 and 0x4007 are WhatsApp's) [S: meanings ours].
ATTR_CALL_ID = 0x4000
ATTR_PEER_ID = 0x4001
ATTR_RELAY_TOKEN = 0x4002
ATTR_SEND_TIME = 0x4003
ATTR_ERROR = 0x4007

MEDIA_PAYLOAD_TYPE = 120
MEDIA_SAMPLE_RATE = 16000
MEDIA_FRAME_MS = 60
RELAY_PORTS = range(3478, 3498)


@dataclass(frozen=True)
class WaspMessage:
    """One STUN-dialect message: type, transaction id and attributes (type → value)."""

    msg_type: int
    transaction_id: bytes = field(default_factory=lambda: os.urandom(12))
    attributes: dict[int, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        if len(self.transaction_id) != 12:
            raise WireError("transaction id must be 12 bytes")
        body = b"".join(_attribute(t, v) for t, v in self.attributes.items())
        return HEADER.pack(self.msg_type, len(body), MAGIC_COOKIE, self.transaction_id) + body

    @classmethod
    def decode(cls, data: bytes) -> WaspMessage:
        if len(data) < HEADER.size:
            raise WireError(f"STUN message of {len(data)} bytes, under {HEADER.size}")
        msg_type, length, cookie, txid = HEADER.unpack_from(data)
        if cookie != MAGIC_COOKIE:
            raise WireError(f"magic cookie {cookie:#010x}, expected {MAGIC_COOKIE:#010x}")
        if msg_type & 0xC000:
            raise WireError(f"first two bits of type {msg_type:#06x} are not zero")
        if HEADER.size + length != len(data):
            raise WireError(f"STUN length {length} does not match {len(data) - HEADER.size}")
        return cls(msg_type, txid, _attributes(data[HEADER.size:]))

    def get(self, attr: int) -> bytes | None:
        return self.attributes.get(attr)


def _attribute(attr_type: int, value: bytes) -> bytes:
    padding = b"\x00" * (-len(value) % 4)
    return struct.pack("!HH", attr_type, len(value)) + value + padding


def _attributes(body: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset < len(body):
        if offset + 4 > len(body):
            raise WireError("attribute header truncated")
        attr_type, length = struct.unpack_from("!HH", body, offset)
        start = offset + 4
        if start + length > len(body):
            raise WireError(f"attribute {attr_type:#06x} truncated")
        attrs[attr_type] = body[start:start + length]
        offset = start + length + (-length % 4)
    return attrs


def allocate(call_id: str, peer_id: int) -> WaspMessage:
    return WaspMessage(ALLOCATE, attributes={ATTR_CALL_ID: call_id.encode(),
                                             ATTR_PEER_ID: struct.pack("!I", peer_id)})


def allocate_success(request: WaspMessage, token: bytes) -> WaspMessage:
    return WaspMessage(ALLOCATE_SUCCESS, request.transaction_id, {ATTR_RELAY_TOKEN: token})


def allocate_error(request: WaspMessage, reason: str) -> WaspMessage:
    return WaspMessage(ALLOCATE_ERROR, request.transaction_id, {ATTR_ERROR: reason.encode()})


def ping(sent_ns: int) -> WaspMessage:
    return WaspMessage(PING, attributes={ATTR_SEND_TIME: struct.pack("!Q", sent_ns)})


def pong(request: WaspMessage) -> WaspMessage:
    return WaspMessage(PONG, request.transaction_id, dict(request.attributes))


def send_time_ns(message: WaspMessage) -> int | None:
    raw = message.get(ATTR_SEND_TIME)
    return struct.unpack("!Q", raw)[0] if raw is not None and len(raw) == 8 else None


def peer_id_of(message: WaspMessage) -> int | None:
    raw = message.get(ATTR_PEER_ID)
    return struct.unpack("!I", raw)[0] if raw is not None and len(raw) == 4 else None


def media_frame(sequence: int, timestamp: int, ssrc: int, opus: bytes) -> bytes:
    """A "WARP" frame: RTP with first byte 0x90 (version 2, X bit) and type 120."""
    return RtpPacket(MEDIA_PAYLOAD_TYPE, sequence, timestamp, ssrc, opus,
                     extension=True).encode()


def is_media(data: bytes) -> bool:
    return len(data) >= 12 and data[0] == 0x90 and data[1] & 0x7F == MEDIA_PAYLOAD_TYPE


def is_wasp(data: bytes) -> bool:
    return (len(data) >= HEADER.size and data[0] & 0xC0 == 0
            and struct.unpack_from("!I", data, 4)[0] == MAGIC_COOKIE)
