"""The Telegram-like reflector protocol.

Reported (docs/sources.md S16, S24, S26, tgcalls v2 ReflectorPort.cpp; libtgvoip):
reflectors on UDP 596-599 and 1400 (default 599, UDP or TCP); the hello is a
16-byte peer tag, 12×FF, FE, 3×FF, then a u64: 40 bytes, resent every 500 ms
until answered, then every 10 s. libtgvoip pings its relays every 0.5 s.

Ours [S]: the hello doubles as the UDP ping (the u64 is the query id, little
endian as libtgvoip writes its fields); the reflector answers with the tag,
16×FF and the same u64 (40 bytes, no FE byte); media and receiver reports
through a reflector are the peer tag followed by an RTP (Opus, payload type
111, nDPI's TELEGRAM_VOIP audio type) or RTCP packet; on the TCP relay every
packet is framed by a big-endian u16 length. Over P2P the same RTP/RTCP
packets go bare.

Which side a tag belongs to (libtgvoip tests/MockReflector.cpp,
GeneratePeerTags and RunThread): the two peers of a call get the same 16-byte
tag except the low bit of its last byte (0 for one side, 1 for the other); the
reflector pairs the two, learns each side's endpoints from the tag it sends
with, and relays a packet only to the other side, with that bit flipped so
the receiver sees its own tag. The helpers below name that bit; the layout
(tag, then payload) is unchanged.

RTCP (RFC 3550 §6.4): a side that sends media reports with a sender report
(SR, type 200) carrying one report block about what it received, otherwise
with a receiver report (RR, type 201); the block's LSR/DLSR let the SR's
sender measure the round trip to the other peer through whatever relays
carry both (RFC 3550 §6.4.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

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


SIDE_BYTE = TAG_BYTES - 1
SIDE_BIT = 0x01


def side_tag(call_tag: bytes, side: int) -> bytes:
    """The tag of side 0 or 1 of the call whose shared tag is `call_tag`."""
    if side not in (0, 1):
        raise WireError(f"side must be 0 or 1, got {side!r}")
    tag = bytearray(check_tag(call_tag))
    tag[SIDE_BYTE] = (tag[SIDE_BYTE] & ~SIDE_BIT & 0xFF) | side
    return bytes(tag)


def partner_tag(tag: bytes) -> bytes:
    """The tag of the other side of the same call."""
    flipped = bytearray(check_tag(tag))
    flipped[SIDE_BYTE] ^= SIDE_BIT
    return bytes(flipped)


def split_tag(data: bytes) -> tuple[bytes, bytes]:
    if len(data) < TAG_BYTES:
        raise WireError(f"reflector packet of {len(data)} bytes, under the {TAG_BYTES}-byte tag")
    return data[:TAG_BYTES], data[TAG_BYTES:]


def tcp_frame(packet: bytes) -> bytes:
    if len(packet) > 0xFFFF:
        raise WireError(f"TCP frame of {len(packet)} bytes is over 65535")
    return TCP_FRAME.pack(len(packet)) + packet


RTCP_SR = 200
RTCP_RR = 201
_RTCP_HEADER = struct.Struct("!BBHI")  # V/P/RC, type, length in words - 1, sender SSRC
_SENDER_INFO = struct.Struct("!QIII")  # NTP timestamp, RTP timestamp, packets, octets
_BLOCK = struct.Struct("!IBBHIIII")  # source, fraction, lost (24 bits), highest, jitter, LSR, DLSR
_RR = struct.Struct("!BBHII BBH I I I I")
NTP_EPOCH_OFFSET_S = 2208988800  # 1900-01-01 to 1970-01-01 (RFC 5905)


def _block(source: int, fraction_lost: float, cumulative_lost: int, highest_seq: int,
           last_sr: int, delay_since_last_sr: int) -> bytes:
    fraction = max(0, min(255, int(fraction_lost * 256)))
    lost = max(0, min(cumulative_lost, 0x7FFFFF))
    return _BLOCK.pack(source & 0xFFFFFFFF, fraction, lost >> 16, lost & 0xFFFF,
                       highest_seq & 0xFFFFFFFF, 0, last_sr & 0xFFFFFFFF,
                       delay_since_last_sr & 0xFFFFFFFF)


def receiver_report(ssrc: int, source: int, fraction_lost: float, cumulative_lost: int,
                    highest_seq: int, last_sr: int = 0, delay_since_last_sr: int = 0) -> bytes:
    """An RTCP receiver report (RFC 3550 §6.4.2) with one report block: how the
    sender learns the loss it must adapt to (libtgvoip: > 12.5% → 8 kbit/s + FEC).
    `last_sr`/`delay_since_last_sr` are the block's LSR and DLSR (0: no SR seen)."""
    return (_RTCP_HEADER.pack(0x81, RTCP_RR, 7, ssrc & 0xFFFFFFFF)
            + _block(source, fraction_lost, cumulative_lost, highest_seq, last_sr,
                     delay_since_last_sr))


