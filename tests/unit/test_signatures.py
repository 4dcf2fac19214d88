"""Each classifier's reference matches a packet built to the published format
and refuses near misses one byte off; the nft expression is rendered from the
same data (golden checks here; the kernel itself is checked by a root test)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.censor.signatures import classifier, matches, nft_alternatives
from harness.spec.policy import MAX_UDP_PAYLOAD, ByteMatch, Signature

TXID = bytes(range(12))


def stun(msg_type: int, attrs: bytes = b"", cookie: int = 0x2112A442) -> bytes:
    return struct.pack("!HHI", msg_type, len(attrs), cookie) + TXID + attrs


def attribute(kind: int, value: bytes) -> bytes:
    padded = value + b"\0" * (-len(value) % 4)
    return struct.pack("!HH", kind, len(value)) + padded


def telegram_hello(fill: bytes = b"\xff" * 12 + b"\xfe" + b"\xff" * 3) -> bytes:
    return bytes(range(100, 116)) + fill + struct.pack("!Q", 1234567)


def rtp(first: int = 0x80, payload_type: int = 96, marker: bool = False) -> bytes:
    second = payload_type | (0x80 if marker else 0)
    return bytes([first, second]) + struct.pack("!HII", 7, 160, 0xDEADBEEF) + b"\x11" * 80


def dtls_server_hello(groups_at_0x5a: bytes = bytes.fromhex("1d00170018"),
                      version: bytes = b"\xfe\xfd") -> bytes:
    body = bytearray(b"\x02" + bytes(120))
    record = bytearray(b"\x16" + version + bytes(10)) + body
    record[0x5A:0x5A + len(groups_at_0x5a)] = groups_at_0x5a
    return bytes(record)


def quic_initial(size: int = 1200, version: bytes = b"\0\0\0\1", first: int = 0xC3) -> bytes:
    return bytes([first]) + version + bytes(size - 5)


def client_hello(name: str) -> bytes:
    host = name.encode()
    sni = struct.pack("!HBH", len(host) + 3, 0, len(host)) + host
    extensions = struct.pack("!HH", 0, len(sni)) + sni
    hello = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
             + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(hello).to_bytes(3, "big") + hello
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def sig(kind: str, **fields: object) -> Signature:
    return Signature(kind=kind, **fields)  # type: ignore[arg-type]


CASES = [  # signature, l4, dport, matching payload, near misses (one byte or one field off)
    (sig("stun-cookie"), "udp", 3478, stun(0x0001),
     [stun(0x0001, cookie=0x2112A443), stun(0x0001)[:7]]),
    (sig("whatsapp-stun"), "udp", 3478, stun(0x0801),
     [stun(0x0803), stun(0x0801, cookie=0x2112A441), stun(0x0001)]),
    (sig("whatsapp-stun"), "udp", 3478, stun(0x0003, attribute(0x4007, b"x")),
     [stun(0x0003, attribute(0x4005, b"x")), stun(0x0003, attribute(0x0006, b"x"))]),
    (sig("telegram-hello"), "udp", 597, telegram_hello(),
     [telegram_hello(b"\xff" * 16), telegram_hello()[:-1], telegram_hello() + b"\0",
      telegram_hello(b"\xff" * 11 + b"\xfe\xfe" + b"\xff" * 3)]),
    (sig("rtp", payload_types=[96, 111]), "udp", 40000, rtp(payload_type=96, marker=True),
     [rtp(first=0x40), rtp(payload_type=97), rtp()[:11]]),
    (sig("dtls"), "udp", 40000, dtls_server_hello(),
     [dtls_server_hello(version=b"\xfe\xfc"), b"\x17" + dtls_server_hello()[1:]]),
    (sig("dtls", at=[ByteMatch(offset=0x5A, value="1d00170018")]), "udp", 40000,
     dtls_server_hello(), [dtls_server_hello(bytes.fromhex("1d00170019")),
                           dtls_server_hello()[:0x5E]]),
    (sig("wireguard"), "udp", 51820, b"\x01\0\0\0" + bytes(144),
     [b"\x01\0\0\0" + bytes(143), b"\x03\0\0\0" + bytes(144), b"\x02\0\0\0" + bytes(144)]),
    (sig("wireguard"), "udp", 51820, b"\x02\0\0\0" + bytes(88),
     [b"\x02\0\0\0" + bytes(89), b"\x02\0\0\1" + bytes(88)]),
    (sig("quic-v1-initial"), "udp", 443, quic_initial(),
     [quic_initial(1000), quic_initial(version=b"\0\0\0\2"), quic_initial(first=0x43)]),
    (sig("tls-sni", names=["twitter.com"]), "tcp", 443, client_hello("api.twitter.com"),
     [client_hello("nottwitter.com"), client_hello("twitter.co"),
      client_hello("api.twitter.com")[:-1]]),
    (sig("bytes", at=[ByteMatch(offset=2, value="abcd", mask="fff0")]), "udp", 9,
     b"\0\0\xab\xc7\0", [b"\0\0\xab\xd7\0", b"\0\0\xab"]),
]


@pytest.mark.parametrize(("signature", "l4", "dport", "good", "near_misses"), CASES,
                         ids=[f"{c[0].kind}-{i}" for i, c in enumerate(CASES)])
def test_published_format_matches_and_near_misses_do_not(
        signature: Signature, l4: str, dport: int, good: bytes, near_misses: list[bytes]
) -> None:
    assert matches(signature, good, l4, dport)  # type: ignore[arg-type]
    for near in near_misses:
        assert not matches(signature, near, l4, dport), near.hex()  # type: ignore[arg-type]


def test_quic_needs_destination_port_443() -> None:
    assert not matches(sig("quic-v1-initial"), quic_initial(), "udp", 444)


def test_a_udp_signature_never_matches_tcp() -> None:
    assert not matches(sig("stun-cookie"), stun(0x0001), "tcp", 3478)
    assert not matches(sig("tls-sni", names=["twitter.com"]), client_hello("twitter.com"),
                       "udp", 443)


def test_stun_cookie_renders_as_the_published_offset() -> None:
    (expression,) = nft_alternatives(classifier(sig("stun-cookie")))
    assert expression == "@th,96,32 0x2112a442"


def test_telegram_hello_pins_the_length_and_the_fill() -> None:
    (expression,) = nft_alternatives(classifier(sig("telegram-hello")))
    assert expression == ("udp length 48 @th,192,32 0xffffffff @th,224,32 0xffffffff "
                          "@th,256,32 0xffffffff @th,288,32 0xfeffffff")


def test_whatsapp_dialect_is_two_alternatives() -> None:
    by_type, by_attribute = nft_alternatives(classifier(sig("whatsapp-stun")))
    assert "@th,64,16 0x0800-0x0802" in by_type and "0x2112a442" in by_type
    assert "@th,224,16 { 0x4000-0x4004, 0x4007 }" in by_attribute


def test_rtp_masks_version_and_marker() -> None:
    (expression,) = nft_alternatives(classifier(sig("rtp", payload_types=[111, 96])))
    assert expression == ("udp length >= 20 @th,64,8 & 0xc0 == 0x80 "
                          "@th,72,8 & 0x7f == { 0x60, 0x6f }")


def test_wireguard_and_quic_render() -> None:
    assert nft_alternatives(classifier(sig("wireguard"))) == [
        "udp length 156 @th,64,32 0x01000000", "udp length 100 @th,64,32 0x02000000"]
    (quic,) = nft_alternatives(classifier(sig("quic-v1-initial")))
    assert quic == ("udp length >= 1009 th dport 443 @th,64,8 & 0x80 == 0x80 "
                    "@th,72,32 0x00000001")


def test_tcp_bytes_use_the_inner_header_base() -> None:
    signature = sig("bytes", at=[ByteMatch(offset=0, value="160301")])
    (expression,) = nft_alternatives(classifier(signature, "tcp"))
    assert expression == "@ih,0,24 0x160301"


def test_sni_runs_in_userspace() -> None:
    cls = classifier(sig("tls-sni", names=["twitter.com"]))
    assert not cls.in_kernel and "userspace" in cls.limitation
    assert classifier(sig("stun-cookie")).in_kernel


@given(offset=st.integers(0, MAX_UDP_PAYLOAD - 16), value=st.binary(min_size=1, max_size=16),
       data=st.data())
def test_generic_bytes_match_where_placed_and_nowhere_else(offset: int, value: bytes,
                                                           data: st.DataObject) -> None:
    signature = sig("bytes", at=[ByteMatch(offset=offset, value=value.hex())])
    payload = bytearray(offset + len(value) + data.draw(st.integers(0, 20)))
    payload[offset:offset + len(value)] = value
    assert matches(signature, bytes(payload), "udp", 1)
    flip = data.draw(st.integers(0, len(value) - 1))
    payload[offset + flip] ^= 1 << data.draw(st.integers(0, 7))
    assert not matches(signature, bytes(payload), "udp", 1)
    assert not matches(signature, bytes(payload[:offset + len(value) - 1]), "udp", 1)


@given(value=st.binary(min_size=1, max_size=16), data=st.data())
def test_masked_bits_are_ignored(value: bytes, data: st.DataObject) -> None:
    mask = data.draw(st.binary(min_size=len(value), max_size=len(value)))
    signature = sig("bytes", at=[ByteMatch(offset=0, value=value.hex(), mask=mask.hex())])
    noise = data.draw(st.binary(min_size=len(value), max_size=len(value)))
    payload = bytes(v ^ (n & ~m & 0xFF) for v, n, m in zip(value, noise, mask, strict=True))
    assert matches(signature, payload, "udp", 1)
