"""Every TURN server of the configuration gathered at once, for the
``gather-all`` configuration (harness.calls.strategies) of the signal-like
profile.

RingRTC hands libwebrtc one ICE server with several URLs (Signal-Server's
TurnCallRouter gives ``turn:IP``, ``turn:IP:80?transport=tcp`` and
``turns:IP:443?transport=tcp``), with policy ALL and continual gathering
(ringrtc/rffi peer_connection_factory.cc, docs/sources.md S66): host,
server-reflexive and every relay candidate are gathered in parallel and ICE
picks the pair. aiortc takes only the first TURN URL of a configuration
(aiortc.rtcicetransport.connection_kwargs: "only a single TURN server is
supported"); :func:`install` makes this process's aioice connections gather a
relayed candidate from each of the others too, in parallel with aioice's own
host, server-reflexive and first relay candidate, under the same gathering
timeout. An extra relay candidate gets its own foundation (its transport
differs) and libwebrtc's lower relay preference for TCP and TLS (UDP 2, TCP
1, TLS 0 in ``GetRelayPreference``), so with both relays working the UDP
relay wins, as in libwebrtc. This reads aioice's private ``_protocols``:
best effort, as harness.calls.peer.stats is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aiortc.rtcicetransport
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import RTCConfiguration
from aiortc.rtcicetransport import parse_stun_turn_uri

# Relay preferences (libwebrtc GetRelayPreference): UDP 2, TCP 1, TLS 0,
# below aioice's local preference for its own (UDP) relay candidate.
RELAY_LOCAL_PREF = {"udp": 65535, "tcp": 65534, "tls": 65533}


@dataclass(frozen=True)
class ExtraTurn:
    """A TURN server aiortc would skip: address, credential, how it is reached."""

    server: tuple[str, int]
    username: str | None
    password: str | None
    ssl: bool
    transport: str

    @property
    def protocol(self) -> str:
        return "tls" if self.ssl else self.transport


def extra_turn_servers(configuration: RTCConfiguration) -> list[ExtraTurn]:
    """The TURN URLs of `configuration` after the first, which aiortc uses."""
    found: list[ExtraTurn] = []
    first = True
    for server in configuration.iceServers or []:
        urls = server.urls if isinstance(server.urls, list) else [server.urls]
        for url in urls:
            parsed = parse_stun_turn_uri(url)
            if parsed["scheme"] not in ("turn", "turns"):
                continue
            if first:
                first = False
                continue
            found.append(ExtraTurn((parsed["host"], parsed["port"]), server.username,
                                   server.credential if isinstance(server.credential, str)
                                   else None, parsed["scheme"] == "turns",
                                   parsed["transport"] or "udp"))
    return found


def connection_class(extra: Sequence[ExtraTurn]) -> type[aioice.Connection]:
    """An aioice Connection that also gathers a relayed candidate from each
    of `extra`."""

    class GatherAllConnection(aioice.Connection):
        async def get_component_candidates(self, component: int, addresses: list[str],
                                           timeout: int = 5) -> list[aioice.Candidate]:
            tasks = [asyncio.create_task(self._relayed(component, turn)) for turn in extra]
            candidates: list[aioice.Candidate] = await super().get_component_candidates(
                component, addresses, timeout)
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=timeout)
                for task in pending:
                    task.cancel()
                for task in done:
                    if task.exception() is None:
                        candidates.append(task.result())
            return candidates

        async def _relayed(self, component: int, turn: ExtraTurn) -> aioice.Candidate:
            candidate, protocol = await aioice.ice.relayed_candidate(
                component=component, hide_related_address=False,
                protocol_factory=lambda: aioice.ice.StunProtocol(self),
                turn_server=turn.server, turn_username=turn.username,
                turn_password=turn.password, turn_ssl=turn.ssl,
                turn_transport=turn.transport)
            candidate.foundation = candidate_foundation("relay", turn.protocol, candidate.host)
            candidate.priority = candidate_priority(component, "relay",
                                                    RELAY_LOCAL_PREF[turn.protocol])
            protocols: list[Any] = self._protocols
            protocols.append(protocol)
            return candidate

    return GatherAllConnection


def install(configuration: RTCConfiguration) -> list[ExtraTurn]:
    """Make the peer connections of this process gather from every TURN URL
    of `configuration`; returns the servers added."""
    extra = extra_turn_servers(configuration)
    if extra:
        aiortc.rtcicetransport.Connection = connection_class(extra)  # type: ignore[misc]
    return extra
