"""Each classifier's reference matches a packet built to the published format
and refuses near misses one byte off; the nft expression is rendered from the
same data (golden checks here; the kernel itself is checked by a root test).
`stun` and `telegram-ndpi` are also held against transcriptions of nDPI's and
zapret's own code (docs/sources.md S50-S52) and against packets real tools
sent."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.censor.signatures import (
    STUN_CLASSIC_TYPES,
    classifier,
    matches,
    nft_alternatives,
    nft_sets,
    stun_cookie_types,
)
from harness.spec.policy import MAX_UDP_PAYLOAD, ByteMatch, Signature
from harness.wire import stun as wire_stun
from harness.wire import telegram as wire_telegram
from harness.wire import whatsapp as wire_whatsapp

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


def classic_stun(msg_type: int, attrs: bytes = b"", txid: bytes = bytes(range(16))) -> bytes:
    """RFC 3489: type, length, a 16-byte transaction id, no magic cookie."""
    return struct.pack("!HH", msg_type, len(attrs)) + txid + attrs


def tg_ndpi(run_at: int = 16, size: int = 40, run: int = 12) -> bytes:
    """A payload whose first 0xFF byte starts a run of `run` at `run_at`."""
    data = bytearray(b"\x11" * size)
    data[run_at:run_at + run] = b"\xff" * run
    return bytes(data)


CASES = [  # signature, l4, dport, matching payload, near misses (one byte or one field off)
    (sig("stun-cookie"), "udp", 3478, stun(0x0001),
     [stun(0x0001, cookie=0x2112A443), stun(0x0001)[:7]]),
    (sig("stun"), "udp", 3478, stun(0x0001, attribute(0x0006, b"user")),
     [stun(0x0001, attribute(0x0006, b"user"))[:-1],  # length says 8, payload has 7
      stun(0x0001, attribute(0x0006, b"user")) + b"\0\0\0\0",  # 4 bytes too many
      stun(0x4001, attribute(0x0006, b"user")),  # a top bit of the type set
      stun(0x000C, attribute(0x0006, b"user")),  # method 0x00C: past nDPI's 0x00B
      stun(0x0000), stun(0x0001)[:19]]),
    (sig("stun"), "udp", 3478, classic_stun(0x0001, attribute(0x0003, bytes(4))),
     [classic_stun(0x0005, attribute(0x0003, bytes(4))),  # type 5: not classic
      classic_stun(0x0001, attribute(0x0003, bytes(4)))[:-1]]),
    (sig("telegram-ndpi"), "udp", 597, tg_ndpi(16),
     [tg_ndpi(16, run=11), tg_ndpi(16, run=13), tg_ndpi(16, size=39)]),
    (sig("telegram-ndpi"), "udp", 500, tg_ndpi(0), [tg_ndpi(0)[:39]]),
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


# ------------------------------------------------------------------ stun, telegram-ndpi
# Packets real tools sent (captured from the tools in this project's
# environment; the transaction ids are theirs).
STUN_CLIENT_RFC3489 = bytes.fromhex(  # Debian stun-client 0.97 `stun HOST`: test I
    "000100080115153552d3fb753b52dc387633567e0003000400000000")
TURNUTILS_RFC5389 = bytes.fromhex(  # coturn 4.6.1 `turnutils_stunclient HOST`
    "000100002112a4424f772736d432d82fdb8864e0")
AIOICE_TURN_ALLOCATE = bytes.fromhex(  # aioice 0.13 (aiortc's TURN client) with FINGERPRINT
    "000300182112a442000102030405060708090a0b000d000400000258001900041100000080280004f3885aa3")
# An RTP packet (version 2, payload type 111) whose timestamp happens to be
# 0x2112A442: bytes 4-7 hold the cookie, nothing else about it is STUN.
RTP_WITH_COOKIE_TIMESTAMP = bytes.fromhex("806f0007" "2112a442" "deadbeef") + bytes(80)


def ndpi_is_stun(payload: bytes) -> bool:
    """nDPI's is_stun for a UDP payload (docs/sources.md S50), transcribed:
    the checks that decide, without the metadata it also extracts."""
    if len(payload) < 20:
        return False
    msg_type, msg_len, cookie = struct.unpack_from("!HHI", payload)
    if msg_type == 0 or msg_len + 20 != len(payload):
        return False
    if (msg_type & 0x3EEF) > 0x000B and msg_type not in (0x0800, 0x0801, 0x0802):
        return False
    if cookie != 0x2112A442:
        if msg_type not in STUN_CLASSIC_TYPES:
            return False
        offset = 20
        while offset + 4 < len(payload):
            length = struct.unpack_from("!H", payload, offset + 2)[0]
            offset += 4 + ((length + 3) & ~3)
        if offset != len(payload):
            return False
    return True


def zapret_header_ok(payload: bytes) -> bool:
    """What zapret's IsStunMessage (S52) adds to nDPI's header checks: the
    type's two top bits zero, the length a multiple of 4."""
    return payload[0] & 0xC0 == 0 and payload[3] & 3 == 0


