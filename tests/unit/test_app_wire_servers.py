"""The app relays' protocol logic, fed packets directly (the lab tests run
them as processes): who gets answered, who gets relayed what."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harness.services.app_relays import telegram_reflector as reflector
from harness.services.app_relays.common import parse_ports
from harness.services.app_relays.whatsapp_relay import RelayState
from harness.wire import stun
from harness.wire import telegram as tg
from harness.wire import whatsapp as wa

TAG = bytes(range(16))
# The two sides of one call: the same tag but for the side bit (libtgvoip's pairing).
CALLER, CALLEE = tg.side_tag(TAG, 0), tg.side_tag(TAG, 1)


class Inbox:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def __call__(self, packet: bytes) -> None:
        self.packets.append(packet)


def test_reflector_answers_hellos_and_bridges_udp_and_tcp() -> None:
    state = reflector.ReflectorState()
    udp_peer, tcp_peer = Inbox(), Inbox()
    state.packet(tg.hello(CALLER, 9), ("udp", ("100.64.1.2", 5000)), udp_peer)
    assert udp_peer.packets == [tg.answer(CALLER, 9)]
    state.packet(tg.hello(CALLEE, 10), ("tcp", ("198.18.4.2", 40000)), tcp_peer)
    rtp = b"\x80\x6f" + b"\x00" * 20
    state.packet(tg.tagged(CALLER, rtp), ("udp", ("100.64.1.2", 5000)), udp_peer)
    assert tcp_peer.packets[-1] == tg.tagged(CALLEE, rtp)  # with the receiver's own tag
    assert udp_peer.packets == [tg.answer(CALLER, 9)]  # not echoed to its sender
    state.packet(tg.tagged(CALLEE, b"back"), ("tcp", ("198.18.4.2", 40000)), tcp_peer)
    assert udp_peer.packets[-1] == tg.tagged(CALLER, b"back")


def test_reflector_never_sends_back_to_a_sender_that_moved_to_tcp() -> None:
    """Issue 12 item 4: the caller's hellos left a UDP endpoint at the reflector
    (still fresh: it keeps sending hellos), then it moved to the TCP relay. What
    it sends over TCP must reach the callee only, on none of the caller's own
    endpoints; before the fix the reflector relayed it to every other endpoint
    of the tag, the caller's stale UDP endpoint included, and the caller decoded
    its own audio."""
    state = reflector.ReflectorState()
    caller_udp, caller_tcp, callee_udp = Inbox(), Inbox(), Inbox()
    udp_key, tcp_key = ("udp", ("100.64.1.2", 5000)), ("tcp", ("100.64.1.2", 41000))
    state.packet(tg.hello(CALLER, 1), udp_key, caller_udp)
    state.packet(tg.hello(CALLEE, 1), ("udp", ("198.18.4.2", 6000)), callee_udp)
    state.packet(tg.hello(CALLER, 2), tcp_key, caller_tcp)
    media = [tg.tagged(CALLER, b"\x80\x6f" + bytes([n]) * 20) for n in range(3)]
    for packet in media:
        state.packet(packet, tcp_key, caller_tcp)
        state.packet(tg.hello(CALLER, 3), udp_key, caller_udp)  # the UDP side stays fresh
    assert caller_udp.packets == [tg.answer(CALLER, 1)] + [tg.answer(CALLER, 3)] * 3
    assert caller_tcp.packets == [tg.answer(CALLER, 2)]
    assert callee_udp.packets[1:] == [tg.tagged(CALLEE, p[tg.TAG_BYTES:]) for p in media]
    assert state.counts["relayed"] == 3


def test_reflector_never_echoes_to_a_socket_that_sent_with_both_tags() -> None:
    state = reflector.ReflectorState()
    confused, callee = Inbox(), Inbox()
    state.packet(tg.hello(CALLEE, 1), "x", confused)  # one socket, both sides' tags
    state.packet(tg.hello(CALLEE, 1), "b", callee)
    state.packet(tg.tagged(CALLER, b"media"), "x", confused)
    assert confused.packets == [tg.answer(CALLEE, 1)]
    assert callee.packets[-1] == tg.tagged(CALLEE, b"media")
    assert state.counts["not-echoed"] == 1


def test_reflector_keeps_tags_apart_and_forgets_idle_endpoints(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(reflector.time, "monotonic", lambda: clock[0])
    state = reflector.ReflectorState()
    a, b, stranger = Inbox(), Inbox(), Inbox()
    other_call = tg.side_tag(b"\xee" * 16, 1)
    state.packet(tg.hello(CALLER, 1), "a", a)
    state.packet(tg.hello(other_call, 1), "x", stranger)
    state.packet(tg.hello(CALLEE, 2), "b", b)
    state.packet(tg.tagged(CALLER, b"media"), "a", a)
    assert b.packets[-1] == tg.tagged(CALLEE, b"media")
    assert stranger.packets == [tg.answer(other_call, 1)]
    clock[0] += reflector.IDLE_S - 1
    state.packet(tg.tagged(CALLER, b"keep-a"), "a", a)  # b silent, not yet forgotten
    assert b.packets[-1] == tg.tagged(CALLEE, b"keep-a")
    clock[0] += 2  # b now silent for longer than IDLE_S
    state.packet(tg.tagged(CALLER, b"late"), "a", a)
    assert "b" not in state.tags[CALLEE] and b.packets[-1] == tg.tagged(CALLEE, b"keep-a")


def test_reflector_drops_short_packets() -> None:
    state = reflector.ReflectorState()
    state.packet(b"short", "a", Inbox())
    assert state.counts["malformed"] == 1


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def test_reflector_ports_answer_stun_binding_with_the_public_address() -> None:
    state = reflector.ReflectorState()
    port = reflector.ReflectorPort(state)
    transport = FakeTransport()
    port.connection_made(transport)  # type: ignore[arg-type]
    public = ("198.18.0.2", 40123)
    port.datagram_received(stun.binding_request(b"\x05" * 12), public)
    [(answer, to)] = transport.sent
    assert to == public
    assert stun.parse(answer) == (stun.BINDING_SUCCESS, b"\x05" * 12, public)
    # A STUN answer gets no reply and joins no tag.
    port.datagram_received(answer, public)
    assert len(transport.sent) == 1 and state.tags == {}
    assert state.counts["stun-binding"] == 1 and state.counts["stun-ignored"] == 1
    # The hello on the same port is still answered as before.
    port.datagram_received(tg.hello(TAG, 3), public)
    assert transport.sent[-1] == (tg.answer(TAG, 3), public)


def test_whatsapp_relay_pairs_the_two_peers_of_a_call() -> None:
    state = RelayState()
    port = FakeTransport()
    caller, callee = ("100.64.1.2", 4000), ("198.18.4.2", 5000)
    ok = state.allocate(wa.allocate("call", 1), port, caller)  # type: ignore[arg-type]
    assert ok.msg_type == wa.ALLOCATE_SUCCESS
    state.allocate(wa.allocate("call", 2), port, callee)  # type: ignore[arg-type]
    frame = wa.media_frame(1, 960, 7, b"opus")
    state.relay(frame, caller)
    assert port.sent == [(frame, callee)]
    full = state.allocate(wa.allocate("call", 3), port, ("1.2.3.4", 1))  # type: ignore[arg-type]
    assert full.msg_type == wa.ALLOCATE_ERROR
    state.relay(frame, ("9.9.9.9", 9))
    assert state.counts["media-unknown-sender"] == 1


def test_port_lists() -> None:
    assert parse_ports("596-599,1400") == [596, 597, 598, 599, 1400]
    assert len(parse_ports("3478-3497")) == 20
    for bad in ("0-3", "5-4", "x", "70000"):
        with pytest.raises(ValueError, match="ports"):
            parse_ports(bad)


def test_asyncio_is_not_needed_for_the_state() -> None:
    # The state objects are plain: no event loop is running here.
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
