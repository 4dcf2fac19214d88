"""The RTP header the profiles' media frames carry (RFC 3550), with the first
byte and payload type each app is reported to use (docs/sources.md S19, S20, S24, S26:
"RTP first byte 0x80/0x90 with payload type 111/120")."""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
# The one-byte-header extension profile (RFC 8285) with zero words: what the
# X bit in 0x90 announces, kept empty.
EMPTY_EXTENSION = struct.pack("!HH", 0xBEDE, 0)


class WireError(ValueError):
    pass


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    extension: bool = False

    def encode(self) -> bytes:
        first = (RTP_VERSION << 6) | (0x10 if self.extension else 0)
        header = HEADER.pack(first, self.payload_type & 0x7F, self.sequence & 0xFFFF,
                             self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF)
        return header + (EMPTY_EXTENSION if self.extension else b"") + self.payload

    @classmethod
    def decode(cls, data: bytes) -> RtpPacket:
        if len(data) < HEADER.size:
            raise WireError(f"RTP packet of {len(data)} bytes, under {HEADER.size}")
        first, second, seq, ts, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise WireError(f"RTP version {first >> 6}, expected {RTP_VERSION}")
        offset = HEADER.size + 4 * (first & 0x0F)
        extension = bool(first & 0x10)
        if extension:
            if len(data) < offset + 4:
                raise WireError("RTP extension header truncated")
            words = struct.unpack_from("!H", data, offset + 2)[0]
            offset += 4 + 4 * words
        if len(data) < offset:
            raise WireError("RTP header truncated")
        return cls(second & 0x7F, seq, ts, ssrc, data[offset:], extension)


def is_rtp(data: bytes) -> bool:
    return len(data) >= HEADER.size and data[0] >> 6 == RTP_VERSION