def ndpi_is_telegram(payload: bytes, sport: int, dport: int) -> bool:
    """nDPI's Telegram rule for a UDP packet (S51), transcribed."""
    if len(payload) < 40 or not (500 <= sport <= 600 or 500 <= dport <= 600):
        return False
    first = payload.find(b"\xff")
    if first < 0:
        return False
    run = len(payload[first:]) - len(payload[first:].lstrip(b"\xff"))
    return run == 12


def test_real_stun_clients_and_turn_are_stun_and_rtp_is_not() -> None:
    for packet in (STUN_CLIENT_RFC3489, TURNUTILS_RFC5389, AIOICE_TURN_ALLOCATE):
        assert ndpi_is_stun(packet), packet.hex()
        assert matches(sig("stun"), packet, "udp", 3478), packet.hex()
    assert not ndpi_is_stun(RTP_WITH_COOKIE_TIMESTAMP)
    assert not matches(sig("stun"), RTP_WITH_COOKIE_TIMESTAMP, "udp", 40000)


def test_the_cookie_alone_misses_classic_stun_and_takes_rtp_for_stun() -> None:
    """Why `stun` replaces `stun-cookie` in dpi-stun-drop: the cookie test let
    the RFC 3489 client through and would drop an RTP packet."""
    assert not matches(sig("stun-cookie"), STUN_CLIENT_RFC3489, "udp", 3478)
    assert matches(sig("stun-cookie"), RTP_WITH_COOKIE_TIMESTAMP, "udp", 40000)


def test_the_apps_stun_is_stun_and_their_other_packets_are_not() -> None:
    for message in (wire_whatsapp.allocate("call", 1), wire_whatsapp.ping(5),
                    wire_whatsapp.pong(wire_whatsapp.ping(5)),
                    wire_whatsapp.allocate_error(wire_whatsapp.allocate("c", 1), "full")):
        assert matches(sig("stun"), message.encode(), "udp", 3478)
    request = wire_stun.binding_request(b"\x07" * 12)
    assert matches(sig("stun"), request, "udp", 596)
    assert matches(sig("stun"), wire_stun.binding_success(b"\x07" * 12, ("198.18.0.2", 4000)),
                   "udp", 40000)
    hello = wire_telegram.hello(bytes(range(16)), 7)
    assert not matches(sig("stun"), hello, "udp", 597)
    assert matches(sig("telegram-ndpi"), hello, "udp", 597)
    assert not matches(sig("telegram-ndpi"), hello, "udp", 1400), "nDPI's range ends at 600"


STUN_TYPES = st.one_of(st.sampled_from(STUN_CLASSIC_TYPES), st.sampled_from(stun_cookie_types()),
                       st.integers(0, 0xFFFF))


@st.composite
def well_formed_stun(draw: st.DrawFn) -> bytes:
    # Values of 1 byte or more: see test_classic_attribute_walk_is_the_known_limit.
    attrs = b"".join(attribute(draw(st.integers(0, 0xFFFF)),
                               draw(st.binary(min_size=1, max_size=13)))
                     for _ in range(draw(st.integers(0, 4))))
    msg_type = draw(STUN_TYPES)
    if draw(st.booleans()):
        return stun(msg_type, attrs, cookie=draw(st.sampled_from([0x2112A442, 0x2112A443])))
    return classic_stun(msg_type, attrs, draw(st.binary(min_size=16, max_size=16)))


@given(packet=well_formed_stun())
def test_stun_agrees_with_ndpi_and_zapret_on_well_formed_messages(packet: bytes) -> None:
    """Attributes padded as the RFCs say: nDPI's walk always ends at the
    payload's end, so nft's fixed-offset version decides alike."""
    assert matches(sig("stun"), packet, "udp", 3478) == (
        ndpi_is_stun(packet) and zapret_header_ok(packet))


