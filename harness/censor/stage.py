"""The censor's userspace classification stage: what nftables cannot express.

nft marks the first packets of candidate flows, iptables queues them here
(NFQUEUE), and this process looks inside. On a match it gives the packet the
rule's verdict mark; it accepts every packet either way, because the kernel
enforces (nft, at filter priority, acts on the mark). A crash or a stalled
stage therefore never blocks traffic by itself when the queue is bypassable.

    python -m harness.censor.stage --queue 100 --classifier tls-sni \
        --param names=twitter.com,t.co --param match=substring \
        --candidate-mark 0x100 --verdict-mark 0x200

Classifiers:
  tls-sni   the server_name of a TLS ClientHello carried by TCP. `names` is a
            comma-separated list; `match` says how a name is compared:
            exact, suffix (the name or any subdomain of it: `t.co` matches
            `t.co` and `x.t.co`, not `microsoft.com`), or substring (any name
            containing it: `t.co` also matches `microsoft.com`, the over-broad
            rule the IMC'21 Twitter-throttling study observed, docs/sources.md S30).
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from harness.netfilter.nfqueue import NF_ACCEPT, NfQueue

MatchMode = Literal["exact", "suffix", "substring"]
MATCH_MODES: tuple[MatchMode, ...] = ("exact", "suffix", "substring")
TLS_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 0x01
EXTENSION_SERVER_NAME = 0x0000
SERVER_NAME_HOST = 0x00
IPPROTO_TCP = 6


class NotClientHello(ValueError):
    """The bytes are not (a complete enough prefix of) a TLS ClientHello."""


class _Reader:
    """Bounds-checked reading of big-endian fields; running past the end is
    a NotClientHello, never an IndexError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int) -> bytes:
        if self.offset + count > len(self.data):
            raise NotClientHello(f"truncated: needs {count} bytes at offset {self.offset}, "
                                 f"has {len(self.data) - self.offset}")
        chunk = self.data[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, length_width: int) -> bytes:
        return self.take(self.number(length_width))

    def prefix(self, length_width: int) -> bytes:
        """What is present of a length-prefixed vector: a ClientHello larger
        than one TCP segment still shows its first extensions."""
        length = self.number(length_width)
        chunk = self.data[self.offset:self.offset + length]
        self.offset += length
        return chunk


def client_hello_sni(tls: bytes) -> str | None:
    """The host name a ClientHello asks for, or None if it carries no SNI.

    `tls` starts at the TLS record header. Only the bytes given are read: a
    ClientHello cut short (one TCP segment of a larger hello) is still judged
    if its server_name extension is complete, and is NotClientHello otherwise
    (no reassembly across segments: [S] whether the real DPI box reassembles
    is not established). Raises NotClientHello for anything not a ClientHello."""
    record = _Reader(tls)
    if record.number(1) != TLS_HANDSHAKE:
        raise NotClientHello("not a TLS handshake record")
    if record.number(1) != 0x03:
        raise NotClientHello("not a TLS/SSL 3.x record version")
    record.take(1)
    handshake = _Reader(record.prefix(2))
    if handshake.number(1) != HANDSHAKE_CLIENT_HELLO:
        raise NotClientHello("handshake is not a ClientHello")
    hello = _Reader(handshake.prefix(3))
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # legacy_session_id
    hello.vector(2)  # cipher_suites
    hello.vector(1)  # legacy_compression_methods
    if hello.offset == len(hello.data):
        return None  # no extensions at all
    return _sni_from_extensions(_Reader(hello.prefix(2)))


def _u16(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("!H", data, offset)[0])


def _sni_from_extensions(extensions: _Reader) -> str | None:
    while extensions.offset < len(extensions.data):
        kind = extensions.number(2)
        body = extensions.vector(2)
        if kind == EXTENSION_SERVER_NAME:
            return _host_name(_Reader(body))
    return None


