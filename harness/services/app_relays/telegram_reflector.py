"""A Telegram-like reflector with its TCP relay: written here because no
packaged server speaks Telegram's reflector protocol (Telegram's reflectors
are its own; tgcalls only shows the client side, restrictions.md §2.2).

UDP on 596-599 and 1400: a 40-byte hello (peer tag, 12×FF, FE, 3×FF, u64) is
answered with the tag, 16×FF and the same u64; any other packet starting with
a known peer tag is relayed to the other peers of that tag. TCP on 443: the
same packets, each framed by a big-endian u16 length. A peer on UDP and a peer
on TCP sharing a tag are bridged [S: the real relays' behaviour is unknown],
so each side can fall back on its own. An endpoint silent for IDLE_S is
forgotten (a peer that moved to TCP leaves its UDP endpoint behind).

The UDP ports also answer STUN Binding Requests (cookie 0x2112A442) with a
Binding Success carrying the sender's XOR-MAPPED-ADDRESS: tgcalls learns its
public address from Telegram's own servers (the STUN endpoints of
phoneConnectionWebrtc; Binding Requests follow the hellos to 596/597 in the
Flowseal#6148 capture, restrictions.md §2.2), so the telegram-like client uses
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
    tags: dict[bytes, dict[object, Endpoint]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def packet(self, data: bytes, key: object, send: Send) -> None:
        """One packet from endpoint `key` (a UDP address or a TCP connection)."""
        try:
            tag, payload = tg.split_tag(data)
        except WireError:
            self.counts["malformed"] += 1
            return
        endpoints = self.tags.setdefault(tag, {})
        now = time.monotonic()
        endpoint = endpoints.setdefault(key, Endpoint(key, send, now))
        endpoint.last_seen, endpoint.send = now, send  # answer from the port it used last
        if tg.is_hello(data):
            self.counts["hello"] += 1
            send(tg.answer(tag, tg.query_id(data)))
            return
        self._forget_idle(endpoints, now)
        for other in endpoints.values():
            if other.key != key:
                other.send(data)
                self.counts["relayed"] += 1

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
