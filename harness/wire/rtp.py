"""The RTP header the profiles' media frames carry (RFC 3550), with the first
byte and payload type each app is reported to use (docs/sources.md S19, S20, S24, S26:
"RTP first byte 0x80/0x90 with payload type 111/120").

A header extension (the X bit, RFC 3550 §5.3.1) is a 16-bit profile, a 16-bit
length in 32-bit words and that many words of data. The default profile is
RFC 8285's one-byte-header profile 0xBEDE; WhatsApp's WARP frames use their
own profile, 0xDEBE (harness.wire.whatsapp)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
EXTENSION_HEADER = struct.Struct("!HH")  # profile, length in 32-bit words
ONE_BYTE_PROFILE = 0xBEDE  # RFC 8285 §4.2: the profile when none is given


class WireError(ValueError):
    pass


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet. With `extension`, the header carries an extension of
    `extension_profile` whose data is `extension_data` (a whole number of
    32-bit words)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    extension: bool = False
    extension_profile: int = ONE_BYTE_PROFILE
    extension_data: bytes = b""

    def encode(self) -> bytes:
        first = (RTP_VERSION << 6) | (0x10 if self.extension else 0)
        header = HEADER.pack(first, self.payload_type & 0x7F, self.sequence & 0xFFFF,
                             self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF)
        return header + (self._extension() if self.extension else b"") + self.payload

    def _extension(self) -> bytes:
        words, rest = divmod(len(self.extension_data), 4)
        if rest:
            raise WireError(f"RTP extension data of {len(self.extension_data)} bytes is not "
                            "a whole number of 32-bit words")
        if not 0 <= self.extension_profile <= 0xFFFF or words > 0xFFFF:
            raise WireError("RTP extension profile or length out of range")
        return EXTENSION_HEADER.pack(self.extension_profile, words) + self.extension_data

    @classmethod
    def decode(cls, data: bytes) -> RtpPacket:
        if len(data) < HEADER.size:
            raise WireError(f"RTP packet of {len(data)} bytes, under {HEADER.size}")
        first, second, seq, ts, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise WireError(f"RTP version {first >> 6}, expected {RTP_VERSION}")
        offset = HEADER.size + 4 * (first & 0x0F)
        extension = bool(first & 0x10)
        profile, ext_data = ONE_BYTE_PROFILE, b""
        if extension:
            if len(data) < offset + EXTENSION_HEADER.size:
                raise WireError("RTP extension header truncated")
            profile, words = EXTENSION_HEADER.unpack_from(data, offset)
            start = offset + EXTENSION_HEADER.size
            offset = start + 4 * words
            ext_data = data[start:offset]
        if len(data) < offset:
            raise WireError("RTP header truncated")
        return cls(second & 0x7F, seq, ts, ssrc, data[offset:], extension, profile, ext_data)


def is_rtp(data: bytes) -> bool:
    return len(data) >= HEADER.size and data[0] >> 6 == RTP_VERSION
