"""Call strategies: how a peer tries to reach the other side.

* ``direct``       -- ICE with host + server-reflexive candidates (STUN), no relay.
* ``turn-udp``     -- relay-only ICE through ``turn:IP:3478?transport=udp``.
* ``turn-tcp``     -- relay-only ICE through ``turn:IP:3478?transport=tcp``.
* ``turn-tls-443`` -- relay-only ICE through ``turns:IP:443?transport=tcp``.

The TURN strategies use ``iceTransportPolicy=RELAY``, so a call that connects
really went through the relay (aioice then gathers no host/srflx candidates).

One more configuration is for the signal-like client only (not a strategy a
matrix places): ``gather-all``, every candidate at once, as RingRTC gathers
them: host, server-reflexive (STUN), TURN over UDP and TURN over TLS on 443,
``iceTransportPolicy=ALL`` (harness.calls.peer.gather_all adds the second
TURN server, which aiortc alone would skip).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from harness.netns.endpoint import Endpoint
from harness.spec.names import ICE_STRATEGIES

DIRECT = "direct"
TURN_UDP = "turn-udp"
TURN_TCP = "turn-tcp"
TURN_TLS_443 = "turn-tls-443"

STRATEGIES: tuple[str, ...] = ICE_STRATEGIES
GATHER_ALL = "gather-all"
# What the aiortc peer accepts: the ICE strategies and the signal-like gathering.
PEER_STRATEGIES: tuple[str, ...] = (*STRATEGIES, GATHER_ALL)

DEFAULT_TURN_PORT = 3478
DEFAULT_TURNS_PORT = 443


@dataclass(frozen=True)
class TurnServer:
    """Where the relay listens: UDP/TCP on ``port``, TLS on ``tls_port``."""

    host: str
    port: int = DEFAULT_TURN_PORT
    tls_port: int = DEFAULT_TURNS_PORT


@dataclass(frozen=True)
class TurnCredentials:
    username: str
    password: str


@dataclass(frozen=True)
class TurnSpec:
    """The TURN flavour of a strategy."""

    scheme: str
    transport: str
    tls: bool


TURN_SPECS: dict[str, TurnSpec] = {
    TURN_UDP: TurnSpec("turn", "udp", tls=False),
    TURN_TCP: TurnSpec("turn", "tcp", tls=False),
    TURN_TLS_443: TurnSpec("turns", "tcp", tls=True),
}


def check_strategy(strategy: str) -> str:
    if strategy not in PEER_STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r}; valid strategies: {', '.join(PEER_STRATEGIES)}"
        )
    return strategy


def uses_relay(strategy: str) -> bool:
    return check_strategy(strategy) in TURN_SPECS or strategy == GATHER_ALL


def turn_url(strategy: str, turn: TurnServer) -> str:
    """The URL of a TURN strategy, e.g. ``turn:10.0.0.1:3478?transport=udp``."""
    spec = TURN_SPECS.get(check_strategy(strategy))
    if spec is None:
        raise ValueError(f"strategy {strategy!r} does not use TURN")
    port = turn.tls_port if spec.tls else turn.port
    return f"{spec.scheme}:{turn.host}:{port}?transport={spec.transport}"


def _direct_configuration(stun: Endpoint | None) -> RTCConfiguration:
    # An empty list (not None): aiortc would otherwise fall back to Google's STUN.
    servers = [] if stun is None else [RTCIceServer(f"stun:{stun.host}:{stun.port}")]
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.ALL)


def _turn_configuration(
    strategy: str, turn: TurnServer, credentials: TurnCredentials
) -> RTCConfiguration:
    server = RTCIceServer(
        urls=turn_url(strategy, turn),
        username=credentials.username,
        credential=credentials.password,
    )
    return RTCConfiguration(iceServers=[server], iceTransportPolicy=RTCIceTransportPolicy.RELAY)


def build_rtc_configuration(
    strategy: str,
    stun: Endpoint | None,
    turn: TurnServer | None,
    credentials: TurnCredentials | None,
) -> RTCConfiguration:
    """Map a strategy and the lab's servers to an aiortc RTCConfiguration.

    The STUN server is only used by ``direct``; the TURN server and credentials
    only by the TURN strategies (which need them: ValueError otherwise).
    """
    check_strategy(strategy)
    if strategy == DIRECT:
        return _direct_configuration(stun)
    if turn is None or credentials is None:
        raise ValueError(f"strategy {strategy!r} needs a TURN server and credentials")
    if strategy == GATHER_ALL:
        return _gather_all_configuration(stun, turn, credentials)
    return _turn_configuration(strategy, turn, credentials)


def _gather_all_configuration(
    stun: Endpoint | None, turn: TurnServer, credentials: TurnCredentials
) -> RTCConfiguration:
    """STUN, then one TURN server with its UDP and TLS-443 URLs (RingRTC
    passes one ICE server with several URLs), policy ALL."""
    relay = RTCIceServer(
        urls=[turn_url(TURN_UDP, turn), turn_url(TURN_TLS_443, turn)],
        username=credentials.username,
        credential=credentials.password,
    )
    servers = [] if stun is None else [RTCIceServer(f"stun:{stun.host}:{stun.port}")]
    return RTCConfiguration(iceServers=[*servers, relay],
                            iceTransportPolicy=RTCIceTransportPolicy.ALL)
