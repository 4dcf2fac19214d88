"""The WhatsApp-like relay dialect ("WASP"): RFC 5389 framing with the magic
cookie 0x2112A442, allocate 0x0003, keepalive ping/pong 0x0801/0x0802 and
attributes in the 0x4000 range; media in "WARP" frames; RTCP reports.

Source: docs/sources.md S19, S20 (wacrg.org, rated "probable" there; nDPI's
WHATSAPP_CALL rule on types 0x0800-0x0802 and attributes 0x4000-0x4004/0x4007).
What the attributes carry, the success type 0x0103 and the error type 0x0113
are ours [S]: only the numbers above are reported.

WARP (wacrg "warp-stun-relay" and "warp-crypto", and the whatsapp-rust
reconstruction's rtp.rs/warp.rs, docs/sources.md S63): RTP version 2 with the
X bit (first byte 0x90), payload type 120, a header extension of profile
0xDEBE: empty (a 16-byte header) for the stream's first two packets, then one
word 0x30010000 (20 bytes), the "audio piggyback" word that announces the
integrity tag; after the payload, a 4-byte MESSAGE-INTEGRITY tag, the first 4
bytes of HMAC-SHA1 over the packet before it followed by the 32-bit rollover
counter (big endian). The sequence starts at 1; 60 ms Opus frames at 16 kHz
advance the timestamp by 960. Ours [S]: the payload is plain Opus where the
real one is SRTP-encrypted (a classifier sees the same header bytes); the tag
is keyed with wacrg's "warp auth key" (HKDF-SHA256 of the call key, info
"warp auth key") from a call key we derive from the call id, where
whatsapp-rust keys it with the SRTP authentication key; no hop-by-hop SRTP
tag is added.

RTCP (wacrg "rtcp" REL-04; whatsapp-rust rtcp.rs
build_whatsapp_sender_report_with_sdes): one compound datagram, a sender
report (type 200) with one RFC 3550 report block followed by 24 bytes of
WhatsApp transport statistics (zero: "unavailable"), then a 32-byte SDES with
an 18-byte CNAME of the form xxxxx@pjxxxxxx.org. Sent in the clear here [S]
(the real reports are SRTCP)."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from harness.wire import rtcp
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


WARP_EXTENSION_PROFILE = 0xDEBE
PIGGYBACK_WORD = bytes.fromhex("30010000")
PIGGYBACK_FROM_PACKET = 2  # 0-based index of the first packet that carries it
MI_TAG_BYTES = 4
FIRST_SEQUENCE = 1
HEADER_BYTES = 16  # 12 + the empty 0xDEBE extension
PIGGYBACK_HEADER_BYTES = 20
WARP_AUTH_INFO = b"warp auth key"


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """RFC 5869 HKDF with SHA-256 (an empty salt is HashLen zero bytes)."""
    prk = hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def call_key(call_id: str) -> bytes:
    """[S] The call's 32-byte key: WhatsApp's comes in the call offer; ours is
    derived from the call id, so both sides have it."""
    return hashlib.sha256(f"callwall-whatsapp-call-key:{call_id}".encode()).digest()


def warp_auth_key(key: bytes) -> bytes:
    """wacrg warp-crypto: HKDF-SHA256(call key, no salt, "warp auth key"), 32 bytes."""
    if len(key) != 32:
        raise WireError(f"call key must be 32 bytes, got {len(key)}")
    return hkdf_sha256(key, WARP_AUTH_INFO)


def mi_tag(auth_key: bytes, packet: bytes, roc: int = 0) -> bytes:
    """The WARP MESSAGE-INTEGRITY tag of `packet` (everything before the tag)."""
    return hmac.new(auth_key, packet + struct.pack("!I", roc & 0xFFFFFFFF),
                    hashlib.sha1).digest()[:MI_TAG_BYTES]


def media_frame(sequence: int, timestamp: int, ssrc: int, opus: bytes, packet_index: int,
                auth_key: bytes, roc: int = 0) -> bytes:
    """A WARP frame: RTP 0x90/120 with the 0xDEBE extension (empty for the
    first two packets of the stream, then the piggyback word), the payload,
    and the 4-byte integrity tag."""
    extension = PIGGYBACK_WORD if packet_index >= PIGGYBACK_FROM_PACKET else b""
    packet = RtpPacket(MEDIA_PAYLOAD_TYPE, sequence, timestamp, ssrc, opus, extension=True,
                       extension_profile=WARP_EXTENSION_PROFILE,
                       extension_data=extension).encode()
    return packet + mi_tag(auth_key, packet, roc)


@dataclass(frozen=True)
class WarpFrame:
    rtp: RtpPacket
    tag: bytes
    protected: bytes  # the bytes the tag covers

    def tag_ok(self, auth_key: bytes, roc: int = 0) -> bool:
        return hmac.compare_digest(self.tag, mi_tag(auth_key, self.protected, roc))


def parse_media(data: bytes) -> WarpFrame:
    """A WARP frame's RTP packet (payload without the tag) and its tag."""
    if not is_media(data) or len(data) < HEADER_BYTES + MI_TAG_BYTES:
        raise WireError(f"not a WARP frame ({len(data)} bytes)")
    protected = data[:-MI_TAG_BYTES]
    packet = RtpPacket.decode(protected)
    if packet.extension_profile != WARP_EXTENSION_PROFILE:
        raise WireError(f"RTP extension profile {packet.extension_profile:#06x}, "
                        f"expected {WARP_EXTENSION_PROFILE:#06x}")
    return WarpFrame(packet, data[-MI_TAG_BYTES:], protected)