def _host_name(extension: _Reader) -> str | None:
    names = _Reader(extension.vector(2))
    while names.offset < len(names.data):
        name_type = names.number(1)
        name = names.vector(2)
        if name_type == SERVER_NAME_HOST:
            try:
                return name.decode("ascii").lower().rstrip(".")
            except UnicodeDecodeError:
                raise NotClientHello("server_name is not ASCII") from None
    return None


def tcp_payload(ip_packet: bytes) -> bytes | None:
    """The TCP payload of an IPv4 packet, or None for anything else."""
    if len(ip_packet) < 20 or ip_packet[0] >> 4 != 4 or ip_packet[9] != IPPROTO_TCP:
        return None
    ip_header = (ip_packet[0] & 0x0F) * 4
    total = min(len(ip_packet), _u16(ip_packet, 2))
    if ip_header < 20 or total < ip_header + 20:
        return None
    tcp_header = (ip_packet[ip_header + 12] >> 4) * 4
    if tcp_header < 20 or ip_header + tcp_header > total:
        return None
    return ip_packet[ip_header + tcp_header:total]


def name_matches(name: str, pattern: str, mode: MatchMode) -> bool:
    name, pattern = name.lower(), pattern.lower().rstrip(".")
    if mode == "exact":
        return name == pattern
    if mode == "suffix":
        return name == pattern or name.endswith("." + pattern)
    return pattern in name


@dataclass(frozen=True)
class SniClassifier:
    names: tuple[str, ...]
    mode: MatchMode

    def __call__(self, ip_packet: bytes) -> bool:
        payload = tcp_payload(ip_packet)
        if not payload:
            return False
        try:
            sni = client_hello_sni(payload)
        except NotClientHello:
            return False
        return sni is not None and any(name_matches(sni, p, self.mode) for p in self.names)


Classifier = Callable[[bytes], bool]


def build_classifier(kind: str, params: Sequence[tuple[str, str]]) -> Classifier:
    """A classifier from its name and (key, value) parameters; bad ones are a
    ValueError naming the parameter."""
    given = dict(params)
    if kind != "tls-sni":
        raise ValueError(f"unknown classifier {kind!r}; known: tls-sni")
    unknown = sorted(set(given) - {"names", "match"})
    if unknown:
        raise ValueError(f"tls-sni: unknown parameter(s) {', '.join(unknown)}; "
                         "known: names, match")
    names = tuple(n.strip() for n in given.get("names", "").split(",") if n.strip())
    if not names:
        raise ValueError("tls-sni: parameter names must list at least one host name")
    mode = given.get("match", "suffix")
    if mode not in MATCH_MODES:
        raise ValueError(f"tls-sni: match must be one of {', '.join(MATCH_MODES)}, not {mode!r}")
    return SniClassifier(names, mode)


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, value


def _int(text: str) -> int:
    return int(text, 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--param", type=_param, action="append", default=[])
    parser.add_argument("--candidate-mark", type=_int, required=True)
    parser.add_argument("--verdict-mark", type=_int, required=True)
    return parser


def serve(queue_num: int, classify: Classifier, candidate_mark: int, verdict_mark: int) -> None:
    """Judge queued packets until killed; report every match on stderr. Only
    packets carrying the candidate mark are judged: anything else on the queue
    was not sent here by our rule, and passes untouched."""
    with NfQueue(queue_num) as queue:
        print(f"stage: bound to NFQUEUE {queue_num}", file=sys.stderr, flush=True)
        seen = matched = 0
        for packet in queue.packets():
            seen += 1
            if packet.mark == candidate_mark and classify(packet.payload):
                matched += 1
                queue.verdict(packet.packet_id, NF_ACCEPT, verdict_mark)
                print(f"stage: match {matched}/{seen} (packet {packet.packet_id})",
                      file=sys.stderr, flush=True)
            else:
                queue.verdict(packet.packet_id, NF_ACCEPT)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        classify = build_classifier(args.classifier, args.param)
    except ValueError as exc:
        print(f"stage: {exc}", file=sys.stderr)
        return 2
    try:
        serve(args.queue, classify, args.candidate_mark, args.verdict_mark)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
