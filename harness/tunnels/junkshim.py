"""An AmneziaWG-style obfuscating UDP shim pair in front of plain WireGuard.

No Debian package ships AmneziaWG, so `junk-obfuscation` runs stock
wireguard-go behind two shims: the client shim on the caller (wireguard-go's
endpoint is the shim's local port) and the server shim on the VPN host (it
forwards to wireguard-go's port there). Each shim obfuscates what its
WireGuard sends and undoes what arrives from the other shim.

What it mimics (AmneziaWG 1.x, docs/sources.md S36, S42):
- Jc junk datagrams of Jmin..Jmax random bytes sent before every handshake
  initiation;
- S1 random bytes prepended to the 148-byte handshake initiation, S2 to the
  92-byte handshake response;
- H1..H4 replacing the 4-byte message-type headers (1 initiation, 2
  response, 3 cookie reply, 4 transport data).
The receiving shim recognises a message by its length and its header value at
the padding offset, strips the padding, restores the type, and drops what it
does not recognise (the junk).

What it does not mimic: the I1..I5 "signature" packets of AmneziaWG 1.5/2.0
(QUIC/DNS/STUN look-alikes), the S3/S4 padding of cookie and data packets in
2.0, header ranges instead of single H values, and AmneziaWG's in-process
handling (here the obfuscation is a separate hop on loopback, which adds a
copy but changes nothing on the censor's wire). The parameter values are
guesses [S]; no source gives the values real clients use.

Run: python harness/tunnels/junkshim.py client|server --listen IP:PORT
     --forward IP:PORT --params JC,JMIN,JMAX,S1,S2,H1,H2,H3,H4
"""

from __future__ import annotations

import argparse
import random
import selectors
import socket
import struct
import sys
from dataclasses import astuple, dataclass
from pathlib import Path

# wireguard.py runs this file by path, so that harness.tunnels (mininet,
# pyroute2...) is never imported; sys.path then holds this directory, not the
# tree's root. Put the root there, so the one import below comes from this
# same tree whether or not (and wherever) callwall is installed. It imports
# only the standard library (harness/__init__, harness/netns/__init__, endpoint).
if not __package__:
    sys.path.insert(1, str(Path(__file__).resolve().parents[2]))

from harness.netns.endpoint import Endpoint  # noqa: E402

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE = 148, 92, 64
TRANSPORT_MIN_SIZE = 32  # 16-byte header + 16-byte tag of an empty keepalive
MAX_DATAGRAM = 65535
SHIM_MTU_MAX = 1280  # junk and padded handshakes stay below a minimal IPv6 MTU


@dataclass(frozen=True)
class JunkParams:
    """AmneziaWG's knobs; defaults are in its documented ranges, values [S]."""

    jc: int = 4
    jmin: int = 40
    jmax: int = 70
    s1: int = 37
    s2: int = 51
    h1: int = 0x5A3C19E7
    h2: int = 0x1B7D62F0
    h3: int = 0x6C0E4A95
    h4: int = 0x3F92D108

    def __post_init__(self) -> None:
        if not 0 <= self.jc <= 128:
            raise ValueError(f"jc: {self.jc} is outside 0..128")
        if not 1 <= self.jmin <= self.jmax <= SHIM_MTU_MAX:
            raise ValueError(f"jmin/jmax: need 1 <= jmin <= jmax <= {SHIM_MTU_MAX}, "
                             f"got {self.jmin}, {self.jmax}")
        if not 0 <= self.s1 <= SHIM_MTU_MAX - INITIATION_SIZE:
            raise ValueError(f"s1: {self.s1} is outside 0..{SHIM_MTU_MAX - INITIATION_SIZE}")
        if not 0 <= self.s2 <= SHIM_MTU_MAX - RESPONSE_SIZE:
            raise ValueError(f"s2: {self.s2} is outside 0..{SHIM_MTU_MAX - RESPONSE_SIZE}")
        if self.s1 + INITIATION_SIZE == self.s2 + RESPONSE_SIZE:
            raise ValueError("s1/s2: padded initiation and response must differ in size "
                             "(AmneziaWG requires s1 + 56 != s2)")
        headers = (self.h1, self.h2, self.h3, self.h4)
        if len(set(headers)) != 4 or any(not 5 <= h < 2**32 for h in headers):
            raise ValueError("h1..h4: need four distinct values in 5..2^32-1 (1..4 are "
                             "WireGuard's own types)")

    def to_arg(self) -> str:
        return ",".join(str(value) for value in astuple(self))

    @classmethod
    def from_arg(cls, text: str) -> JunkParams:
        fields = text.split(",")
        if len(fields) != 9 or not all(f.isdigit() for f in fields):
            raise ValueError(f"--params: expected 9 comma-separated integers, got {text!r}")
        return cls(*(int(f) for f in fields))


def message_type(packet: bytes) -> int | None:
    return struct.unpack_from("<I", packet)[0] if len(packet) >= 4 else None


