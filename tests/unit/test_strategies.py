"""Unit tests for harness.calls.strategies."""

from __future__ import annotations

import pytest
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import connection_kwargs

from harness.calls.strategies import (
    DIRECT,
    STRATEGIES,
    Endpoint,
    TurnCredentials,
    TurnServer,
    build_rtc_configuration,
    check_strategy,
    turn_url,
    uses_relay,
)

STUN = Endpoint("10.0.0.5", 3478)
TURN = TurnServer("10.0.0.9")
CREDS = TurnCredentials("user", "secret")


def test_strategy_names() -> None:
    assert STRATEGIES == ("direct", "turn-udp", "turn-tcp", "turn-tls-443")


def test_direct_uses_stun_and_all_candidates() -> None:
    cfg = build_rtc_configuration(DIRECT, STUN, TURN, CREDS)
    assert cfg.iceTransportPolicy is RTCIceTransportPolicy.ALL
    assert cfg.iceServers is not None
    assert [s.urls for s in cfg.iceServers] == ["stun:10.0.0.5:3478"]
    assert connection_kwargs(cfg.iceServers) == {"stun_server": ("10.0.0.5", 3478)}


def test_direct_without_stun_has_no_servers_not_google() -> None:
    cfg = build_rtc_configuration(DIRECT, None, None, None)
    assert cfg.iceServers == []  # None would make aiortc use stun.l.google.com


@pytest.mark.parametrize(
    ("strategy", "url", "ssl", "transport"),
    [
        ("turn-udp", "turn:10.0.0.9:3478?transport=udp", False, "udp"),
        ("turn-tcp", "turn:10.0.0.9:3478?transport=tcp", False, "tcp"),
        ("turn-tls-443", "turns:10.0.0.9:443?transport=tcp", True, "tcp"),
    ],
)
def test_turn_strategies_are_relay_only(strategy: str, url: str, ssl: bool, transport: str) -> None:
    cfg = build_rtc_configuration(strategy, STUN, TURN, CREDS)
    assert cfg.iceTransportPolicy is RTCIceTransportPolicy.RELAY
    assert cfg.iceServers is not None and len(cfg.iceServers) == 1
    server = cfg.iceServers[0]
    assert (server.urls, server.username, server.credential) == (url, "user", "secret")
    # aiortc silently ignores URLs it cannot use: check it really takes this one.
    kwargs = connection_kwargs(cfg.iceServers)
    port = 443 if ssl else 3478
    assert kwargs == {
        "turn_server": ("10.0.0.9", port),
        "turn_ssl": ssl,
        "turn_transport": transport,
        "turn_username": "user",
        "turn_password": "secret",
    }
    assert "stun_server" not in kwargs


def test_custom_turn_ports() -> None:
    turn = TurnServer("127.0.0.1", port=40000, tls_port=40001)
    assert turn_url("turn-udp", turn) == "turn:127.0.0.1:40000?transport=udp"
    assert turn_url("turn-tcp", turn) == "turn:127.0.0.1:40000?transport=tcp"
    assert turn_url("turn-tls-443", turn) == "turns:127.0.0.1:40001?transport=tcp"


def test_unknown_strategy_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="turn-tls-443") as info:
        build_rtc_configuration("turn-dtls", STUN, TURN, CREDS)
    for name in STRATEGIES:
        assert name in str(info.value)
    with pytest.raises(ValueError):
        check_strategy("")


def test_turn_strategy_needs_server_and_credentials() -> None:
    with pytest.raises(ValueError, match="TURN"):
        build_rtc_configuration("turn-udp", STUN, None, CREDS)
    with pytest.raises(ValueError, match="TURN"):
        build_rtc_configuration("turn-tcp", STUN, TURN, None)


def test_direct_has_no_turn_url() -> None:
    assert not uses_relay(DIRECT)
    assert all(uses_relay(s) for s in STRATEGIES if s != DIRECT)
    with pytest.raises(ValueError):
        turn_url(DIRECT, TURN)


def test_endpoint_parse() -> None:
    assert Endpoint.parse("10.1.2.3:3478") == Endpoint("10.1.2.3", 3478)
    assert Endpoint.parse("10.1.2.3", default_port=99) == Endpoint("10.1.2.3", 99)
    for bad in ("10.1.2.3", ":3478", "10.1.2.3:x"):
        with pytest.raises(ValueError):
            Endpoint.parse(bad)
