"""A WhatsApp-like media relay: written here because no packaged server speaks
WhatsApp's STUN dialect (its relays are Meta's own; only the wire format is
reported, docs/sources.md S19, S20).

It listens on UDP 3478-3497 (every port alike), answers allocate (0x0003) with
0x0103, pongs pings (0x0801 → 0x0802), and relays WARP media frames and RTCP
reports (harness.wire.whatsapp) between the two peers that allocated with the
same call id, whatever port each used, unchanged.

Run as ``python -m harness.services.app_relays.whatsapp_relay --listen IP
[--ports 3478-3497]``; exits 0 on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from harness.services.app_relays.common import announce_ready, log, parse_ports, until_terminated
from harness.wire import whatsapp as wa
from harness.wire.rtp import WireError

Address = tuple[str, int]
MAX_PEERS_PER_CALL = 2


@dataclass
class Member:
    call_id: bytes
    peer_id: int
    transport: asyncio.DatagramTransport
    address: Address


@dataclass
class RelayState:
    calls: dict[bytes, dict[int, Member]] = field(default_factory=dict)
    by_address: dict[Address, Member] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def allocate(self, message: wa.WaspMessage, transport: asyncio.DatagramTransport,
                 address: Address) -> wa.WaspMessage:
        call_id, peer_id = message.get(wa.ATTR_CALL_ID), wa.peer_id_of(message)
        if not call_id or peer_id is None:
            self.counts["allocate-bad"] += 1
            return wa.allocate_error(message, "missing call id or peer id")
        members = self.calls.setdefault(call_id, {})
        if peer_id not in members and len(members) >= MAX_PEERS_PER_CALL:
            self.counts["allocate-full"] += 1
            return wa.allocate_error(message, "call full")
        old = members.get(peer_id)
        if old is not None:
            self.by_address.pop(old.address, None)
        member = Member(call_id, peer_id, transport, address)
        members[peer_id] = member
        self.by_address[address] = member
        self.counts["allocate"] += 1
        return wa.allocate_success(message, os.urandom(8))

    def relay(self, data: bytes, address: Address) -> None:
        sender = self.by_address.get(address)
        if sender is None:
            self.counts["media-unknown-sender"] += 1
            return
        for peer_id, member in self.calls.get(sender.call_id, {}).items():
            if peer_id != sender.peer_id:
                member.transport.sendto(data, member.address)
                self.counts["media-relayed"] += 1


class RelayPort(asyncio.DatagramProtocol):
    def __init__(self, state: RelayState) -> None:
        self.state = state
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        if wa.is_media(data) or wa.is_rtcp(data):
            self.state.relay(data, addr)
            return
        try:
            message = wa.WaspMessage.decode(data)
        except WireError:
            self.state.counts["malformed"] += 1
            return
        if message.msg_type == wa.ALLOCATE:
            self.transport.sendto(self.state.allocate(message, self.transport, addr).encode(),
                                  addr)
        elif message.msg_type == wa.PING:
            self.state.counts["ping"] += 1
            self.transport.sendto(wa.pong(message).encode(), addr)
        else:
            self.state.counts["unexpected-type"] += 1


async def serve(listen: str, ports: list[int]) -> RelayState:
    state = RelayState()
    loop = asyncio.get_running_loop()
    transports = []
    for port in ports:
        transport, _ = await loop.create_datagram_endpoint(lambda: RelayPort(state),
                                                           local_addr=(listen, port))
        transports.append(transport)
    announce_ready("whatsapp-like relay")
    try:
        await until_terminated()
    finally:
        for transport in transports:
            transport.close()
        log(f"whatsapp-like relay stats: {dict(state.counts)}")
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--ports", default="3478-3497")
    args = parser.parse_args(argv)
    try:
        ports = parse_ports(args.ports)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(serve(args.listen, ports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
