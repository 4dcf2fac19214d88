"""The app-like client process: ``python -m harness.calls.app.run --profile
whatsapp-like|telegram-like|max-like --role caller|callee --call-id ID
--relay HOST --audio ref.wav --out result.json [--record rx.wav] [--events
ev.jsonl] [--signal HOST:PORT ...] [--stun HOST:PORT] [--resolver IP]
[--name NAME=IP ...] [--text-messages N] [--no-p2p] [--media-seconds S]
[--setup-timeout S] [--stall-timeout S] [--linger S]``.

HOST is an address or a name: names are resolved through ``--resolver`` or
taken from ``--name`` (harness.calls.app.resolve). ``--signal`` is the app's
chat server; given more than once, its endpoints are tried in order.

The result JSON is always written (see harness.calls.app.client); the exit status
is 0 when the call worked or failed for a network reason, 1 when the result
says ``internal-error: ...`` (a bug), 2 for bad arguments."""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from pathlib import Path
from typing import Any

from harness.calls.app.client import ClientConfig, Transport, run_until_terminated, write_result
from harness.calls.app.opus import OpusSettings
from harness.calls.app.resolve import is_address
from harness.netns.endpoint import Endpoint

APP_PROFILES = ("whatsapp-like", "telegram-like", "max-like")


def parse_args(argv: list[str] | None) -> ClientConfig:
    p = argparse.ArgumentParser(prog="harness.calls.app.run", description="app-like call client")
    p.add_argument("--profile", required=True, choices=APP_PROFILES)
    p.add_argument("--role", required=True, choices=("caller", "callee"))
    p.add_argument("--call-id", required=True)
    p.add_argument("--relay", required=True, help="the app's relay/reflector (address or name)")
    p.add_argument("--audio", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--record", type=Path)
    p.add_argument("--events", type=Path)
    p.add_argument("--signal", action="append", default=[],
                   help="the app's chat server HOST:PORT (repeat: tried in order)")
    p.add_argument("--stun", help="STUN server HOST:PORT (telegram-like P2P)")
    p.add_argument("--resolver", help="the resolver's IP address, for names")
    p.add_argument("--name", action="append", default=[], metavar="NAME=IP",
                   help="a name's address, given (repeat)")
    p.add_argument("--text-messages", type=int, default=0,
                   help="text messages each side sends over the chat server")
    p.add_argument("--no-p2p", action="store_true")
    p.add_argument("--media-seconds", type=float, default=6.0)
    p.add_argument("--setup-timeout", type=float, default=15.0)
    p.add_argument("--stall-timeout", type=float, default=3.0)
    p.add_argument("--linger", type=float, default=2.0)
    a = p.parse_args(argv)
    try:
        chat = tuple(Endpoint.parse(text).as_tuple() for text in a.signal)
        stun = _endpoint(a.stun)
        names = tuple(_name(text) for text in a.name)
    except ValueError as exc:
        p.error(str(exc))
    if not 0 <= a.text_messages <= 1000:
        p.error("--text-messages must be between 0 and 1000")
    return ClientConfig(role=a.role, profile=a.profile, call_id=a.call_id, relay_ip=a.relay,
                        audio=a.audio, out=a.out, media_seconds=a.media_seconds,
                        setup_timeout=a.setup_timeout, stall_timeout=a.stall_timeout,
                        linger=a.linger, record=a.record, events=a.events,
                        signal=chat[0] if chat else None, stun=stun, p2p=not a.no_p2p,
                        signal_endpoints=chat, resolver=a.resolver, names=names,
                        text_messages=a.text_messages)


def _name(text: str) -> tuple[str, str]:
    name, sep, address = text.partition("=")
    if not sep or not name or not is_address(address):
        raise ValueError(f"expected NAME=IPv4, got {text!r}")
    return name, address


def _endpoint(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    endpoint = Endpoint.parse(text)
    return endpoint.host, endpoint.port


def profile_transport(profile: str) -> tuple[Transport, OpusSettings, int]:
    if profile == "whatsapp-like":
        from harness.calls.app import whatsapp_client as wa
        return wa.WhatsAppTransport(), wa.OPUS, wa.RTP_CLOCK
    if profile == "max-like":
        from harness.calls.app import max_client
        return max_client.MaxTransport(), max_client.OPUS, max_client.RTP_CLOCK
    from harness.calls.app import telegram_client as tg
    return tg.TelegramTransport(), tg.OPUS_NORMAL, tg.RTP_CLOCK


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        transport, opus, clock = profile_transport(cfg.profile)
        result = asyncio.run(run_until_terminated(cfg, transport, opus, clock))
        status = 0
    except Exception as exc:  # a bug must still leave a result behind
        traceback.print_exc(file=sys.stderr)
        result = _internal_error(cfg, exc)
        status = 1
    write_result(cfg.out, result)
    return status


def _internal_error(cfg: ClientConfig, exc: Exception) -> dict[str, Any]:
    return {"role": cfg.role, "strategy": "direct", "profile": cfg.profile,
            "room": cfg.call_id, "connected": False,
            "error": f"internal-error: {type(exc).__name__}: {exc}"[:200],
            "failure_stage": "process", "path": None, "path_changes": [], "timeline": []}


if __name__ == "__main__":
    raise SystemExit(main())
