"""Unit tests for harness.services.signalling (in-process server, loopback only)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest

from harness.services.signalling import SignallingClient, SignallingError, start_server

HOST = "127.0.0.1"
T = 5.0


def _run(test: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        server, _ = await start_server(HOST, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.wait_for(test(port), 20)
        finally:
            server.close()

    asyncio.run(main())


async def _client(port: int) -> SignallingClient:
    return await SignallingClient.connect(HOST, port, timeout=T)


def test_join_and_forward_verbatim() -> None:
    async def scenario(port: int) -> None:
        a = await _client(port)
        assert await a.join("r1", T) == {"joined": "r1", "peers": 1}
        b = await _client(port)
        assert await b.join("r1", T) == {"joined": "r1", "peers": 2}
        assert await a.recv(T) == {"peer_joined": True}
        message = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "n": [1, 2]}
        await a.send(message)
        assert await b.recv(T) == message
        await b.send({"type": "answer", "sdp": "x"})
        assert await a.recv(T) == {"type": "answer", "sdp": "x"}
        await a.close()
        await b.close()

    _run(scenario)


def test_rooms_are_isolated_and_hold_two() -> None:
    async def scenario(port: int) -> None:
        a, b, c, d = [await _client(port) for _ in range(4)]
        await a.join("r1", T)
        await b.join("r1", T)
        with pytest.raises(SignallingError, match="room-full"):
            await c.join("r1", T)
        assert (await d.join("r2", T))["peers"] == 1
        await d.send({"hello": "r2"})
        await a.recv(T)  # peer_joined
        await b.send({"hello": "r1"})
        assert await a.recv(T) == {"hello": "r1"}
        with pytest.raises(TimeoutError):
            await a.recv(0.3)  # nothing from room r2 leaked
        for client in (a, b, c, d):
            await client.close()

    _run(scenario)


def test_peer_left_notification() -> None:
    async def scenario(port: int) -> None:
        a, b = await _client(port), await _client(port)
        await a.join("r", T)
        await b.join("r", T)
        await a.recv(T)  # peer_joined
        await b.close()
        assert await a.recv(T) == {"peer_left": True}
        # The room has space again.
        c = await _client(port)
        assert (await c.join("r", T))["peers"] == 2
        await a.close()
        await c.close()

    _run(scenario)


def test_message_to_empty_room_is_dropped() -> None:
    async def scenario(port: int) -> None:
        a = await _client(port)
        await a.join("solo", T)
        await a.send({"ready": True})
        b = await _client(port)
        await b.join("solo", T)
        with pytest.raises(TimeoutError):
            await b.recv(0.3)
        await a.close()
        await b.close()

    _run(scenario)


def test_bad_join_is_rejected() -> None:
    async def scenario(port: int) -> None:
        a = await _client(port)
        await a.send({"hello": 1})
        assert await a.recv(T) == {"error": "bad-join"}
        with pytest.raises(SignallingError):
            await a.recv(T)  # closed by the server
        await a.close()

    _run(scenario)


def test_client_connect_failure_is_signalling_error() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused

        async def scenario() -> None:
            with pytest.raises(SignallingError):
                await SignallingClient.connect(HOST, port, timeout=2)

        asyncio.run(scenario())


def test_cli_prints_ready_and_exits_on_sigterm() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "harness.services.signalling", "--listen", HOST,
            "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().strip() == "ready"
        with socket.create_connection((HOST, port), timeout=5) as conn:
            conn.sendall(json.dumps({"join": "x"}).encode() + b"\n")
            assert json.loads(conn.makefile().readline()) == {"joined": "x", "peers": 1}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
