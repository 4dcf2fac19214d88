"""The userspace stage's TLS ClientHello parser, on genuine ClientHellos made
by Python's ssl module (OpenSSL) and on malformed input."""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.censor.stage import (
    NotClientHello,
    build_classifier,
    client_hello_sni,
    name_matches,
    tcp_payload,
)


def client_hello(server_name: str | None) -> bytes:
    """The first flight OpenSSL sends for a handshake with this SNI."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def ipv4_tcp(payload: bytes, options: bytes = b"") -> bytes:
    """An IPv4/TCP packet carrying `payload` (checksums left zero: the parser
    never looks at them)."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 1, 1, (5 + len(options) // 4) << 4, 0x18,
                      65535, 0, 0) + options
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 6, 0,
                     bytes([100, 64, 1, 2]), bytes([198, 18, 1, 2]))
    return ip + tcp + payload


def test_reads_the_sni_of_a_real_client_hello() -> None:
    assert client_hello_sni(client_hello("abs.twimg.com")) == "abs.twimg.com"


def test_a_client_hello_without_sni_has_none() -> None:
    assert client_hello_sni(client_hello(None)) is None


def test_finds_sni_among_many_extensions_after_a_session_id() -> None:
    hello = bytearray(client_hello("example.org"))
    assert len(hello) > 200  # OpenSSL sends a dozen extensions and a session id
    assert client_hello_sni(bytes(hello)) == "example.org"


@pytest.mark.parametrize("cut", [0, 1, 4, 5, 9, 43, 60])
def test_truncated_before_the_sni_is_not_a_client_hello(cut: int) -> None:
    with pytest.raises(NotClientHello):
        client_hello_sni(client_hello("twitter.com")[:cut])


def test_truncated_after_the_sni_is_still_judged() -> None:
    hello = client_hello("twitter.com")
    end = hello.index(b"twitter.com") + len("twitter.com")
    assert client_hello_sni(hello[:end]) == "twitter.com"
    with pytest.raises(NotClientHello):
        client_hello_sni(hello[:end - 1])


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\nHost: twitter.com\r\n\r\n",
                                  b"\x17\x03\x03\x00\x10" + b"\0" * 16,  # application data
                                  b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"])  # ServerHello
def test_other_protocols_are_not_client_hellos(data: bytes) -> None:
    with pytest.raises(NotClientHello):
        client_hello_sni(data)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        client_hello_sni(data)
    except NotClientHello:
        pass


@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=4))
def test_corrupted_real_hellos_never_crash(position: int, junk: bytes) -> None:
    hello = bytearray(client_hello("twitter.com"))
    position %= len(hello)
    hello[position:position + len(junk)] = junk
    try:
        client_hello_sni(bytes(hello))
    except NotClientHello:
        pass


@pytest.mark.parametrize("name, pattern, mode, expected", [
    ("t.co", "t.co", "exact", True),
    ("x.t.co", "t.co", "exact", False),
    ("x.t.co", "t.co", "suffix", True),
    ("microsoft.com", "t.co", "suffix", False),
    ("microsoft.com", "t.co", "substring", True),   # the IMC'21 over-match
    ("reddit.com", "t.co", "substring", True),      # reddi[t.co]m, as censoredplanet saw
    ("example.org", "t.co", "substring", False),
    ("twitter.com", "TWITTER.com.", "suffix", True),
    ("nottwitter.com", "twitter.com", "suffix", False),
])
def test_match_modes(name: str, pattern: str, mode: str, expected: bool) -> None:
    assert name_matches(name, pattern, mode) is expected  # type: ignore[arg-type]


def test_classifier_reads_the_hello_inside_an_ip_packet_with_tcp_options() -> None:
    classify = build_classifier("tls-sni", [("names", "twitter.com"), ("match", "suffix")])
    options = b"\x01\x01\x08\x0a" + b"\0" * 8  # NOP NOP timestamps, as Linux sends
    assert classify(ipv4_tcp(client_hello("api.twitter.com"), options))
    assert not classify(ipv4_tcp(client_hello("api.twitter.co"), options))
    assert not classify(ipv4_tcp(b""))
    assert not classify(ipv4_tcp(client_hello("api.twitter.com"))[:45])


def test_tcp_payload_ignores_non_tcp_and_broken_headers() -> None:
    packet = ipv4_tcp(b"abc")
    assert tcp_payload(packet) == b"abc"
    udp = bytearray(packet)
    udp[9] = 17
    assert tcp_payload(bytes(udp)) is None
    assert tcp_payload(packet[:30]) is None
    assert tcp_payload(b"\x60" + packet[1:]) is None  # IPv6 version nibble


@pytest.mark.parametrize("kind, params, message", [
    ("dns", [("names", "a")], "unknown classifier"),
    ("tls-sni", [], "at least one host name"),
    ("tls-sni", [("names", "a"), ("match", "regex")], "match must be one of"),
    ("tls-sni", [("names", "a"), ("nmaes", "b")], "unknown parameter"),
])
def test_bad_classifier_parameters_are_named(kind: str, params: list[tuple[str, str]],
                                            message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_classifier(kind, params)
