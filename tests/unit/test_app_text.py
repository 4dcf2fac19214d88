"""Text messages and the app servers, without a lab: two sides exchange their
texts over a real signalling server and count what arrives (all of it, or
what came before the other side left); one call's views share one
connection and a late view sees what came before it; a chat server on two
ports is one set of rooms; the max-like relay pairs the two sides of a call
and forwards between them; the text fields reach the PeerReport and the
CallRecord."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.calls.app import text
from harness.calls.app.client import CallFailed, ClientConfig, Session, text_fields
from harness.calls.app.media import OpusReceiver, OpusSender
from harness.calls.app.opus import OpusSettings
from harness.calls.app.signal_channel import SignalChannel, SignalError, shared_channels
from harness.calls.app_like import TEXT_MESSAGES, AppLikeClient
from harness.calls.base import CallSettings
from harness.calls.events import EventLog
from harness.measure.peer import PeerReport
from harness.measure.record import text_counts, text_outcome
from harness.measure.refsignal import generate_reference_wav
from harness.services import max_relay
from harness.services.signalling import SignallingServer, start_server
from harness.spec.names import Profile
from harness.testbed import Lab

T = TypeVar("T")
FAST_S = 0.02  # the text period in these tests


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 20.0))


async def _server(*ports: int) -> tuple[list[asyncio.Server], list[int], SignallingServer]:
    state = SignallingServer()
    servers = [(await start_server("127.0.0.1", port, state))[0] for port in ports or (0,)]
    return servers, [s.sockets[0].getsockname()[1] for s in servers], state


async def _side(port: int, role: str, count: int, leave_after: int | None = None
                ) -> text.TextCounts:
    """One side in its own shared-channel context: join, wait for the other,
    exchange `count` texts (or leave after sending `leave_after`)."""
    async with shared_channels():
        channel = await SignalChannel.join("127.0.0.1", port, "call-1", 5.0)
        await channel.wait_peer(5.0)
        exchange = text.TextExchange(channel, role, count, period_s=FAST_S)
        if leave_after is None:
            await exchange.run()
        else:
            exchange.counts.expected = leave_after  # send only these, then hang up
            await exchange._send()
        return exchange.counts


def test_both_sides_get_every_text() -> None:
    async def scenario() -> tuple[text.TextCounts, text.TextCounts]:
        servers, (port,), _ = await _server()
        try:
            caller, callee = await asyncio.gather(_side(port, "caller", 5),
                                                  _side(port, "callee", 5))
        finally:
            servers[0].close()
        return caller, callee

    for counts in run(scenario):
        assert counts.result() == {"text_sent": 5, "text_received": 5, "text_expected": 5,
                                   "text_ok": True, "text_detail": None}


def test_a_side_that_hangs_up_early_leaves_the_other_short(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(text, "GRACE_S", 1.0)

    async def scenario() -> text.TextCounts:
        servers, (port,), _ = await _server()
        try:
            caller, _ = await asyncio.gather(_side(port, "caller", 5),
                                             _side(port, "callee", 5, leave_after=2))
        finally:
            servers[0].close()
        return caller

    caller = run(scenario)
    result = caller.result()
    assert (result["text_sent"], result["text_received"], result["text_ok"]) == (5, 2, False)
    assert "2 of 5" in result["text_detail"] and "left" in result["text_detail"]


def test_no_chat_server_means_text_failed_not_unmeasured(tmp_path: Path) -> None:
    audio = generate_reference_wav(tmp_path / "ref.wav", 0.5)
    cfg = ClientConfig(role="caller", profile="whatsapp-like", call_id="c", relay_ip="r",
                       audio=audio, out=tmp_path / "out.json", text_messages=5)
    session = Session(cfg, OpusSender(audio, OpusSettings(), 16000),
                      OpusReceiver(None, 16000, 60), EventLog(None))
    failed = CallFailed("dns-failed", "dns", "wa-chat.lab: NXDOMAIN from the resolver x")
    fields = text_fields(session, failed)
    assert (fields["text_sent"], fields["text_received"], fields["text_ok"]) == (0, 0, False)
    assert "dns-failed at dns: wa-chat.lab: NXDOMAIN" in fields["text_detail"]
    quiet = Session(dataclasses.replace(cfg, text_messages=0), session.sender,
                    session.receiver, EventLog(None))
    assert text_fields(quiet, failed)["text_ok"] is None


def test_views_of_one_call_share_a_connection_and_see_earlier_messages() -> None:
    async def scenario() -> tuple[int, Any, Any, Any]:
        servers, (port,), state = await _server()
        try:
            async with shared_channels():
                first = await SignalChannel.join("127.0.0.1", port, "call-1", 5.0)
                second = await SignalChannel.join("127.0.0.1", port, "call-1", 5.0)
                members = len(state.rooms["call-1"])
                other_side = await _separate(port, "call-1")
                await other_side.wait_peer(5.0)
                other_side.send({"endpoint": [1, 2]})
                other_side.send({"text": {"seq": 0, "from": "callee"}})
                await asyncio.sleep(0.1)
                late = await SignalChannel.join("127.0.0.1", port, "call-1", 5.0)
                endpoint = await late.receive("endpoint", 2.0)
                message = await first.receive("text", 2.0)
                again = await second.receive("endpoint", 2.0)  # each view has its own copy
                await other_side.close()
                with pytest.raises(SignalError, match="left the call"):
                    await first.receive("nothing", 2.0)
        finally:
            servers[0].close()
        return members, endpoint, message, again

    members, endpoint, message, again = run(scenario)
    assert members == 1  # two views, one member of the room
    assert endpoint == again == [1, 2] and message == {"seq": 0, "from": "callee"}


async def _separate(port: int, room: str) -> SignalChannel:
    """A view in a context of its own (the other side of the call)."""
    async def join() -> SignalChannel:
        return await SignalChannel.join("127.0.0.1", port, room, 5.0)
    return await asyncio.create_task(join(), context=contextvars.Context())


def test_one_chat_server_on_two_ports_is_one_set_of_rooms() -> None:
    async def scenario() -> Any:
        servers, ports, _ = await _server(0, 0)
        try:
            a = await SignalChannel.join("127.0.0.1", ports[0], "room", 5.0)
            b = await SignalChannel.join("127.0.0.1", ports[1], "room", 5.0)
            await asyncio.gather(a.wait_peer(5.0), b.wait_peer(5.0))
            a.send({"hello": "from a"})
            answer = await b.receive("hello", 5.0)
            await a.close()
            await b.close()
        finally:
            for server in servers:
                server.close()
        return answer

    assert run(scenario) == "from a"


def test_the_max_relay_pairs_a_call_and_forwards_between_its_sides() -> None:
    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_datagram_endpoint(
            max_relay.MaxRelay, local_addr=("127.0.0.1", 0))
        address = transport.get_extra_info("sockname")
        sides = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for side in sides:
            side.bind(("127.0.0.1", 0))
            side.setblocking(False)
        caller, callee, stranger = sides
        got: list[bytes] = []
        try:
            caller.sendto(max_relay.hello("c1", "caller", 1.5), address)
            got.append(await loop.sock_recv(caller, 2048))
            callee.sendto(max_relay.hello("c1", "callee", 2.5), address)
            got.append(await loop.sock_recv(callee, 2048))
            caller.sendto(b"\x80rtp-from-caller", address)
            got.append(await loop.sock_recv(callee, 2048))
            callee.sendto(b"\x80rtp-from-callee", address)
            got.append(await loop.sock_recv(caller, 2048))
            stranger.sendto(b"\x80not-in-the-call", address)
            await asyncio.sleep(0.1)
            assert relay.forwarded == 2
        finally:
            transport.close()
            for side in sides:
                side.close()
        return got

    got = run(scenario)
    assert json.loads(got[0]) == {"ok": "c1", "t": 1.5, "peers": 1}
    assert json.loads(got[1]) == {"ok": "c1", "t": 2.5, "peers": 2}
    assert got[2:] == [b"\x80rtp-from-caller", b"\x80rtp-from-callee"]


def test_text_fields_reach_the_report_and_the_record() -> None:
    caller = PeerReport.from_dict({"text_sent": 5, "text_received": 5, "text_ok": True,
                                   "text_expected": 5}, "caller")
    callee = PeerReport.from_dict({"text_sent": 5, "text_received": 3, "text_ok": False},
                                  "callee")
    assert (caller.text_sent, caller.text_received, caller.text_ok) == (5, 5, True)
    assert caller.extra["text_expected"] == 5 and "text_ok" not in caller.extra
    assert caller.to_dict()["text_ok"] is True
    assert text_outcome(caller, callee) is False
    assert text_outcome(caller, caller) is True
    webrtc = PeerReport.from_dict({"text_ok": "yes"}, "callee")  # ill-typed: dropped
    assert webrtc.text_ok is None and text_outcome(caller, webrtc) is None
    assert text_counts(caller, callee) == {"caller_sent": 5, "caller_received": 5,
                                           "callee_sent": 5, "callee_received": 3}
    assert text_counts(webrtc, webrtc) == {}


def _flags(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, item in enumerate(argv[:-1]) if item == flag]


def test_each_profile_is_told_its_own_servers_and_how_to_find_them(fake_lab: Lab,
                                                                   tmp_path: Path) -> None:
    audio, settings = tmp_path / "ref.wav", CallSettings()
    services = fake_lab.services
    assert services is not None
    wa = AppLikeClient(Profile.WHATSAPP_LIKE)
    caller = wa.argv(fake_lab, "caller", audio, tmp_path / "c1", settings)
    assert _flags(caller, "--signal") == ["wa-chat.lab:5222", "wa-chat.lab:443"]
    assert _flags(caller, "--relay") == ["wa-relay.lab"]
    assert _flags(caller, "--resolver") == [services.resolver_ip] and "--name" not in caller
    assert _flags(caller, "--text-messages") == [str(TEXT_MESSAGES)]
    # The callee abroad is given the zone as it sees it; so is a tunnelled caller.
    callee = AppLikeClient(Profile.MAX_LIKE).argv(fake_lab, "callee", audio, tmp_path / "c2",
                                                  settings)
    names = dict(n.split("=") for n in _flags(callee, "--name"))
    assert names["max.lab"] == "198.18.10.2" and "--resolver" not in callee
    tunnelled = wa.argv(fake_lab, "caller", audio, tmp_path / "c3", settings, tunnelled=True)
    assert "--resolver" not in tunnelled and "wa-chat.lab=198.18.8.2" in _flags(tunnelled,
                                                                                "--name")
    tg = AppLikeClient(Profile.TELEGRAM_LIKE).argv(fake_lab, "caller", audio, tmp_path / "c4",
                                                   settings)
    assert _flags(tg, "--signal") == ["tg-server.lab:443"]
    assert _flags(tg, "--stun") == ["tg-relay.lab:596"]
