"""The decoy strategy's packet stage: fakes ahead of each new UDP flow.

nft in the caller's namespace queues the first packet of every new outgoing
UDP flow here (NFQUEUE, postrouting, `ct original packets 1`), as zapret's
firewall rules feed nfqws (docs/sources.md S52). For each, before giving the
packet back, this stage sends `--count` fake datagrams of the same flow (same
addresses and ports) through a raw socket: `--payload-hex` as payload (by
default 64 zero bytes, nfqws's default fake for STUN and unknown UDP), with
the IP TTL `--ttl`, chosen so that a fake reaches the censor and expires at
the next router, before any server. The fakes carry the packet mark
`--mark`, which the queueing rule skips, so they are not queued again. Then
it accepts the real packet, which leaves after its fakes.

A DPI that classifies a flow on its first N packets and counts the fakes
among them (zapret's `--dpi-desync=fake` with `--dpi-desync-cutoff`) sees N
fakes and misses the real first packet.

Run: python harness/tunnels/decoy_stage.py --queue 200 --ttl 3 --count 6
     --mark 0x40000000 [--payload-hex 00...]
It prints READY_LINE once it holds the queue, and one line per flow it
decoyed.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# decoy.py runs this file by path, so that harness.tunnels (mininet,
# pyroute2...) is never imported; sys.path then holds this directory, not the
# tree's root. Put the root there, so the one import below comes from this
# same tree. It imports only the standard library.
if not __package__:
    sys.path.insert(1, str(Path(__file__).resolve().parents[2]))

from harness.netfilter.nfqueue import NF_ACCEPT, NfQueue  # noqa: E402

READY_LINE = "decoy stage: bound to NFQUEUE"
IPPROTO_UDP = 17
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
UDP_HEADER = struct.Struct("!HHHH")
MAX_FAKE_PAYLOAD = 1400
MAX_FAKES = 64
# A flow's packets sent before the stage released its first one reach the
# queue too (each still looks like a flow's first packet to conntrack): the
# flow gets its fakes once. As long as the kernel's UDP conntrack timeout for
# a flow that saw no reply, after which a flow is new again.
SEEN_FOR_S = 30.0


@dataclass(frozen=True)
class UdpFlow:
    """A UDP flow's original direction, as its first packet shows it."""

    src: str
    sport: int
    dst: str
    dport: int

    def __str__(self) -> str:
        return f"udp {self.src}:{self.sport} -> {self.dst}:{self.dport}"


def parse_ipv4_udp(packet: bytes) -> UdpFlow | None:
    """The flow of an IPv4 UDP packet (starting at the IP header), or None
    for anything else (another protocol, a fragment, a short packet)."""
    if len(packet) < IPV4_HEADER.size or packet[0] >> 4 != 4:
        return None
    header_len = (packet[0] & 0x0F) * 4
    fields = IPV4_HEADER.unpack_from(packet)
    flags_fragment, protocol = fields[4], fields[6]
    if protocol != IPPROTO_UDP or flags_fragment & 0x1FFF or \
            len(packet) < header_len + UDP_HEADER.size:
        return None
    sport, dport = struct.unpack_from("!HH", packet, header_len)
    return UdpFlow(socket.inet_ntoa(fields[8]), sport, socket.inet_ntoa(fields[9]), dport)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fake_datagram(flow: UdpFlow, payload: bytes, ttl: int, ident: int) -> bytes:
    """An IPv4 UDP datagram of `flow` carrying `payload`, with `ttl`, both
    checksums right (a fake must look like a packet of the flow)."""
    src, dst = socket.inet_aton(flow.src), socket.inet_aton(flow.dst)
    udp_len = UDP_HEADER.size + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, udp_len)
    udp = UDP_HEADER.pack(flow.sport, flow.dport, udp_len, 0) + payload
    udp_sum = _checksum(pseudo + udp) or 0xFFFF  # 0 would mean "no checksum"
    udp = UDP_HEADER.pack(flow.sport, flow.dport, udp_len, udp_sum) + payload
    header = IPV4_HEADER.pack(0x45, 0, IPV4_HEADER.size + udp_len, ident & 0xFFFF, 0, ttl,
                              IPPROTO_UDP, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--ttl", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--mark", type=lambda text: int(text, 0), required=True)
    parser.add_argument("--payload-hex", default="00" * 64)
    args = parser.parse_args(argv)
    if not 1 <= args.ttl <= 255:
        parser.error("--ttl must be between 1 and 255")
    if not 1 <= args.count <= MAX_FAKES:
        parser.error(f"--count must be between 1 and {MAX_FAKES}")
    if not 0 < args.mark <= 0xFFFFFFFF:
        parser.error("--mark must be a non-zero 32-bit value")
    try:
        payload = bytes.fromhex(args.payload_hex)
    except ValueError:
        parser.error("--payload-hex must be hex digits, two a byte")
    if not 1 <= len(payload) <= MAX_FAKE_PAYLOAD:
        parser.error(f"--payload-hex must be 1 to {MAX_FAKE_PAYLOAD} bytes")
    args.payload = payload
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, args.mark)
    with NfQueue(args.queue) as queue:
        print(f"{READY_LINE} {args.queue} (ttl {args.ttl}, {args.count} fakes of "
              f"{len(args.payload)} B)", flush=True)
        seen: dict[UdpFlow, float] = {}
        for packet in queue.packets():
            flow = parse_ipv4_udp(packet.payload)
            now = time.monotonic()
            if flow is not None and now - seen.get(flow, -SEEN_FOR_S) >= SEEN_FOR_S:
                seen = {f: t for f, t in seen.items() if now - t < SEEN_FOR_S}
                seen[flow] = now
                for _ in range(args.count):
                    fake = fake_datagram(flow, args.payload, args.ttl,
                                         int.from_bytes(os.urandom(2), "big"))
                    raw.sendto(fake, (flow.dst, 0))
                print(f"decoy: {args.count} fakes (ttl {args.ttl}) before {flow}", flush=True)
            queue.verdict(packet.packet_id, NF_ACCEPT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
