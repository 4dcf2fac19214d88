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

Where one field must agree with another (a STUN length with the UDP length),
or a field with a list of values that depends on a second field (a STUN type
with its magic cookie), a pattern looks the concatenated fields up in a named
set (`SetTest`), declared once in the policy's table: nft cannot compare two
fields or do arithmetic, but it can look up a concatenation.

nft semantics the reference copies: a test whose bytes lie past the end of the
packet does not match (the payload expression breaks the rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.spec.policy import MAX_UDP_PAYLOAD, Signature

L4 = Literal["udp", "tcp"]
UDP_HEADER_BITS = 64
UDP_HEADER_BYTES = 8
STUN_COOKIE = 0x2112A442
STUN_HEADER_BYTES = 20
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


HeaderField = Literal["udp length", "th sport", "th dport"]


@dataclass(frozen=True)
class Key:
    """One part of a set lookup's key: `width` bytes (1-4) at `offset` into
    the payload, big-endian, or a field of the transport header (`header`)."""

    offset: int = 0
    width: int = 2
    header: HeaderField | None = None

    def read(self, payload: bytes, sport: int, dport: int) -> int | None:
        if self.header == "udp length":
            return len(payload) + UDP_HEADER_BYTES
        if self.header == "th sport":
            return sport
        if self.header == "th dport":
            return dport
        if self.offset + self.width > len(payload):
            return None
        return int.from_bytes(payload[self.offset:self.offset + self.width], "big")

    def render(self, l4: L4) -> str:
        return self.header if self.header is not None else _payload_load(self.offset,
                                                                         self.width, l4)

    def render_value(self, value: int) -> str:
        return str(value) if self.header is not None else f"{value:#0{2 * self.width + 2}x}"


@dataclass(frozen=True)
class SetTest:
    """The concatenation of `keys` must fall in one of `elements`: one
    inclusive range per key. In nft: a lookup in the named set `name`."""

    name: str
    keys: tuple[Key, ...]
    elements: tuple[tuple[tuple[int, int], ...], ...]

    def holds(self, payload: bytes, sport: int, dport: int) -> bool:
        read = [k.read(payload, sport, dport) for k in self.keys]
        values = [v for v in read if v is not None]
        if len(values) != len(read):
            return False  # a key past the packet's end: nft breaks the rule
        return any(all(lo <= v <= hi for v, (lo, hi) in zip(values, element, strict=True))
                   for element in self.elements)

    def lookup(self, l4: L4) -> str:
        return f"{self._key(l4)} @{self.name}"

    def declaration(self, l4: L4) -> str:
        """The set, for the policy's table (`typeof` the lookup's key)."""
        interval = any(lo != hi for element in self.elements for lo, hi in element)
        rendered = [" . ".join(self._value(k, lo, hi) for k, (lo, hi)
                               in zip(self.keys, element, strict=True))
                    for element in self.elements]
        rows = [", ".join(rendered[i:i + 6]) for i in range(0, len(rendered), 6)]
        lines = [f"set {self.name} {{", f"\ttypeof {self._key(l4)}"]
        if interval:
            lines.append("\tflags interval")
        lines.append("\telements = { " + ",\n\t\t".join(rows) + " }")
        return "\n".join([*lines, "}"])

    def _key(self, l4: L4) -> str:
        return " . ".join(k.render(l4) for k in self.keys)

    @staticmethod
    def _value(key: Key, lo: int, hi: int) -> str:
        return key.render_value(lo) if lo == hi else \
            f"{key.render_value(lo)}-{key.render_value(hi)}"


@dataclass(frozen=True)
class Pattern:
    tests: tuple[FieldTest, ...]
    payload_len: int | None = None  # exact
    min_payload_len: int | None = None
    dport: int | None = None
    sets: tuple[SetTest, ...] = ()


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

# nDPI's is_stun (S50): with the magic cookie, any type whose bits under the
# mask 0x3EEF are at most 0x000B (the STUN methods up to 0x00B, in any class),
# or WhatsApp's 0x0800-0x0802; without it (classic RFC 3489), these 16 types.
# zapret's IsStunMessage (S52) adds: the type's two top bits are zero.
STUN_CLASSIC_TYPES = (0x0001, 0x0101, 0x0111, 0x0002, 0x0102, 0x0112, 0x0003, 0x0103, 0x0113,
                      0x0004, 0x0104, 0x0114, 0x0115, 0x0006, 0x0106, 0x0116)
STUN_WHATSAPP_TYPES = (0x0800, 0x0801, 0x0802)
STUN_TYPE_MASK = 0x3EEF
STUN_TYPE_MASKED_MAX = 0x000B
STUN_LENGTH_MULTIPLE = 4  # every attribute is padded to 4 bytes (RFC 5389 §15)
TELEGRAM_NDPI_PORTS = (500, 600)
TELEGRAM_NDPI_MIN_PAYLOAD = 40
TELEGRAM_NDPI_RUN = 12
TELEGRAM_NDPI_MAX_START = 16  # a tgcalls hello's run starts after its 16-byte tag


def stun_cookie_types() -> tuple[int, ...]:
    """The message types `stun` accepts with the magic cookie: nDPI's masked
    test (the bits 0x0110 outside the mask are free), the WhatsApp types, and
    zapret's top two bits zero (0xC000 lies outside nDPI's mask)."""
    free_bits = (0x0000, 0x0010, 0x0100, 0x0110)
    masked = {base | bits for base in range(STUN_TYPE_MASKED_MAX + 1) for bits in free_bits}
    return tuple(sorted((masked - {0}) | set(STUN_WHATSAPP_TYPES)))


def _stun_sets() -> tuple[SetTest, SetTest]:
    cookie = (STUN_COOKIE, STUN_COOKIE)
    types: list[tuple[tuple[int, int], ...]] = [((t, t), cookie) for t in stun_cookie_types()]
    for t in STUN_CLASSIC_TYPES:  # any other value where the cookie would be
        types += [((t, t), (0, STUN_COOKIE - 1)), ((t, t), (STUN_COOKIE + 1, 0xFFFFFFFF))]
    lengths = tuple(((n + STUN_HEADER_BYTES + UDP_HEADER_BYTES,) * 2, (n, n))
                    for n in range(0, MAX_UDP_PAYLOAD - STUN_HEADER_BYTES + 1,
                                   STUN_LENGTH_MULTIPLE))
    return (SetTest("sig_stun_length", (Key(header="udp length"), Key(offset=2, width=2)),
                    lengths),
            SetTest("sig_stun_type", (Key(offset=0, width=2), Key(offset=4, width=4)),
                    tuple(sorted(types))))


STUN_LENGTH_SET, STUN_TYPE_SET = _stun_sets()
TELEGRAM_NDPI_PORT_SET = SetTest(
    "sig_telegram_ndpi_ports", (Key(header="th sport"), Key(header="th dport")),
    ((TELEGRAM_NDPI_PORTS, (0, 65535)), ((0, TELEGRAM_NDPI_PORTS[0] - 1), TELEGRAM_NDPI_PORTS),
     ((TELEGRAM_NDPI_PORTS[1] + 1, 65535), TELEGRAM_NDPI_PORTS)))
NOT_FF = ((0x00, 0xFE),)

SOURCES = {
    "stun-cookie": "RFC 5389 magic cookie 0x2112A442 at payload byte 4; docs/sources.md S12, S13 "
                   "item 1 (zapret --filter-l7=stun), §2.1",
    "stun": "nDPI is_stun (stun.c): type not 0 and (type & 0x3EEF) <= 0x000B or 0x0800-0x0802, "
            "length + 20 == payload length; without the magic cookie (classic RFC 3489) one of "
            "16 types; zapret IsStunMessage: type's top two bits zero, length a multiple of 4; "
            "docs/sources.md S50, S52, S56",
    "whatsapp-stun": "nDPI stun.c: message types 0x0800-0x0802, attributes 0x4000-0x4004 and "
                     "0x4007 are WHATSAPP_CALL; docs/sources.md S19, S20",
    "telegram-hello": "tgcalls v2 ReflectorPort.cpp: 40-byte hello, 16-byte peer tag, 12xFF, "
                      "FE, 3xFF, u64; docs/sources.md S16, S24, S26",
    "telegram-ndpi": "nDPI telegram.c: UDP port 500-600 on either side, payload >= 40 bytes, the "
                     "first 0xFF byte starts a run of exactly 12; docs/sources.md S51",
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

LIMITATIONS = {
    "whatsapp-stun": "nft cannot walk the attribute list: only the first attribute (payload "
                     "offset 20) is checked, where nDPI checks every attribute",
    "stun": ("nft cannot walk a classic (cookie-less) message's attributes, which nDPI wants "
             "to end exactly at the payload's end: a classic message is recognised by its type "
             "and a length that agrees with the UDP length and is a multiple of 4, which such "
             "a walk implies (nDPI's walk also stops 4 bytes short, so it refuses a classic "
             "message that ends in an empty attribute; `stun` takes it). Stricter than nDPI "
             "where zapret is (the type's top two bits zero, the length a multiple of 4 with "
             "the cookie too: every RFC 5389 message has both). Not modelled: nDPI's RFC 4571 "
             "framing over TCP, Microsoft's multiplexed TURN (0xFF10) and the legacy 'RSP/' "
             "text; nDPI reads the UDP payload's real length, nft the UDP header's length "
             "field"),
    "telegram-ndpi": "nft reads fixed offsets: the run of 12 0xFF is looked for starting at "
                     f"bytes 0-{TELEGRAM_NDPI_MAX_START} only (a tgcalls hello's starts at 16), "
                     "where nDPI finds the first 0xFF anywhere; nDPI judges a flow's first "
                     "packet only (the first with any 0xFF), here each of the first packets; "
                     "nDPI's Telegram over TCP is by address and not modelled",
    "tls-sni": "runs in the userspace NFQUEUE stage: the SNI sits at a variable offset",
}


def classifier(signature: Signature, rule_l4: L4 | None = None) -> Classifier:
    """The data behind one signature of a policy."""
    kind = signature.kind
    patterns = _patterns(signature)
    l4: L4 | None = rule_l4 if kind == "bytes" else ("tcp" if kind == "tls-sni" else "udp")
    return Classifier(kind, l4, patterns, SOURCES[kind], LIMITATIONS.get(kind, ""))


def _patterns(sig: Signature) -> tuple[Pattern, ...]:
    kind = sig.kind
    if kind == "stun-cookie":
        return (Pattern(COOKIE),)
    if kind == "stun":
        return (Pattern((), sets=(STUN_LENGTH_SET, STUN_TYPE_SET)),)
    if kind == "whatsapp-stun":
        return (Pattern((FieldTest(0, 2, ((0x0800, 0x0802),)), *COOKIE)),
                Pattern((*COOKIE, FieldTest(20, 2, ((0x4000, 0x4004), (0x4007, 0x4007))))))
    if kind == "telegram-hello":
        return (Pattern(_equals(16, TELEGRAM_HELLO_FILL), payload_len=40),)
    if kind == "telegram-ndpi":
        return tuple(_telegram_ndpi_run_at(start) for start in range(TELEGRAM_NDPI_MAX_START + 1))
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


def _telegram_ndpi_run_at(start: int) -> Pattern:
    """nDPI's rule with the first 0xFF at `start`: no 0xFF before it, 12 from
    it, then a byte that is not 0xFF (the payload is at least 40 bytes, so
    that byte is always there)."""
    before = tuple(FieldTest(i, 1, NOT_FF) for i in range(start))
    after = FieldTest(start + TELEGRAM_NDPI_RUN, 1, NOT_FF)
    return Pattern((*_equals(start, b"\xff" * TELEGRAM_NDPI_RUN), after, *before),
                   min_payload_len=TELEGRAM_NDPI_MIN_PAYLOAD, sets=(TELEGRAM_NDPI_PORT_SET,))


# ---------------------------------------------------------------- nft rendering

def nft_alternatives(cls: Classifier) -> list[str]:
    """One nft expression per pattern: a packet matches the classifier when it
    matches any of them."""
    assert cls.l4 is not None, "bytes signatures take the rule's protocol"
    return [_render_pattern(p, cls.l4) for p in cls.patterns]


def nft_sets(cls: Classifier) -> list[str]:
    """The named sets the classifier's expressions look up, each declared
    once (the same kind in several rules shares them)."""
    assert cls.l4 is not None, "bytes signatures take the rule's protocol"
    declared: dict[str, str] = {}
    for pattern in cls.patterns:
        for test in pattern.sets:
            declared.setdefault(test.name, test.declaration(cls.l4))
    return list(declared.values())


def _render_pattern(pattern: Pattern, l4: L4) -> str:
    parts = []
    if pattern.payload_len is not None:
        parts.append(f"udp length {pattern.payload_len + 8}")
    if pattern.min_payload_len is not None and l4 == "udp":
        parts.append(f"udp length >= {pattern.min_payload_len + 8}")
    if pattern.dport is not None:
        parts.append(f"th dport {pattern.dport}")
    parts += [t.lookup(l4) for t in pattern.sets]
    parts += [_render_test(t, l4) for t in pattern.tests]
    return " ".join(parts)


def _payload_load(offset: int, width: int, l4: L4) -> str:
    # UDP: the payload starts 8 bytes after the transport header; TCP: after a
    # header of variable length, which nft's inner-header base (@ih) skips.
    base, start = ("@th", UDP_HEADER_BITS) if l4 == "udp" else ("@ih", 0)
    return f"{base},{start + 8 * offset},{8 * width}"


def _render_test(test: FieldTest, l4: L4) -> str:
    load = _payload_load(test.offset, test.width, l4)
    digits = 2 * test.width
    if test.mask is not None:
        load += f" & {test.mask:#0{digits + 2}x} =="
    values = [f"{lo:#0{digits + 2}x}" if lo == hi else f"{lo:#0{digits + 2}x}-{hi:#0{digits + 2}x}"
              for lo, hi in test.ranges]
    return f"{load} {values[0]}" if len(values) == 1 else f"{load} {{ {', '.join(values)} }}"


# ---------------------------------------------------------------- reference

def matches(signature: Signature, payload: bytes, l4: L4, dport: int,
            rule_l4: L4 | None = None, *, sport: int = 0) -> bool:
    """Does a packet with this transport payload match? The reference for the
    kernel (and, for tls-sni, for the userspace stage)."""
    cls = classifier(signature, rule_l4 or l4)
    if cls.l4 != l4:
        return False
    if signature.kind == "tls-sni":
        return _sni_matches(signature, payload)
    return any(_pattern_matches(p, payload, sport, dport) for p in cls.patterns)


def _pattern_matches(pattern: Pattern, payload: bytes, sport: int, dport: int) -> bool:
    if pattern.payload_len is not None and len(payload) != pattern.payload_len:
        return False
    if pattern.min_payload_len is not None and len(payload) < pattern.min_payload_len:
        return False
    if pattern.dport is not None and dport != pattern.dport:
        return False
    return (all(t.holds(payload, sport, dport) for t in pattern.sets)
            and all(t.holds(payload) for t in pattern.tests))


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