def sender_report(ssrc: int, ntp_timestamp: int, rtp_timestamp: int, packets: int,
                  octets: int, source: int, fraction_lost: float, cumulative_lost: int,
                  highest_seq: int, last_sr: int = 0, delay_since_last_sr: int = 0) -> bytes:
    """An RTCP sender report (RFC 3550 §6.4.1) with one report block (the same
    block a receiver report carries). `ntp_timestamp` is the 64-bit NTP time."""
    return (_RTCP_HEADER.pack(0x81, RTCP_SR, 12, ssrc & 0xFFFFFFFF)
            + _SENDER_INFO.pack(ntp_timestamp & (2**64 - 1), rtp_timestamp & 0xFFFFFFFF,
                                packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
            + _block(source, fraction_lost, cumulative_lost, highest_seq, last_sr,
                     delay_since_last_sr))


def ntp_timestamp(unix_s: float) -> int:
    """The 64-bit NTP timestamp (RFC 3550 §4: seconds since 1900, 32.32 fixed point)."""
    return int((unix_s + NTP_EPOCH_OFFSET_S) * 2**32) & (2**64 - 1)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: what LSR carries (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def is_receiver_report(data: bytes) -> bool:
    return len(data) >= _RR.size and data[0] >> 6 == 2 and data[1] == RTCP_RR


def is_sender_report(data: bytes) -> bool:
    return (len(data) >= _RTCP_HEADER.size + _SENDER_INFO.size and data[0] >> 6 == 2
            and data[1] == RTCP_SR)


def is_rtcp_report(data: bytes) -> bool:
    return is_sender_report(data) or is_receiver_report(data)


def rtcp_ssrc(data: bytes) -> int:
    """The SSRC of the report's sender."""
    if not is_rtcp_report(data):
        raise WireError("not an RTCP sender or receiver report")
    value: int = _RTCP_HEADER.unpack_from(data)[3]
    return value


def sender_report_ntp(data: bytes) -> int:
    """The 64-bit NTP timestamp of a sender report."""
    if not is_sender_report(data):
        raise WireError("not an RTCP sender report")
    value: int = _SENDER_INFO.unpack_from(data, _RTCP_HEADER.size)[0]
    return value


@dataclass(frozen=True)
class ReportBlock:
    """A reception report block (RFC 3550 §6.4.1): about `source`, the fraction
    (0..1) lost since the last report, and the LSR/DLSR fields (DLSR in 1/65536 s)."""

    source: int
    fraction_lost: float
    last_sr: int
    delay_since_last_sr: int


def report_block(data: bytes) -> ReportBlock | None:
    """The first report block of an SR or RR; None when it has none."""
    if not is_rtcp_report(data):
        raise WireError("not an RTCP sender or receiver report")
    count = data[0] & 0x1F
    offset = _RTCP_HEADER.size + (_SENDER_INFO.size if data[1] == RTCP_SR else 0)
    if count == 0 or len(data) < offset + _BLOCK.size:
        return None
    source, fraction, _, _, _, _, lsr, dlsr = _BLOCK.unpack_from(data, offset)
    return ReportBlock(source, fraction / 256.0, lsr, dlsr)


def report_fraction_lost(data: bytes) -> float:
    """The fraction (0..1) a receiver report carries."""
    if not is_receiver_report(data):
        raise WireError("not an RTCP receiver report")
    return data[12] / 256.0
