"""Classification in the kernel, measured with crafted packets through the
censor (issue 3, calibration suite): the first-N window is exact, a verdict
lasts as long as configured, and every shipped kernel classifier matches a
packet built to its published format but not a near miss one byte off (read
from the rule's own packet counter)."""

from __future__ import annotations

import os
import struct
import time

import pytest

from harness.measure.traffic.lab import (
    finish_udp_sink,
    start_udp_sink,
    udp_packets,
    udp_upstream,
)
from harness.measure.traffic.udp import TRAILER, Signature
from harness.testbed import Lab
from tests.calibration.censor_support import (
    calibration_policy,
    packets_counted,
    with_rule,
)
from tests.calibration.conftest import Level, calibration_level

pytestmark = pytest.mark.root  # `lab` is callwall's plugin fixture
COOKIE = bytes.fromhex("2112a442")
STUN_BINDING = struct.pack("!HH", 0x0001, 0) + COOKIE + bytes(range(12))


@pytest.mark.parametrize("first_n", (3,) if calibration_level() == "short" else (1, 3, 5))
def test_first_n_is_exact(lab: Lab, first_n: int) -> None:
    """N+1 concurrent flows; flow i carries a STUN message at packet i+1 only.
    A flow classified at packet k loses packets k, k+1, ...; the flow whose
    STUN comes at packet N+1 loses none."""
    policy = with_rule(calibration_policy("calib-first-n", lab),
                       classify={"first_packets": first_n})
    lab.apply_policy(policy)
    flows = first_n + 1
    at_by_flow = tuple((flow, flow + 1) for flow in range(flows))
    result = udp_upstream(lab.network, "caller", "relay", 42100, flows=flows, pps=20, size=60,
                          seconds=1.5, signature=Signature(STUN_BINDING, at_by_flow=at_by_flow))
    for flow, at in at_by_flow:
        got = result[flow]
        if at <= first_n:
            assert got.packets == at - 1, (
                f"STUN at packet {at} <= N={first_n}: expected the flow cut after packet "
                f"{at - 1}, received {got.packets} of {got.sent}")
        else:
            assert got.packets == got.sent > at, (
                f"STUN at packet {at} = N+1: expected no effect, received {got.packets} of "
                f"{got.sent}")


def test_verdict_lasts_verdict_s_then_lapses(lab: Lab, level: Level) -> None:
    """One flow (a pinned source port), three packets per phase: STUN
    (classified, dropped); after half the verdict time, plain packets (the
    verdict holds: dropped); after more than the verdict time, plain packets
    (it lapsed: they pass). The flow is past its first N packets by then, so
    it is not classified again. The sink sees which packets arrived."""
    verdict_s = 2 if level == "short" else 6
    lab.apply_policy(with_rule(calibration_policy("calib-first-n", lab), verdict_s=verdict_s))
    sink = start_udp_sink(lab.network, "relay", 42101, seconds=2 * verdict_s + 6)

    def phase(first_seq: int, head: bytes) -> float:
        payloads = [head + bytes(24) + TRAILER.pack(0, seq)
                    for seq in range(first_seq, first_seq + 3)]
        udp_packets(lab.network, "caller", "relay", 42101, payloads, source_port=42999)
        return time.monotonic()

    classified = phase(1, STUN_BINDING)
    time.sleep(verdict_s / 2)
    held = phase(4, b"")
    assert held - classified < 0.9 * verdict_s, "the machine is too slow for this timing"
    time.sleep(verdict_s + 1.0)
    phase(7, b"")
    report = finish_udp_sink(sink, 2 * verdict_s + 20)
    seqs = report["flows"].get("0", {}).get("seqs", [])
    assert seqs == [7, 8, 9], (
        f"expected only the packets sent after the verdict lapsed (7-9), got {seqs}: "
        "1-3 = classified, 4-6 = within verdict_s")


# ------------------------------------------------------------------ signatures
# Packets built from the published formats (see harness/censor/signatures.py
# SOURCES), each with near misses one byte (or one length byte) off.

def _stun(message_type: int, attributes: bytes = b"") -> bytes:
    return struct.pack("!HH", message_type, len(attributes)) + COOKIE + os.urandom(12) + \
        attributes


def _telegram(fill: bytes, length: int = 40) -> bytes:
    return (os.urandom(16) + fill + os.urandom(8)).ljust(length, b"\0")[:length]


