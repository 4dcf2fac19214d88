"""The censor's classifiers as data, each with its source and a pure-Python
reference of what it matches.

A kernel classifier is a list of alternative `Pattern`s; a pattern is a
conjunction of fixed-offset field tests on the transport payload plus length
and port conditions. The nft expression and the reference `matches` are both
rendered from that one description, and tests check the reference against
packets built to the published formats (and near misses one byte off), and
the kernel against the reference (a root test). nft reads payload bytes at
fixed offsets only, so what a real DPI finds by walking a structure (a STUN
attribute list, a TLS extension list) is either approximated at a fixed
offset (said so below) or left to the userspace stage (`tls-sni`).

nft semantics the reference copies: a test whose bytes lie past the end of the
packet does not match (the payload expression breaks the rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.spec.policy import Signature

L4 = Literal["udp", "tcp"]
UDP_HEADER_BITS = 64
STUN_COOKIE = 0x2112A442
DTLS_HANDSHAKE = 0x16
DTLS_VERSIONS = (0xFEFD, 0xFEFF)  # DTLS 1.2 and 1.0


@dataclass(frozen=True)
class FieldTest:
    """`width` bytes (1-4) at `offset` into the payload, big-endian, masked,
    must fall in one of `ranges` (inclusive)."""

    offset: int
    width: int
    ranges: tuple[tuple[int, int], ...]
    mask: int | None = None

    def read(self, payload: bytes) -> int | None:
        if self.offset + self.width > len(payload):
            return None
        value = int.from_bytes(payload[self.offset:self.offset + self.width], "big")
        return value & self.mask if self.mask is not None else value

    def holds(self, payload: bytes) -> bool:
        value = self.read(payload)
        return value is not None and any(lo <= value <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class Pattern:
    tests: tuple[FieldTest, ...]
    payload_len: int | None = None  # exact
    min_payload_len: int | None = None
    dport: int | None = None


@dataclass(frozen=True)
class Classifier:
    kind: str
    l4: L4 | None  # None: the rule's protocol
    patterns: tuple[Pattern, ...]  # any of them; empty for a userspace classifier
    source: str
    limitation: str = ""

    @property
    def in_kernel(self) -> bool:
        return bool(self.patterns)


def _equals(offset: int, data: bytes, mask: bytes | None = None) -> tuple[FieldTest, ...]:
    """Tests for `data` at `offset`, in chunks of at most 4 bytes (one nft
    payload load each)."""
    tests = []
    for start in range(0, len(data), 4):
        chunk = data[start:start + 4]
        chunk_mask = mask[start:start + 4] if mask is not None else None
        value = int.from_bytes(chunk, "big")
        m = int.from_bytes(chunk_mask, "big") if chunk_mask is not None else None
        if m is not None and m == (1 << (8 * len(chunk))) - 1:
            m = None
        expected = value & m if m is not None else value
        tests.append(FieldTest(offset + start, len(chunk), ((expected, expected),), m))
    return tuple(tests)


COOKIE = _equals(4, STUN_COOKIE.to_bytes(4, "big"))
TELEGRAM_HELLO_FILL = b"\xff" * 12 + b"\xfe" + b"\xff" * 3

SOURCES = {
    "stun-cookie": "RFC 5389 magic cookie 0x2112A442 at payload byte 4; docs/sources.md S12, S13 "
                   "item 1 (zapret --filter-l7=stun), §2.1",
    "whatsapp-stun": "nDPI stun.c: message types 0x0800-0x0802, attributes 0x4000-0x4004 and "
                     "0x4007 are WHATSAPP_CALL; docs/sources.md S19, S20",
    "telegram-hello": "tgcalls v2 ReflectorPort.cpp: 40-byte hello, 16-byte peer tag, 12xFF, "
                      "FE, 3xFF, u64; docs/sources.md S16, S24, S26",
    "rtp": "RTP version 2 (first byte 0b10xxxxxx), payload type in byte 1; nDPI rtp.c; "
           "docs/sources.md S16, S24, S26",
    "dtls": "DTLS record: content type 0x16, version FEFD/FEFF; optional bytes at offsets "
            "(Snowflake 2021: 1D 00 17 00 18 at 0x5a, pion/dtls#409); docs/sources.md S37",
    "wireguard": "WireGuard handshake initiation 148 B starting 01000000, response 92 B "
                 "starting 02000000; openwrt/packages#30492; docs/sources.md S36",
    "quic-v1-initial": "UDP dport 443, payload >= 1001 B, version 00000001 at bytes 1-4 "
                       "(long header); docs/sources.md S32, S33 (QUIC since 4 Mar 2022)",
    "tls-sni": "TLS ClientHello server_name; IMC'21 Twitter throttling; docs/sources.md S30",
    "bytes": "user-defined: bytes at offsets with an optional mask",
}


def classifier(signature: Signature, rule_l4: L4 | None = None) -> Classifier:
    """The data behind one signature of a policy."""
    kind = signature.kind
    patterns = _patterns(signature)
    limitation = ""
    if kind == "whatsapp-stun":
        limitation = ("nft cannot walk the attribute list: only the first attribute "
                      "(payload offset 20) is checked, where nDPI checks every attribute")
    if kind == "tls-sni":
        limitation = "runs in the userspace NFQUEUE stage: the SNI sits at a variable offset"
    l4: L4 | None = rule_l4 if kind == "bytes" else ("tcp" if kind == "tls-sni" else "udp")
    return Classifier(kind, l4, patterns, SOURCES[kind], limitation)


def _patterns(sig: Signature) -> tuple[Pattern, ...]:
    kind = sig.kind
    if kind == "stun-cookie":
        return (Pattern(COOKIE),)
    if kind == "whatsapp-stun":
        return (Pattern((FieldTest(0, 2, ((0x0800, 0x0802),)), *COOKIE)),
                Pattern((*COOKIE, FieldTest(20, 2, ((0x4000, 0x4004), (0x4007, 0x4007))))))
    if kind == "telegram-hello":
        return (Pattern(_equals(16, TELEGRAM_HELLO_FILL), payload_len=40),)
    if kind == "rtp":
        types = tuple((pt, pt) for pt in sorted(set(sig.payload_types)))
        return (Pattern((FieldTest(0, 1, ((0x80, 0x80),), 0xC0), FieldTest(1, 1, types, 0x7F)),
                        min_payload_len=12),)
    if kind == "dtls":
        header = (FieldTest(0, 1, ((DTLS_HANDSHAKE, DTLS_HANDSHAKE),)),
                  FieldTest(1, 2, tuple((v, v) for v in DTLS_VERSIONS)))
        extra = tuple(t for m in sig.at for t in _equals(m.offset, m.raw, m.raw_mask))
        return (Pattern((*header, *extra), min_payload_len=13),)
    if kind == "wireguard":
        return (Pattern(_equals(0, bytes.fromhex("01000000")), payload_len=148),
                Pattern(_equals(0, bytes.fromhex("02000000")), payload_len=92))
    if kind == "quic-v1-initial":
        return (Pattern((FieldTest(0, 1, ((0x80, 0x80),), 0x80), *_equals(1, b"\0\0\0\1")),
                        min_payload_len=1001, dport=443),)
    if kind == "bytes":
        tests = tuple(t for m in sig.at for t in _equals(m.offset, m.raw, m.raw_mask))
        return (Pattern(tests, payload_len=sig.payload_len),)
    return ()  # tls-sni: userspace


# ---------------------------------------------------------------- nft rendering

def nft_alternatives(cls: Classifier) -> list[str]:
    """One nft expression per pattern: a packet matches the classifier when it
    matches any of them."""
    assert cls.l4 is not None, "bytes signatures take the rule's protocol"
    return [_render_pattern(p, cls.l4) for p in cls.patterns]


def _render_pattern(pattern: Pattern, l4: L4) -> str:
    parts = []
    if pattern.payload_len is not None:
        parts.append(f"udp length {pattern.payload_len + 8}")
    if pattern.min_payload_len is not None and l4 == "udp":
        parts.append(f"udp length >= {pattern.min_payload_len + 8}")
    if pattern.dport is not None:
        parts.append(f"th dport {pattern.dport}")
    parts += [_render_test(t, l4) for t in pattern.tests]
    return " ".join(parts)


def _render_test(test: FieldTest, l4: L4) -> str:
    # UDP: the payload starts 8 bytes after the transport header; TCP: after a
    # header of variable length, which nft's inner-header base (@ih) skips.
    base, start = ("@th", UDP_HEADER_BITS) if l4 == "udp" else ("@ih", 0)
    load = f"{base},{start + 8 * test.offset},{8 * test.width}"
    digits = 2 * test.width
    if test.mask is not None:
        load += f" & {test.mask:#0{digits + 2}x} =="
    values = [f"{lo:#0{digits + 2}x}" if lo == hi else f"{lo:#0{digits + 2}x}-{hi:#0{digits + 2}x}"
              for lo, hi in test.ranges]
    return f"{load} {values[0]}" if len(values) == 1 else f"{load} {{ {', '.join(values)} }}"


# ---------------------------------------------------------------- reference

def matches(signature: Signature, payload: bytes, l4: L4, dport: int,
            rule_l4: L4 | None = None) -> bool:
    """Does a packet with this transport payload match? The reference for the
    kernel (and, for tls-sni, for the userspace stage)."""
    cls = classifier(signature, rule_l4 or l4)
    if cls.l4 != l4:
        return False
    if signature.kind == "tls-sni":
        return _sni_matches(signature, payload)
    return any(_pattern_matches(p, payload, dport) for p in cls.patterns)


def _pattern_matches(pattern: Pattern, payload: bytes, dport: int) -> bool:
    if pattern.payload_len is not None and len(payload) != pattern.payload_len:
        return False
    if pattern.min_payload_len is not None and len(payload) < pattern.min_payload_len:
        return False
    if pattern.dport is not None and dport != pattern.dport:
        return False
    return all(t.holds(payload) for t in pattern.tests)


def _sni_matches(signature: Signature, payload: bytes) -> bool:
    # The stage's own parser: the reference and the stage cannot disagree.
    from harness.censor.stage import NotClientHello, client_hello_sni, name_matches

    try:
        name = client_hello_sni(payload)
    except NotClientHello:
        return False
    if name is None:
        return False
    return any(name_matches(name, n, signature.sni_match) for n in signature.names)