class JunkCodec:
    """The transform both shims apply; `rng` makes it reproducible in tests."""

    def __init__(self, params: JunkParams, rng: random.Random | None = None) -> None:
        self.params = params
        self.rng = rng or random.SystemRandom()
        self._header = {INITIATION: params.h1, RESPONSE: params.h2,
                        COOKIE_REPLY: params.h3, TRANSPORT: params.h4}

    def obfuscate(self, packet: bytes) -> list[bytes]:
        """The datagrams to send for one WireGuard message, junk first."""
        kind = message_type(packet)
        p = self.params
        if kind == INITIATION and len(packet) == INITIATION_SIZE:
            junk = [self._random(self.rng.randint(p.jmin, p.jmax)) for _ in range(p.jc)]
            return junk + [self._random(p.s1) + self._retyped(packet, INITIATION)]
        if kind == RESPONSE and len(packet) == RESPONSE_SIZE:
            return [self._random(p.s2) + self._retyped(packet, RESPONSE)]
        if kind == COOKIE_REPLY and len(packet) == COOKIE_REPLY_SIZE:
            return [self._retyped(packet, COOKIE_REPLY)]
        if kind == TRANSPORT and len(packet) >= TRANSPORT_MIN_SIZE:
            return [self._retyped(packet, TRANSPORT)]
        return []  # not WireGuard: nothing of it goes on the wire

    def deobfuscate(self, datagram: bytes) -> bytes | None:
        """The WireGuard message inside `datagram`, or None for junk."""
        p = self.params
        size = len(datagram)
        if size == p.s1 + INITIATION_SIZE and self._has(datagram, p.s1, p.h1):
            return _typed(INITIATION, datagram[p.s1 + 4:])
        if size == p.s2 + RESPONSE_SIZE and self._has(datagram, p.s2, p.h2):
            return _typed(RESPONSE, datagram[p.s2 + 4:])
        if size == COOKIE_REPLY_SIZE and self._has(datagram, 0, p.h3):
            return _typed(COOKIE_REPLY, datagram[4:])
        if size >= TRANSPORT_MIN_SIZE and self._has(datagram, 0, p.h4):
            return _typed(TRANSPORT, datagram[4:])
        return None

    def _retyped(self, packet: bytes, kind: int) -> bytes:
        return struct.pack("<I", self._header[kind]) + packet[4:]

    def _random(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    @staticmethod
    def _has(datagram: bytes, offset: int, header: int) -> bool:
        return struct.unpack_from("<I", datagram, offset)[0] == header


def _typed(kind: int, rest: bytes) -> bytes:
    return struct.pack("<I", kind) + rest


def _address(text: str) -> tuple[str, int]:
    """IP:PORT through Endpoint.parse, its message as argparse's error."""
    try:
        return Endpoint.parse(text).as_tuple()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class ClientShim:
    """wireguard-go (local) <-> this shim <-> the server shim (one upstream)."""

    def __init__(self, codec: JunkCodec, listen: tuple[str, int],
                 server: tuple[str, int]) -> None:
        self.codec = codec
        self.local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.local.bind(listen)
        self.upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.upstream.connect(server)
        self.wireguard: tuple[str, int] | None = None

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.local, selectors.EVENT_READ, self._from_wireguard)
        selector.register(self.upstream, selectors.EVENT_READ, self._from_server)
        print("junkshim client ready", flush=True)
        while True:
            for key, _ in selector.select():
                key.data()

    def _from_wireguard(self) -> None:
        packet, self.wireguard = self.local.recvfrom(MAX_DATAGRAM)
        for datagram in self.codec.obfuscate(packet):
            self.upstream.send(datagram)

    def _from_server(self) -> None:
        try:
            datagram = self.upstream.recv(MAX_DATAGRAM)
        except ConnectionRefusedError:
            return  # the server shim is not up (yet): WireGuard retries
        packet = self.codec.deobfuscate(datagram)
        if packet is not None and self.wireguard is not None:
            self.local.sendto(packet, self.wireguard)


class ServerShim:
    """Client shims <-> this shim <-> wireguard-go (one socket per client)."""

    def __init__(self, codec: JunkCodec, listen: tuple[str, int],
                 wireguard: tuple[str, int]) -> None:
        self.codec = codec
        self.public = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.public.bind(listen)
        self.wireguard = wireguard
        self.selector = selectors.DefaultSelector()
        self.towards: dict[tuple[str, int], socket.socket] = {}

    def serve(self) -> None:
        self.selector.register(self.public, selectors.EVENT_READ, None)
        print("junkshim server ready", flush=True)
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    self._from_client()
                else:
                    self._from_wireguard(key.fileobj, key.data)  # type: ignore[arg-type]

    def _from_client(self) -> None:
        datagram, client = self.public.recvfrom(MAX_DATAGRAM)
        packet = self.codec.deobfuscate(datagram)
        if packet is None:
            return  # junk, or not ours
        inner = self.towards.get(client)
        if inner is None:
            inner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            inner.connect(self.wireguard)
            self.towards[client] = inner
            self.selector.register(inner, selectors.EVENT_READ, client)
        inner.send(packet)

    def _from_wireguard(self, inner: socket.socket, client: tuple[str, int]) -> None:
        try:
            packet = inner.recv(MAX_DATAGRAM)
        except ConnectionRefusedError:
            return
        for datagram in self.codec.obfuscate(packet):
            self.public.sendto(datagram, client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("side", choices=("client", "server"))
    parser.add_argument("--listen", required=True, type=_address)
    parser.add_argument("--forward", required=True, type=_address)
    parser.add_argument("--params", required=True, type=JunkParams.from_arg)
    args = parser.parse_args(argv)
    codec = JunkCodec(args.params)
    shim = (ClientShim if args.side == "client" else ServerShim)(codec, args.listen, args.forward)
    try:
        shim.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
