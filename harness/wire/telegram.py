"""The Telegram-like reflector protocol.

Reported (restrictions.md §2.2, tgcalls v2 ReflectorPort.cpp; libtgvoip):
reflectors on UDP 596-599 and 1400 (default 599, UDP or TCP); the hello is a
16-byte peer tag, 12×FF, FE, 3×FF, then a u64: 40 bytes, resent every 500 ms
until answered, then every 10 s. libtgvoip pings its relays every 0.5 s.

Ours [S]: the hello doubles as the UDP ping (the u64 is the query id, little
endian as libtgvoip writes its fields); the reflector answers with the tag,
16×FF and the same u64 (40 bytes, no FE byte); media and receiver reports
through a reflector are the peer tag followed by an RTP (Opus, payload type
111, nDPI's TELEGRAM_VOIP audio type) or RTCP packet; on the TCP relay every
packet is framed by a big-endian u16 length. Over P2P the same RTP/RTCP
packets go bare."""

from __future__ import annotations

import struct

from harness.wire.rtp import WireError

TAG_BYTES = 16
HELLO_MAGIC = b"\xff" * 12 + b"\xfe\xff\xff\xff"
ANSWER_MAGIC = b"\xff" * 16
HELLO_BYTES = 40
REFLECTOR_UDP_PORTS = (599, 598, 597, 596, 1400)
TCP_RELAY_PORT = 443
MEDIA_PAYLOAD_TYPE = 111
MEDIA_SAMPLE_RATE = 48000  # Opus's RTP clock (RFC 7587), whatever the coded rate
FRAME_MS = 60
MIN_BITRATE = 8000
MAX_BITRATE = 20000
FEC_ABOVE_LOSS_PCT = 12.5
TCP_FRAME = struct.Struct("!H")


def check_tag(tag: bytes) -> bytes:
    if len(tag) != TAG_BYTES:
        raise WireError(f"peer tag must be {TAG_BYTES} bytes, got {len(tag)}")
    return tag


def hello(tag: bytes, query_id: int) -> bytes:
    return check_tag(tag) + HELLO_MAGIC + struct.pack("<Q", query_id & (2**64 - 1))


def answer(tag: bytes, query_id: int) -> bytes:
    return check_tag(tag) + ANSWER_MAGIC + struct.pack("<Q", query_id & (2**64 - 1))


def is_hello(data: bytes) -> bool:
    return len(data) == HELLO_BYTES and data[TAG_BYTES:TAG_BYTES + 16] == HELLO_MAGIC


def is_answer(data: bytes) -> bool:
    return len(data) == HELLO_BYTES and data[TAG_BYTES:TAG_BYTES + 16] == ANSWER_MAGIC


def query_id(data: bytes) -> int:
    if len(data) != HELLO_BYTES:
        raise WireError(f"hello/answer must be {HELLO_BYTES} bytes, got {len(data)}")
    value: int = struct.unpack_from("<Q", data, 32)[0]
    return value


def tagged(tag: bytes, packet: bytes) -> bytes:
    """A packet for the reflector: the peer tag, then the payload."""
    return check_tag(tag) + packet


def split_tag(data: bytes) -> tuple[bytes, bytes]:
    if len(data) < TAG_BYTES:
        raise WireError(f"reflector packet of {len(data)} bytes, under the {TAG_BYTES}-byte tag")
    return data[:TAG_BYTES], data[TAG_BYTES:]


def tcp_frame(packet: bytes) -> bytes:
    if len(packet) > 0xFFFF:
        raise WireError(f"TCP frame of {len(packet)} bytes is over 65535")
    return TCP_FRAME.pack(len(packet)) + packet


RTCP_RR = 201
_RR = struct.Struct("!BBHII BBH I I I I")


def receiver_report(ssrc: int, source: int, fraction_lost: float, cumulative_lost: int,
                    highest_seq: int) -> bytes:
    """An RTCP receiver report (RFC 3550 §6.4.2) with one report block: how the
    sender learns the loss it must adapt to (libtgvoip: > 12.5% → 8 kbit/s + FEC)."""
    fraction = max(0, min(255, int(fraction_lost * 256)))
    lost = max(0, min(cumulative_lost, 0x7FFFFF))
    return _RR.pack(0x81, RTCP_RR, 7, ssrc, source, fraction, lost >> 16, lost & 0xFFFF,
                    highest_seq & 0xFFFFFFFF, 0, 0, 0)


def is_receiver_report(data: bytes) -> bool:
    return len(data) >= _RR.size and data[0] >> 6 == 2 and data[1] == RTCP_RR


def report_fraction_lost(data: bytes) -> float:
    """The fraction (0..1) a receiver report carries."""
    if not is_receiver_report(data):
        raise WireError("not an RTCP receiver report")
    return data[12] / 256.0
