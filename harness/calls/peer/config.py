"""The peer's command line (:class:`PeerConfig`) and its process-wide environment."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aioice.ice
import av

from harness.calls.strategies import (
    PEER_STRATEGIES,
    Endpoint,
    TurnCredentials,
    TurnServer,
    uses_relay,
)

ROLES = ("caller", "callee")
TOTAL_MARGIN_S = 10.0
STALL_TIMEOUT_S = 3.0
# argparse names the program after sys.argv[0]; under ``python -m`` that is now the
# package's __main__.py: keep the name the single-module entry point had.
_LEGACY_PROG = "peer.py"


@dataclass(frozen=True)
class PeerConfig:
    role: str
    signal: Endpoint
    room: str
    strategy: str
    stun: Endpoint | None
    turn: TurnServer | None
    credentials: TurnCredentials | None
    audio: Path
    media_seconds: float
    setup_timeout: float
    total_timeout: float
    linger: float
    out: Path
    record: Path | None
    host_ips: tuple[str, ...]
    ca_file: Path | None
    stall_timeout: float = 3.0
    events: Path | None = None


def _prog() -> str | None:
    return _LEGACY_PROG if Path(sys.argv[0]).name == "__main__.py" else None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=_prog(), description="callwall call endpoint")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--signal", required=True, help="signalling server IP:PORT")
    p.add_argument("--room", required=True)
    p.add_argument("--strategy", required=True, choices=PEER_STRATEGIES)
    p.add_argument("--stun", help="STUN server IP:PORT (used by 'direct')")
    p.add_argument("--turn", help="TURN server IP (used by the turn-* strategies)")
    p.add_argument("--turn-port", type=int, default=3478, help="TURN UDP/TCP port")
    p.add_argument("--turns-port", type=int, default=443, help="TURN TLS port")
    p.add_argument("--turn-user")
    p.add_argument("--turn-pass")
    p.add_argument("--audio", required=True, type=Path, help="reference WAV to send")
    p.add_argument("--media-seconds", type=float, default=8.0)
    p.add_argument("--setup-timeout", type=float, default=20.0)
    p.add_argument("--total-timeout", type=float, default=None)
    p.add_argument("--linger", type=float, default=2.0,
                   help="keep the call up this long after the media window")
    p.add_argument("--out", required=True, type=Path, help="result JSON path")
    p.add_argument("--record", type=Path, help="write the received audio to this WAV")
    p.add_argument("--host-ip", action="append", default=[],
                   help="restrict host candidates to this address (repeatable)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for turns: (sets SSL_CERT_FILE)")
    p.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT_S,
                   help="fail the call (media-stalled) when no audio frame is decoded for "
                        "this long during the media window")
    p.add_argument("--events", type=Path,
                   help="append progress events (JSON lines, monotonic clock) to this file")
    p.add_argument("--log-level", default="WARNING")
    return p


def _turn_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[TurnServer | None, TurnCredentials | None]:
    if not uses_relay(args.strategy):
        return None, None
    if not args.turn or not args.turn_user or not args.turn_pass:
        parser.error(f"--strategy {args.strategy} needs --turn, --turn-user and --turn-pass")
    server = TurnServer(args.turn, args.turn_port, args.turns_port)
    return server, TurnCredentials(args.turn_user, args.turn_pass)


def _check_numbers(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.media_seconds <= 0 or args.setup_timeout <= 0 or args.linger < 0:
        parser.error("--media-seconds and --setup-timeout must be > 0, --linger >= 0")
    if args.stall_timeout <= 0:
        parser.error("--stall-timeout must be > 0")
    if not _has_audio(args.audio):
        parser.error(f"--audio {args.audio} is not a readable audio file")
    if args.ca_file is not None and not args.ca_file.is_file():
        parser.error(f"--ca-file {args.ca_file} is not a file")


def _has_audio(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (OSError, av.FFmpegError):
        return False


def parse_config(argv: Sequence[str] | None = None) -> PeerConfig:
    """Parse the command line; exits with status 2 on bad arguments."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _check_numbers(args, parser)
    try:
        signal_ep = Endpoint.parse(args.signal)
        stun = Endpoint.parse(args.stun) if args.stun else None
    except ValueError as exc:
        parser.error(str(exc))
    turn, credentials = _turn_settings(args, parser)
    total = args.total_timeout
    if total is None:
        total = args.setup_timeout + args.media_seconds + args.linger + TOTAL_MARGIN_S
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    return PeerConfig(
        role=args.role, signal=signal_ep, room=args.room, strategy=args.strategy,
        stun=stun, turn=turn, credentials=credentials, audio=args.audio,
        media_seconds=args.media_seconds, setup_timeout=args.setup_timeout,
        total_timeout=total, linger=args.linger, out=args.out, record=args.record,
        host_ips=tuple(args.host_ip), ca_file=args.ca_file,
        stall_timeout=args.stall_timeout, events=args.events,
    )


def apply_environment(cfg: PeerConfig) -> None:
    """Process-wide settings: trusted CA for turns:, host candidate addresses."""
    if cfg.ca_file is not None:
        os.environ["SSL_CERT_FILE"] = str(cfg.ca_file)
    if cfg.host_ips:
        addresses = list(cfg.host_ips)

        def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return list(addresses)

        aioice.ice.get_host_addresses = host_addresses
