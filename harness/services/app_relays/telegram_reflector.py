"""A Telegram-like reflector with its TCP relay and a TURN port: written here
because no packaged server speaks Telegram's reflector protocol (Telegram's
reflectors are its own; tgcalls and libtgvoip only show the client side,
docs/sources.md S16, S24, S26, S61, S62).

UDP reflector ports (596-599): a hello (harness.wire.telegram: the sender's
tag, 12×FF, FE FF FF FF, a query id) is answered with libtgvoip's 64-byte
self-info (the tag, 12×FF, 0xc01572c7, the date, the query id, the sender's
address and port as seen here). Each endpoint is learnt under the full tag it
sends with: a hello's tag, or for data the call's 12 bytes and the sender's
own 4-byte tag. A data packet (the receiver's tag, the sender's tag, a
length, the payload padded to 4, tgcalls ReflectorPort::SendTo) goes
unchanged to the endpoints learnt under the tag it is addressed to, never to
an endpoint of its sender (e.g. the UDP endpoint a peer left behind when it
moved to TCP, which it may still reach with hellos), and never back to a
sender that addressed itself. [S] that the real reflectors route by the full
16-byte tag: it is what tgcalls' addressing implies; libtgvoip's
tests/MockReflector.cpp pairs two tags that differ in the last bit instead.
TCP on 443: the same packets, each framed by a big-endian u16 length [S]. A
peer on UDP and a peer on TCP are bridged [S: the real relays' behaviour is
unknown], so each side can fall back on its own. An endpoint silent for
IDLE_S is forgotten.

The reflector ports also answer STUN Binding Requests (cookie 0x2112A442)
with a Binding Success carrying the sender's XOR-MAPPED-ADDRESS: tgcalls
learns its public address from Telegram's own servers (phoneConnectionWebrtc,
S25), so the telegram-like client uses this reflector's port 596 as its STUN
server. Other STUN messages are ignored there.

UDP 1400 is a TURN port (S18: TURN Allocates to a Telegram address on 1400):
an Allocate without credentials gets 401 with REALM "telegram.org" [S] and a
nonce; one with USERNAME, REALM, NONCE and a MESSAGE-INTEGRITY made with
harness.wire.telegram.turn_password [S] gets an Allocate Success with a
relayed address, a lifetime and the sender's mapped address; a wrong one gets
401 again. [S] Nothing is relayed through these allocations: the
telegram-like client allocates, as tgcalls does while it gathers candidates,
but carries its media over the reflectors. Binding Requests are answered
there too, anything else is ignored.

Run as ``python -m harness.services.app_relays.telegram_reflector --listen IP
[--udp-ports 596-599,1400] [--tcp-port 443]`` (a port in
harness.wire.telegram.TURN_UDP_PORT speaks TURN); exits 0 on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from harness.services.app_relays.common import announce_ready, log, parse_ports, until_terminated
from harness.wire import stun
from harness.wire import telegram as tg
from harness.wire.rtp import WireError

IDLE_S = 5.0
TURN_LIFETIME_S = 600  # RFC 5766 §2.2's default allocation lifetime
Send = Callable[[bytes], None]
Address = tuple[str, int]


@dataclass
class Endpoint:
    key: object
    send: Send
    last_seen: float = field(default_factory=time.monotonic)


@dataclass
class ReflectorState:
    """The endpoints learnt per tag: ``tags[tag]`` are the endpoints of the one
    side of a call whose full tag is `tag`."""

    tags: dict[bytes, dict[object, Endpoint]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def packet(self, data: bytes, key: object, send: Send, address: Address) -> None:
        """One packet from endpoint `key` (a UDP address or a TCP connection),
        whose address as seen here is `address`."""
        now = time.monotonic()
        if tg.is_special(data):
            tag = data[:tg.TAG_BYTES]
            self._learn(tag, key, send, now)
            if tg.is_hello(data):
                self.counts["hello"] += 1
                send(tg.self_info(tag, data[32:40], int(time.time()) & 0x7FFFFFFF, address))
            else:
                self.counts["special-ignored"] += 1
            return
        try:
            packet = tg.parse_data(data)
        except WireError:
            self.counts["malformed"] += 1
            return
        senders = self._learn(packet.sender_tag, key, send, now)
        if packet.tag == packet.sender_tag:
            self.counts["to-itself"] += 1
            return
        receivers = self.tags.get(packet.tag, {})
        self._forget_idle(receivers, now)
        for other in receivers.values():
            if other.key in senders:  # one socket seen with both tags: still the sender's
                self.counts["not-echoed"] += 1
                continue
            other.send(data)
            self.counts["relayed"] += 1
        if not receivers:
            self.counts["no-receiver"] += 1

    def _learn(self, tag: bytes, key: object, send: Send, now: float) -> dict[object, Endpoint]:
        endpoints = self.tags.setdefault(tag, {})
        endpoint = endpoints.setdefault(key, Endpoint(key, send, now))
        endpoint.last_seen, endpoint.send = now, send  # answer from the port it used last
        self._forget_idle(endpoints, now)
        return endpoints

    def forget(self, key: object) -> None:
        for endpoints in self.tags.values():
            endpoints.pop(key, None)

    @staticmethod
    def _forget_idle(endpoints: dict[object, Endpoint], now: float) -> None:
        for key in [k for k, e in endpoints.items() if now - e.last_seen > IDLE_S]:
            del endpoints[key]


class ReflectorPort(asyncio.DatagramProtocol):
    """One UDP port: a reflector port, or with `turn` the TURN port."""

    def __init__(self, state: ReflectorState, turn: bool = False) -> None:
        self.state = state
        self.turn = turn
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        transport = self.transport
        assert transport is not None
        if stun.is_stun(data):
            answer = stun_answer(data, addr, self.state, self.turn, self.local_address())
            if answer is not None:
                transport.sendto(answer, addr)
            return
        if self.turn:
            self.state.counts["turn-not-stun"] += 1
            return
        self.state.packet(data, ("udp", addr),
                          lambda packet: transport.sendto(packet, addr), addr)

    def local_address(self) -> Address:
        sockname = self.transport.get_extra_info("sockname") if self.transport else None
        return (str(sockname[0]), int(sockname[1])) if sockname else ("0.0.0.0", 0)


def stun_answer(data: bytes, addr: Address, state: ReflectorState, turn: bool,
                local: Address) -> bytes | None:
    """What a port answers a STUN message from `addr` with: a Binding Success
    (its public address as seen here) on any port, the TURN Allocate exchange
    on the TURN port; None for anything else."""
    try:
        message = stun.StunMessage.decode(data)
    except WireError:
        state.counts["malformed"] += 1
        return None
    if message.msg_type == stun.BINDING_REQUEST:
        state.counts["stun-binding"] += 1
        return stun.binding_success(message.transaction_id, addr)
    if turn and message.msg_type == stun.ALLOCATE_REQUEST:
        return turn_allocate(message, addr, state, local)
    state.counts["stun-ignored"] += 1
    return None


def turn_allocate(request: stun.StunMessage, addr: Address, state: ReflectorState,
                  local: Address) -> bytes:
    """401 with a realm and nonce, or, for a request whose MESSAGE-INTEGRITY
    checks out, an Allocate Success (RFC 5766 §6.2-6.3)."""
    nonce = hashlib.sha256(f"{addr[0]}:{addr[1]}".encode()).hexdigest()[:16].encode()
    username = request.get(stun.USERNAME)
    if username is None or request.get(stun.MESSAGE_INTEGRITY) is None:
        state.counts["turn-401"] += 1
        return stun.unauthorized(request, tg.TURN_REALM, nonce)
    name = username.decode(errors="replace")
    key = stun.long_term_key(name, tg.TURN_REALM, tg.turn_password(name))
    if request.get(stun.NONCE) != nonce or not request.integrity_ok(key):
        state.counts["turn-401"] += 1
        return stun.unauthorized(request, tg.TURN_REALM, nonce)
    state.counts["turn-allocate"] += 1
    return stun.allocate_success(request, local, addr, TURN_LIFETIME_S, key)


async def tcp_client(state: ReflectorState, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    key = ("tcp", peer)
    address = (str(peer[0]), int(peer[1])) if peer else ("0.0.0.0", 0)

    def send(packet: bytes) -> None:
        if not writer.is_closing():
            writer.write(tg.tcp_frame(packet))

    state.counts["tcp-connections"] += 1
    try:
        while True:
            header = await reader.readexactly(tg.TCP_FRAME.size)
            (length,) = tg.TCP_FRAME.unpack(header)
            state.packet(await reader.readexactly(length), key, send, address)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        state.forget(key)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(listen: str, udp_ports: list[int], tcp_port: int) -> ReflectorState:
    state = ReflectorState()
    loop = asyncio.get_running_loop()
    transports = []
    for port in udp_ports:
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(ReflectorPort, state, port == tg.TURN_UDP_PORT),
            local_addr=(listen, port))
        transports.append(transport)
    server = await asyncio.start_server(lambda r, w: tcp_client(state, r, w), listen, tcp_port)
    announce_ready("telegram-like reflector")
    try:
        await until_terminated()
    finally:
        server.close()
        for transport in transports:
            transport.close()
        log(f"telegram-like reflector stats: {dict(state.counts)}")
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--udp-ports", default="596-599,1400")
    parser.add_argument("--tcp-port", type=int, default=tg.TCP_RELAY_PORT)
    args = parser.parse_args(argv)
    try:
        ports = parse_ports(args.udp_ports)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(serve(args.listen, ports, args.tcp_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
