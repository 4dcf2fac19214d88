"""Signalling and the offer/answer exchange: the caller's and the callee's flows.

Both sides join the room, the callee announces ``{"ready": true}``, and the
caller makes the (non-trickle) offer as soon as it knows that the other side is
in the room (``joined.peers == 2``, ``peer_joined`` or ``ready``).
"""

from __future__ import annotations

from typing import Any

from harness.calls.peer.connection import (
    check_local_candidates,
    create_peer_connection,
    gather,
    open_player,
    prefer_opus,
    set_remote,
)
from harness.calls.peer.state import CallFailed, CallState, within_setup
from harness.services.signalling import SignallingClient, SignallingError


async def connect_signalling(state: CallState) -> SignallingClient:
    ep = state.cfg.signal
    try:
        client = await SignallingClient.connect(ep.host, ep.port, max(state.remaining_setup(), 0.1))
    except SignallingError as exc:
        raise CallFailed("signalling-unreachable", "signalling") from exc
    state.signalling = client
    return client


async def join_room(state: CallState, client: SignallingClient) -> dict[str, Any]:
    try:
        return await within_setup(state, client.join(state.cfg.room, timeout=3600))
    except SignallingError as exc:
        error = "room-full" if "room-full" in str(exc) else "signalling-closed"
        raise CallFailed(error, "signalling") from exc


async def next_message(state: CallState, client: SignallingClient) -> dict[str, Any]:
    try:
        return await within_setup(state, client.recv(timeout=3600))
    except SignallingError as exc:
        raise CallFailed("signalling-closed", "signalling") from exc


async def send_message(state: CallState, client: SignallingClient, obj: dict[str, Any]) -> None:
    try:
        await client.send(obj)
    except SignallingError as exc:
        raise CallFailed("signalling-closed", "signalling") from exc


async def wait_for_peer(state: CallState, client: SignallingClient, joined: dict[str, Any]) -> None:
    """Caller: return once the other side is known to be in the room."""
    if int(joined.get("peers", 1)) >= 2:
        return
    while True:
        msg = await next_message(state, client)
        if msg.get("peer_joined") or msg.get("ready"):
            return


async def wait_for_offer(state: CallState, client: SignallingClient) -> dict[str, Any]:
    """Callee: announce readiness and wait for the caller's offer."""
    await send_message(state, client, {"ready": True})
    while True:
        msg = await next_message(state, client)
        if msg.get("type") == "offer" and isinstance(msg.get("sdp"), str):
            return msg
        if msg.get("peer_joined"):
            await send_message(state, client, {"ready": True})


async def wait_for_answer(state: CallState, client: SignallingClient) -> dict[str, Any]:
    while True:
        msg = await next_message(state, client)
        if msg.get("type") == "answer" and isinstance(msg.get("sdp"), str):
            return msg
        if msg.get("peer_left"):
            raise CallFailed("peer-left", "signalling")


async def caller_flow(state: CallState, client: SignallingClient) -> None:
    joined = await join_room(state, client)
    await wait_for_peer(state, client, joined)
    state.start_attempt()
    track = open_player(state)
    pc = create_peer_connection(state)
    prefer_opus(pc.addTransceiver(track, direction="sendrecv"))
    await gather(state, pc, await pc.createOffer())
    await send_message(state, client, {"type": "offer", "sdp": pc.localDescription.sdp})
    check_local_candidates(state, pc)
    state.stage = "signalling"
    answer = await wait_for_answer(state, client)
    state.stage = "ice"
    await set_remote(state, pc, answer)


async def callee_flow(state: CallState, client: SignallingClient) -> None:
    await join_room(state, client)
    offer = await wait_for_offer(state, client)
    state.start_attempt()
    track = open_player(state)
    pc = create_peer_connection(state)
    await set_remote(state, pc, offer)
    pc.addTrack(track)
    for transceiver in pc.getTransceivers():
        prefer_opus(transceiver)
    await gather(state, pc, await pc.createAnswer())
    state.stage = "ice"
    await send_message(state, client, {"type": "answer", "sdp": pc.localDescription.sdp})
    check_local_candidates(state, pc)
