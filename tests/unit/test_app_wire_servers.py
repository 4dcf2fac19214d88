"""The app relays' protocol logic, fed packets directly (the lab tests run
them as processes): who gets answered, who gets relayed what."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harness.services.app_relays import telegram_reflector as reflector
from harness.services.app_relays import whatsapp_relay
from harness.services.app_relays.common import parse_ports
from harness.services.app_relays.whatsapp_relay import RelayState
from harness.wire import stun
from harness.wire import telegram as tg
from harness.wire import whatsapp as wa

CALL = bytes(range(12))
# The two sides of one call: the call's 12 bytes, then each side's own 4.
CALLER, CALLEE = tg.peer_tag(CALL, b"\x0a\x0a\x0a\x0a"), tg.peer_tag(CALL, b"\x0b\x0b\x0b\x0b")
TAG = CALLER
UDP_A, TCP_B = ("100.64.1.2", 5000), ("198.18.4.2", 40000)


class Inbox:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def __call__(self, packet: bytes) -> None:
        self.packets.append(packet)


def to_callee(payload: bytes) -> bytes:
    return tg.data(CALLEE, tg.sender_tag(CALLER), payload)


def to_caller(payload: bytes) -> bytes:
    return tg.data(CALLER, tg.sender_tag(CALLEE), payload)


def test_reflector_answers_hellos_with_the_self_info_and_bridges_udp_and_tcp() -> None:
    state = reflector.ReflectorState()
    udp_peer, tcp_peer = Inbox(), Inbox()
    state.packet(tg.hello(CALLER, 9), ("udp", UDP_A), udp_peer, UDP_A)
    [answer] = udp_peer.packets
    info = tg.parse_self_info(answer)
    assert (info.tag, info.query_id, info.address) == (CALLER, 9, UDP_A) and len(answer) == 64
    state.packet(tg.hello(CALLEE, 10), ("tcp", TCP_B), tcp_peer, TCP_B)
    rtp = b"\x80\x6f" + b"\x00" * 20
    state.packet(to_callee(rtp), ("udp", UDP_A), udp_peer, UDP_A)
    assert tcp_peer.packets[-1] == to_callee(rtp)  # unchanged: the receiver's tag first
    assert udp_peer.packets == [answer]  # not echoed to its sender
    state.packet(to_caller(b"back"), ("tcp", TCP_B), tcp_peer, TCP_B)
    assert udp_peer.packets[-1] == to_caller(b"back")
    assert state.counts["relayed"] == 2 and state.counts["hello"] == 2


def test_data_teaches_the_reflector_its_senders_endpoint() -> None:
    """tgcalls sends the hello on UDP only: a side known only from its data
    (e.g. over TCP) is reached all the same, under the tag its data names."""
    state = reflector.ReflectorState()
    caller, callee = Inbox(), Inbox()
    state.packet(to_callee(b"first"), "a", caller, UDP_A)  # nobody to take it yet
    assert state.counts["no-receiver"] == 1
    state.packet(to_caller(b"hello back"), "b", callee, TCP_B)
    assert caller.packets == [to_caller(b"hello back")]
    state.packet(to_callee(b"second"), "a", caller, UDP_A)
    assert callee.packets == [to_callee(b"second")]


def test_reflector_never_sends_back_to_a_sender_that_moved_to_tcp() -> None:
    """The caller's hellos left a UDP endpoint at the reflector (still fresh:
    it keeps sending hellos), then it moved to the TCP relay. What it sends
    over TCP must reach the callee only, on none of the caller's own endpoints."""
    state = reflector.ReflectorState()
    caller_udp, caller_tcp, callee_udp = Inbox(), Inbox(), Inbox()
    udp_key, tcp_key = ("udp", UDP_A), ("tcp", ("100.64.1.2", 41000))
    state.packet(tg.hello(CALLER, 1), udp_key, caller_udp, UDP_A)
    state.packet(tg.hello(CALLEE, 1), ("udp", TCP_B), callee_udp, TCP_B)
    state.packet(tg.hello(CALLER, 2), tcp_key, caller_tcp, tcp_key[1])
    media = [to_callee(b"\x80\x6f" + bytes([n]) * 20) for n in range(3)]
    for packet in media:
        state.packet(packet, tcp_key, caller_tcp, tcp_key[1])
        state.packet(tg.hello(CALLER, 3), udp_key, caller_udp, UDP_A)  # UDP stays fresh
    assert [tg.query_id(p) for p in caller_udp.packets] == [1, 3, 3, 3]
    assert [tg.query_id(p) for p in caller_tcp.packets] == [2]
    assert callee_udp.packets[1:] == media
    assert state.counts["relayed"] == 3


def test_reflector_never_echoes_to_a_socket_that_sent_with_both_tags() -> None:
    state = reflector.ReflectorState()
    confused, callee = Inbox(), Inbox()
    state.packet(tg.hello(CALLEE, 1), "x", confused, UDP_A)  # one socket, both sides' tags
    state.packet(tg.hello(CALLEE, 1), "b", callee, TCP_B)
    state.packet(to_callee(b"media"), "x", confused, UDP_A)
    assert len(confused.packets) == 1  # its own answer only
    assert callee.packets[-1] == to_callee(b"media")
    assert state.counts["not-echoed"] == 1


def test_a_packet_addressed_to_its_own_sender_goes_nowhere() -> None:
    state = reflector.ReflectorState()
    a = Inbox()
    state.packet(tg.hello(CALLER, 1), "a", a, UDP_A)
    state.packet(tg.data(CALLER, tg.sender_tag(CALLER), b"loop"), "a", a, UDP_A)
    assert len(a.packets) == 1 and state.counts["to-itself"] == 1


