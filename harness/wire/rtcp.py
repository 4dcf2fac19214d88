"""RTCP sender and receiver reports (RFC 3550 §6.4), as the app-like
profiles send them: a side that sends media reports with a sender report
(SR, type 200) carrying one report block about what it received, otherwise
with a receiver report (RR, type 201); the block's LSR/DLSR let the SR's
sender measure the round trip to the other peer through whatever relays
carry both (RFC 3550 §6.4.1), and its fraction lost is what a sender adapts
its bitrate to."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from harness.wire.rtp import WireError

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_HEADER = struct.Struct("!BBHI")  # V/P/RC, type, length in words - 1, sender SSRC
SENDER_INFO = struct.Struct("!QIII")  # NTP timestamp, RTP timestamp, packets, octets
BLOCK = struct.Struct("!IBBHIIII")  # source, fraction, lost (24 bits), highest, jitter, LSR, DLSR
_RR = struct.Struct("!BBHII BBH I I I I")
NTP_EPOCH_OFFSET_S = 2208988800  # 1900-01-01 to 1970-01-01 (RFC 5905)


def block(source: int, fraction_lost: float, cumulative_lost: int, highest_seq: int,
          last_sr: int, delay_since_last_sr: int) -> bytes:
    """One reception report block (24 bytes, RFC 3550 §6.4.1); the jitter is 0."""
    fraction = max(0, min(255, int(fraction_lost * 256)))
    lost = max(0, min(cumulative_lost, 0x7FFFFF))
    return BLOCK.pack(source & 0xFFFFFFFF, fraction, lost >> 16, lost & 0xFFFF,
                       highest_seq & 0xFFFFFFFF, 0, last_sr & 0xFFFFFFFF,
                       delay_since_last_sr & 0xFFFFFFFF)


def receiver_report(ssrc: int, source: int, fraction_lost: float, cumulative_lost: int,
                    highest_seq: int, last_sr: int = 0, delay_since_last_sr: int = 0) -> bytes:
    """An RTCP receiver report (RFC 3550 §6.4.2) with one report block: how the
    sender learns the loss it must adapt to (harness.calls.app.telegram_client).
    `last_sr`/`delay_since_last_sr` are the block's LSR and DLSR (0: no SR seen)."""
    return (RTCP_HEADER.pack(0x81, RTCP_RR, 7, ssrc & 0xFFFFFFFF)
            + block(source, fraction_lost, cumulative_lost, highest_seq, last_sr,
                     delay_since_last_sr))


def sender_report(ssrc: int, ntp_timestamp: int, rtp_timestamp: int, packets: int,
                  octets: int, source: int, fraction_lost: float, cumulative_lost: int,
                  highest_seq: int, last_sr: int = 0, delay_since_last_sr: int = 0) -> bytes:
    """An RTCP sender report (RFC 3550 §6.4.1) with one report block (the same
    block a receiver report carries). `ntp_timestamp` is the 64-bit NTP time."""
    return (RTCP_HEADER.pack(0x81, RTCP_SR, 12, ssrc & 0xFFFFFFFF)
            + SENDER_INFO.pack(ntp_timestamp & (2**64 - 1), rtp_timestamp & 0xFFFFFFFF,
                                packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
            + block(source, fraction_lost, cumulative_lost, highest_seq, last_sr,
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
    return (len(data) >= RTCP_HEADER.size + SENDER_INFO.size and data[0] >> 6 == 2
            and data[1] == RTCP_SR)


def is_rtcp_report(data: bytes) -> bool:
    return is_sender_report(data) or is_receiver_report(data)


def rtcp_ssrc(data: bytes) -> int:
    """The SSRC of the report's sender."""
    if not is_rtcp_report(data):
        raise WireError("not an RTCP sender or receiver report")
    value: int = RTCP_HEADER.unpack_from(data)[3]
    return value


def sender_report_ntp(data: bytes) -> int:
    """The 64-bit NTP timestamp of a sender report."""
    if not is_sender_report(data):
        raise WireError("not an RTCP sender report")
    value: int = SENDER_INFO.unpack_from(data, RTCP_HEADER.size)[0]
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
    offset = RTCP_HEADER.size + (SENDER_INFO.size if data[1] == RTCP_SR else 0)
    if count == 0 or len(data) < offset + BLOCK.size:
        return None
    source, fraction, _, _, _, _, lsr, dlsr = BLOCK.unpack_from(data, offset)
    return ReportBlock(source, fraction / 256.0, lsr, dlsr)


def report_fraction_lost(data: bytes) -> float:
    """The fraction (0..1) a receiver report carries."""
    if not is_receiver_report(data):
        raise WireError("not an RTCP receiver report")
    return data[12] / 256.0