def _rtp(first: int, payload_type: int) -> bytes:
    return struct.pack("!BBHII", first, payload_type, 1, 160, 0x1234) + os.urandom(160)


def _dtls(content: int, version: int) -> bytes:
    # record header, then a ClientHello handshake header
    return struct.pack("!BHHIHH", content, version, 0, 0, 0, 100) + b"\x01" + bytes(99)


def _snowflake(at_0x5a: bytes) -> bytes:
    """A DTLS ClientHello record with `at_0x5a` at payload offset 0x5a, where
    Snowflake's 2021 fingerprint sat (pion/dtls#409)."""
    packet = bytearray(_dtls(0x16, 0xFEFD))
    packet[0x5A:0x5A + len(at_0x5a)] = at_0x5a
    return bytes(packet)


def _wireguard(first: bytes, length: int) -> bytes:
    return first + os.urandom(length - len(first))


def _quic(version: bytes, length: int) -> bytes:
    return b"\xc3" + version + b"\x08" + os.urandom(8) + os.urandom(length - 14)


TG_FILL = b"\xff" * 12 + b"\xfe" + b"\xff" * 3
CASES: dict[str, tuple[int, list[bytes], list[bytes]]] = {
    # rule: (port, matching packets, near misses)
    "sig-stun": (42001, [_stun(0x0001)],
                 [bytes.fromhex("000100002112a443") + bytes(12)]),
    "sig-whatsapp": (42002, [_stun(0x0801), _stun(0x0001, bytes.fromhex("40040004") + bytes(4)),
                             _stun(0x0001, bytes.fromhex("40070004") + bytes(4))],
                     [_stun(0x0803), _stun(0x0001, bytes.fromhex("40050004") + bytes(4))]),
    "sig-telegram": (42003, [_telegram(TG_FILL)],
                     [_telegram(TG_FILL[:12] + b"\xfd" + TG_FILL[13:]),
                      _telegram(TG_FILL, 41)]),
    "sig-rtp": (42004, [_rtp(0x80, 111), _rtp(0x80, 0x80 | 111)],  # marker bit set
                [_rtp(0x80, 110), _rtp(0x40, 111)]),
    "sig-dtls": (42005, [_dtls(0x16, 0xFEFD), _dtls(0x16, 0xFEFF)],
                 [_dtls(0x17, 0xFEFD), _dtls(0x16, 0xFEFC)]),
    "sig-dtls-at": (42009, [_snowflake(bytes.fromhex("1d00170018"))],
                    [_snowflake(bytes.fromhex("1d00170019")),
                     _dtls(0x17, 0xFEFD)[:90] + bytes.fromhex("1d00170018") + bytes(20)]),
    "sig-wireguard": (42006, [_wireguard(b"\x01\0\0\0", 148), _wireguard(b"\x02\0\0\0", 92)],
                      [_wireguard(b"\x01\0\0\0", 147), _wireguard(b"\x01\0\0\x01", 148),
                       _wireguard(b"\x03\0\0\0", 92)]),
    "sig-quic": (443, [_quic(b"\0\0\0\x01", 1200), _quic(b"\0\0\0\x01", 1001)],
                 [_quic(b"\0\0\0\x01", 1000), _quic(b"\0\0\0\x02", 1200)]),
    "sig-bytes": (42008, [b"\0\0\xca\xfe" + bytes(20), b"\0\0\xca\xf7" + bytes(20)],
                  [b"\0\0\xca\xef" + bytes(20), b"\0\xca\xfe\0" + bytes(20)]),
}


def _classified(lab: Lab, rule: str) -> int:
    return packets_counted(lab, f"{rule}: classify")


@pytest.mark.parametrize("rule", sorted(CASES))
def test_kernel_classifier_matches_format_not_near_miss(lab: Lab, rule: str) -> None:
    if lab.registry.state.policy != "calib-signatures":
        lab.apply_policy(calibration_policy("calib-signatures", lab))
    port, hits, misses = CASES[rule]
    for index, packet in enumerate(hits):
        before = _classified(lab, rule)
        udp_packets(lab.network, "caller", "relay", port, [packet])
        assert _classified(lab, rule) == before + 1, f"{rule}: match {index} not classified"
    for index, packet in enumerate(misses):
        before = _classified(lab, rule)
        udp_packets(lab.network, "caller", "relay", port, [packet])
        assert _classified(lab, rule) == before, f"{rule}: near miss {index} classified"