def is_media(data: bytes) -> bool:
    return len(data) >= 12 and data[0] == 0x90 and data[1] & 0x7F == MEDIA_PAYLOAD_TYPE


def is_rtcp(data: bytes) -> bool:
    """An RTCP packet (RFC 5761 §4: version 2, packet type 192-223)."""
    return len(data) >= 8 and data[0] >> 6 == 2 and 192 <= data[1] <= 223


# --------------------------------------------------------------------------- RTCP

CNAME_BYTES = 18
REPORT_EXTENSION_BYTES = 24
SDES_CNAME = 1


def cname(entropy: bytes) -> bytes:
    """An 18-byte CNAME like the native client's: 11 hex digits around
    "@pj" and ".org" (whatsapp-rust build_whatsapp_rtcp_cname)."""
    if len(entropy) < 6:
        raise WireError("a CNAME needs 6 bytes of entropy")
    digits = entropy[:6].hex()[:11].encode()
    return digits[:5] + b"@pj" + digits[5:] + b".org"


def source_description(ssrc: int, name: bytes) -> bytes:
    """The 32-byte SDES: one chunk, the CNAME item, END and padding."""
    if len(name) != CNAME_BYTES:
        raise WireError(f"CNAME must be {CNAME_BYTES} bytes, got {len(name)}")
    chunk = struct.pack("!IBB", ssrc & 0xFFFFFFFF, SDES_CNAME, CNAME_BYTES) + name
    chunk += b"\x00" * (4 - len(chunk) % 4)  # END item, padded to a word
    return struct.pack("!BBH", 0x81, rtcp.RTCP_SDES, (4 + len(chunk)) // 4 - 1) + chunk


def sender_report(ssrc: int, ntp_timestamp: int, rtp_timestamp: int, packets: int,
                  octets: int, name: bytes, report: bytes | None = None) -> bytes:
    """The compound report: SR (with `report`, one rtcp.block, followed by
    the 24 bytes of WhatsApp statistics, zero) and SDES."""
    body = rtcp.SENDER_INFO.pack(ntp_timestamp & (2**64 - 1), rtp_timestamp & 0xFFFFFFFF,
                                 packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    count = 0
    if report is not None:
        if len(report) != rtcp.BLOCK.size:
            raise WireError(f"a report block is {rtcp.BLOCK.size} bytes")
        body += report + b"\x00" * REPORT_EXTENSION_BYTES
        count = 1
    words = (rtcp.RTCP_HEADER.size + len(body)) // 4 - 1
    sr = rtcp.RTCP_HEADER.pack(0x80 | count, rtcp.RTCP_SR, words, ssrc & 0xFFFFFFFF) + body
    return sr + source_description(ssrc, name)


def is_wasp(data: bytes) -> bool:
    return (len(data) >= HEADER.size and data[0] & 0xC0 == 0
            and struct.unpack_from("!I", data, 4)[0] == MAGIC_COOKIE)