@given(packet=st.one_of(well_formed_stun().map(lambda p: p[:-1]),
                        well_formed_stun().map(lambda p: p + b"\0\0\0\0"), st.binary(max_size=64)))
def test_stun_never_matches_what_ndpi_rejects_by_its_header(packet: bytes) -> None:
    if matches(sig("stun"), packet, "udp", 3478):
        msg_len = struct.unpack_from("!H", packet, 2)[0]
        assert msg_len + 20 == len(packet) and zapret_header_ok(packet)


def test_classic_attribute_walk_is_the_known_limit() -> None:
    """nDPI walks a cookie-less message's attributes; nft cannot. A classic
    header whose one attribute claims more than the message holds: nDPI says
    no, `stun` says yes (its limitation says so)."""
    packet = classic_stun(0x0001, struct.pack("!HH", 0x0003, 100) + bytes(4))
    assert not ndpi_is_stun(packet)
    assert matches(sig("stun"), packet, "udp", 3478)
    assert "walk" in classifier(sig("stun")).limitation
    # nDPI's walk also stops while 4 bytes are left (`off + 4 < length`), so it
    # refuses a well-formed classic message that ends in an empty attribute.
    empty_last = classic_stun(0x0001, attribute(0x0003, bytes(4)) + attribute(0x0008, b""))
    assert not ndpi_is_stun(empty_last)
    assert matches(sig("stun"), empty_last, "udp", 3478)


@given(start=st.integers(0, 28), run=st.integers(10, 14), size=st.integers(40, 80),
       sport=st.sampled_from([499, 500, 550, 600, 601, 40000]),
       dport=st.sampled_from([499, 500, 597, 600, 601, 1400]), data=st.data())
def test_telegram_ndpi_agrees_with_ndpi_where_the_run_starts_early(
        start: int, run: int, size: int, sport: int, dport: int, data: st.DataObject) -> None:
    filler = st.binary(min_size=size, max_size=size).map(lambda b: b.replace(b"\xff", b"\x00"))
    payload = bytearray(data.draw(filler))
    payload[start:start + run] = b"\xff" * min(run, size - start)
    expected = ndpi_is_telegram(bytes(payload), sport, dport)
    got = matches(sig("telegram-ndpi"), bytes(payload), "udp", dport, sport=sport)
    if start <= 16:
        assert got == expected
    else:  # nft reads fixed offsets: runs from byte 17 on are the known limit
        assert not got


def test_telegram_ndpi_needs_no_ff_before_the_run() -> None:
    payload = bytearray(tg_ndpi(16))
    payload[3] = 0xFF  # now the first 0xFF starts a run of 1
    assert not ndpi_is_telegram(bytes(payload), 40000, 597)
    assert not matches(sig("telegram-ndpi"), bytes(payload), "udp", 597)
    assert matches(sig("telegram-ndpi"), tg_ndpi(16), "udp", 40000, sport=600)


def test_stun_renders_as_two_set_lookups() -> None:
    (expression,) = nft_alternatives(classifier(sig("stun")))
    assert expression == ("udp length . @th,80,16 @sig_stun_length "
                          "@th,64,16 . @th,96,32 @sig_stun_type")
    lengths, types = nft_sets(classifier(sig("stun")))
    assert lengths.startswith("set sig_stun_length {\n\ttypeof udp length . @th,80,16\n")
    assert "28 . 0x0000," in lengths and "1480 . 0x05ac }" in lengths
    assert "32 . 0x0004" in lengths and "30 . 0x0002" not in lengths
    assert "flags interval" in types and "flags interval" not in lengths
    assert "0x0001 . 0x00000000-0x2112a441, 0x0001 . 0x2112a442" in types
    assert "0x0005 . 0x2112a442" in types and "0x0005 . 0x00000000" not in types
    assert len(stun_cookie_types()) == 50 and 0x0800 in stun_cookie_types()


def test_telegram_ndpi_renders_one_rule_per_start() -> None:
    expressions = nft_alternatives(classifier(sig("telegram-ndpi")))
    assert len(expressions) == 17
    assert expressions[16].startswith("udp length >= 48 th sport . th dport "
                                      "@sig_telegram_ndpi_ports @th,192,32 0xffffffff")
    assert expressions[16].count("0x00-0xfe") == 17
    (ports,) = nft_sets(classifier(sig("telegram-ndpi")))
    assert "500-600 . 0-65535, 0-499 . 500-600, 601-65535 . 500-600" in ports