def test_reflector_keeps_calls_apart_and_forgets_idle_endpoints(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(reflector.time, "monotonic", lambda: clock[0])
    state = reflector.ReflectorState()
    a, b, stranger = Inbox(), Inbox(), Inbox()
    other_call = tg.peer_tag(b"\xee" * 12, tg.sender_tag(CALLEE))  # same 4 bytes, other call
    state.packet(tg.hello(CALLER, 1), "a", a, UDP_A)
    state.packet(tg.hello(other_call, 1), "x", stranger, UDP_A)
    state.packet(tg.hello(CALLEE, 2), "b", b, TCP_B)
    state.packet(to_callee(b"media"), "a", a, UDP_A)
    assert b.packets[-1] == to_callee(b"media") and len(stranger.packets) == 1
    clock[0] += reflector.IDLE_S - 1
    state.packet(to_callee(b"keep-a"), "a", a, UDP_A)  # b silent, not yet forgotten
    assert b.packets[-1] == to_callee(b"keep-a")
    clock[0] += 2  # b now silent for longer than IDLE_S
    state.packet(to_callee(b"late"), "a", a, UDP_A)
    assert "b" not in state.tags[CALLEE] and b.packets[-1] == to_callee(b"keep-a")


def test_reflector_drops_what_is_neither_special_nor_data() -> None:
    state = reflector.ReflectorState()
    state.packet(b"short", "a", Inbox(), UDP_A)
    state.packet(TAG + b"\x00\x00\x00\x01\x00\x00\x01\x00" + b"x" * 8, "a", Inbox(), UDP_A)
    assert state.counts["malformed"] == 2


class FakeTransport:
    def __init__(self, sockname: tuple[str, int] = ("198.18.9.9", 599)) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.sockname = sockname

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> Any:
        return self.sockname if name == "sockname" else None


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
    # A STUN answer gets no reply and joins no tag; an Allocate is not for this port.
    port.datagram_received(answer, public)
    port.datagram_received(stun.allocate_request(b"\x06" * 12, tg.TURN_SOFTWARE), public)
    assert len(transport.sent) == 1 and state.tags == {}
    assert state.counts["stun-binding"] == 1 and state.counts["stun-ignored"] == 2
    # The hello on the same port is still answered.
    port.datagram_received(tg.hello(TAG, 3), public)
    assert tg.parse_self_info(transport.sent[-1][0]).address == public


def test_the_turn_port_challenges_then_allocates() -> None:
    """RFC 5766 §6: 401 with REALM and NONCE, then, for the request with the
    long-term credential, Allocate Success; a wrong password gets 401 again.
    Hellos are not answered there."""
    state = reflector.ReflectorState()
    port = reflector.ReflectorPort(state, turn=True)
    transport = FakeTransport(("198.18.9.9", tg.TURN_UDP_PORT))
    port.connection_made(transport)  # type: ignore[arg-type]
    client = ("100.64.1.2", 4000)
    port.datagram_received(stun.allocate_request(b"\x01" * 12, tg.TURN_SOFTWARE), client)
    challenge = stun.StunMessage.decode(transport.sent[-1][0])
    assert challenge.msg_type == stun.ALLOCATE_ERROR
    assert stun.read_error_code(challenge.get(stun.ERROR_CODE)) == 401
    realm, nonce = challenge.get(stun.REALM), challenge.get(stun.NONCE)
    assert realm == b"telegram.org" and nonce
    for password, expected in (("wrong", stun.ALLOCATE_ERROR),
                               (tg.turn_password("alice"), stun.ALLOCATE_SUCCESS)):
        auth = stun.TurnAuth("alice", password, realm.decode(), nonce)
        port.datagram_received(stun.allocate_request(b"\x02" * 12, tg.TURN_SOFTWARE, auth),
                               client)
        reply = stun.StunMessage.decode(transport.sent[-1][0])
        assert reply.msg_type == expected
    assert reply.integrity_ok(auth.key)
    assert stun.read_xor_address(reply.get(stun.XOR_MAPPED_ADDRESS) or b"") == client
    sent = len(transport.sent)
    port.datagram_received(tg.hello(TAG, 1), client)
    assert len(transport.sent) == sent and state.counts["turn-not-stun"] == 1
    assert state.counts["turn-401"] == 2 and state.counts["turn-allocate"] == 1


def test_whatsapp_relay_pairs_the_two_peers_of_a_call() -> None:
    state = RelayState()
    port = FakeTransport()
    caller, callee = ("100.64.1.2", 4000), ("198.18.4.2", 5000)
    ok = state.allocate(wa.allocate("call", 1), port, caller)  # type: ignore[arg-type]
    assert ok.msg_type == wa.ALLOCATE_SUCCESS
    state.allocate(wa.allocate("call", 2), port, callee)  # type: ignore[arg-type]
    frame = wa.media_frame(1, 960, 7, b"opus", 0, wa.warp_auth_key(wa.call_key("call")))
    state.relay(frame, caller)
    assert port.sent == [(frame, callee)]
    report = wa.sender_report(7, 1, 960, 1, 4, wa.cname(b"\x00" * 6))
    relay_port = whatsapp_relay.RelayPort(state)
    relay_port.connection_made(port)  # type: ignore[arg-type]
    relay_port.datagram_received(report, callee)  # RTCP goes to the other side too
    assert port.sent[-1] == (report, caller)
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
