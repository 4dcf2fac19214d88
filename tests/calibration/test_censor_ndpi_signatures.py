"""The nDPI-style classifiers in the kernel (calibration): `stun` takes the
packets real STUN clients and aiortc's TURN client send, classic RFC 3489
included, and refuses an RTP packet that carries the cookie by chance and
headers one field off; `telegram-ndpi` takes a run of exactly 12 0xFF bytes
behind a Telegram port on either side and refuses near misses. Read from
each rule's own packet counter, as tests/calibration/test_censor_classify.py
does for the other classifiers."""

from __future__ import annotations

import struct

import pytest

from harness.measure.traffic.lab import udp_packets
from harness.testbed import Lab
from tests.calibration.censor_support import calibration_policy, packets_counted

pytestmark = pytest.mark.root  # `lab` is callwall's plugin fixture
COOKIE = 0x2112A442
# What real tools sent (captured in this project's environment).
STUN_CLIENT_RFC3489 = bytes.fromhex("000100080115153552d3fb753b52dc387633567e0003000400000000")
TURNUTILS_RFC5389 = bytes.fromhex("000100002112a4424f772736d432d82fdb8864e0")
AIOICE_TURN_ALLOCATE = bytes.fromhex(
    "000300182112a442000102030405060708090a0b000d000400000258001900041100000080280004f3885aa3")
RTP_WITH_COOKIE_TIMESTAMP = bytes.fromhex("806f00072112a442deadbeef") + bytes(80)


def _tg(run_at: int, run: int = 12, size: int = 40) -> bytes:
    data = bytearray(b"\x11" * size)
    data[run_at:run_at + run] = b"\xff" * run
    return bytes(data)


# rule: (port, source port or 0, matching packets, near misses)
CASES: dict[str, tuple[int, int, list[bytes], list[bytes]]] = {
    "sig-stun-ndpi": (42021, 0, [STUN_CLIENT_RFC3489, TURNUTILS_RFC5389, AIOICE_TURN_ALLOCATE],
                      [RTP_WITH_COOKIE_TIMESTAMP,
                       struct.pack("!HHI", 0x0001, 4, COOKIE) + bytes(12),  # length 4, has 0
                       struct.pack("!HHI", 0x4001, 0, COOKIE) + bytes(12),  # a top bit set
                       struct.pack("!HH", 0x0005, 0) + bytes(16)]),  # 0x0005: not classic
    "sig-telegram-ndpi": (597, 0, [_tg(16), _tg(0)],
                          [_tg(16, run=11), _tg(16, run=13), _tg(16)[:39],
                           b"\xff" + _tg(16)[1:]]),
    "sig-telegram-ndpi-sport": (42022, 550, [_tg(16)], []),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_ndpi_classifier_matches_real_packets_not_near_misses(lab: Lab, rule: str) -> None:
    if lab.registry.state.policy != "calib-ndpi-signatures":
        lab.apply_policy(calibration_policy("calib-ndpi-signatures", lab))
    port, source_port, hits, misses = CASES[rule]
    counter = f"{rule}: classify"
    for index, packet in enumerate(hits):
        before = packets_counted(lab, counter)
        udp_packets(lab.network, "caller", "relay", port, [packet], source_port=source_port)
        assert packets_counted(lab, counter) == before + 1, f"{rule}: match {index} missed"
    for index, packet in enumerate(misses):
        before = packets_counted(lab, counter)
        udp_packets(lab.network, "caller", "relay", port, [packet], source_port=source_port)
        assert packets_counted(lab, counter) == before, f"{rule}: near miss {index} classified"


def test_a_telegram_port_on_neither_side_is_not_telegram(lab: Lab) -> None:
    if lab.registry.state.policy != "calib-ndpi-signatures":
        lab.apply_policy(calibration_policy("calib-ndpi-signatures", lab))
    counter = "sig-telegram-ndpi-sport: classify"
    before = packets_counted(lab, counter)
    udp_packets(lab.network, "caller", "relay", 42022, [_tg(16)], source_port=601)
    assert packets_counted(lab, counter) == before
