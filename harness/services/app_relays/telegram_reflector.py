"""A Telegram-like reflector with its TCP relay: written here because no
packaged server speaks Telegram's reflector protocol (Telegram's reflectors
are its own; tgcalls only shows the client side, docs/sources.md S16, S24, S26).

UDP on 596-599 and 1400: a 40-byte hello (peer tag, 12×FF, FE, 3×FF, u64) is
answered with the tag, 16×FF and the same u64; any other packet starting with
a known peer tag is relayed to the endpoints of the partner tag, the other
side of the call (the tag with the low bit of its last byte flipped, as
libtgvoip's MockReflector pairs them: harness.wire.telegram), rewritten to
carry the receiver's own tag. TCP on 443: the same packets, each framed by a
big-endian u16 length. A peer on UDP and a peer on TCP are bridged [S: the
real relays' behaviour is unknown], so each side can fall back on its own.

Every endpoint a side has sent from is that side's: it is learnt under the
exact tag the side sends with, so a packet never goes back to any endpoint of
its sender, e.g. the UDP endpoint a peer left behind when it moved to TCP
(which it may still reach with hellos). An endpoint silent for IDLE_S is
forgotten.

The UDP ports also answer STUN Binding Requests (cookie 0x2112A442) with a
Binding Success carrying the sender's XOR-MAPPED-ADDRESS: tgcalls learns its
public address from Telegram's own servers (the STUN endpoints of
phoneConnectionWebrtc; Binding Requests follow the hellos to 596/597 in the
Flowseal#6148 capture, docs/sources.md S16, S24, S26), so the telegram-like client uses
this reflector's port 596 as its STUN server. Other STUN messages are ignored.

Run as ``python -m harness.services.app_relays.telegram_reflector --listen IP
[--udp-ports 596-599,1400] [--tcp-port 443]``; exits 0 on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
Send = Callable[[bytes], None]


@dataclass
class Endpoint:
    key: object
    send: Send
    last_seen: float = field(default_factory=time.monotonic)


@dataclass
class ReflectorState:
    """The endpoints learnt per tag: ``tags[tag]`` are the endpoints of the one
    side of a call that sends with `tag`."""

    tags: dict[bytes, dict[object, Endpoint]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def packet(self, data: bytes, key: object, send: Send) -> None:
        """One packet from endpoint `key` (a UDP address or a TCP connection)."""
        try:
            tag, payload = tg.split_tag(data)
        except WireError:
            self.counts["malformed"] += 1
            return
        senders = self.tags.setdefault(tag, {})
        now = time.monotonic()
        endpoint = senders.setdefault(key, Endpoint(key, send, now))
        endpoint.last_seen, endpoint.send = now, send  # answer from the port it used last
        if tg.is_hello(data):
            self.counts["hello"] += 1
            send(tg.answer(tag, tg.query_id(data)))
            return
        partner = tg.partner_tag(tag)
        receivers = self.tags.get(partner, {})
        self._forget_idle(senders, now)
        self._forget_idle(receivers, now)
        relayed = tg.tagged(partner, payload)
        for other in receivers.values():
            if other.key in senders:  # one socket seen with both tags: still the sender's
                self.counts["not-echoed"] += 1
                continue
            other.send(relayed)
            self.counts["relayed"] += 1
        if not receivers:
            self.counts["no-partner"] += 1

    def forget(self, key: object) -> None:
        for endpoints in self.tags.values():
            endpoints.pop(key, None)

    @staticmethod
    def _forget_idle(endpoints: dict[object, Endpoint], now: float) -> None:
        for key in [k for k, e in endpoints.items() if now - e.last_seen > IDLE_S]:
            del endpoints[key]


class ReflectorPort(asyncio.DatagramProtocol):
    def __init__(self, state: ReflectorState) -> None:
        self.state = state
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self.transport
        assert transport is not None
        if stun.is_stun(data):
            answer = binding_answer(data, addr, self.state)
            if answer is not None:
                transport.sendto(answer, addr)
            return
        self.state.packet(data, ("udp", addr),
                          lambda packet: transport.sendto(packet, addr))


def binding_answer(data: bytes, addr: tuple[str, int], state: ReflectorState) -> bytes | None:
    """The Binding Success for a Binding Request from `addr` (its public
    address as this server sees it); None for any other STUN message."""
    try:
        msg_type, txid, _ = stun.parse(data)
    except WireError:
        state.counts["malformed"] += 1
        return None
    if msg_type != stun.BINDING_REQUEST:
        state.counts["stun-ignored"] += 1
        return None
    state.counts["stun-binding"] += 1
    return stun.binding_success(txid, addr)


async def tcp_client(state: ReflectorState, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    key = ("tcp", writer.get_extra_info("peername"))

    def send(packet: bytes) -> None:
        if not writer.is_closing():
            writer.write(tg.tcp_frame(packet))

    state.counts["tcp-connections"] += 1
    try:
        while True:
            header = await reader.readexactly(tg.TCP_FRAME.size)
            (length,) = tg.TCP_FRAME.unpack(header)
            state.packet(await reader.readexactly(length), key, send)
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
        transport, _ = await loop.create_datagram_endpoint(lambda: ReflectorPort(state),
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
