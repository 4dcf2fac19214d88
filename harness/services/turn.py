"""coturn (``turnserver`` 4.6.x) configuration and command-line builder.

The server always runs in the foreground (no ``-o``), without any configuration
file (``-n``), without the telnet CLI, and with its own pidfile, SQLite user DB
and log file inside ``workdir``, so several instances never share state with
each other or with a system-wide coturn.

``stun_only=True`` gives a plain STUN (binding) server: the lab's STUN server.
"""

from __future__ import annotations

import secrets
import socket
import string
import struct
import time
from dataclasses import dataclass
from pathlib import Path

TURNSERVER_BINARY = "turnserver"
DEFAULT_REALM = "callwall"
LOG_NAME = "turnserver.log"
PID_NAME = "turnserver.pid"
DB_NAME = "turndb.sqlite"

CREDENTIAL_ALPHABET = string.ascii_letters + string.digits

STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_MAGIC_COOKIE = 0x2112A442


@dataclass(frozen=True)
class TurnServerConfig:
    """One coturn instance.

    ``port`` carries UDP and TCP; ``tls_port`` (if not None) carries TURN over
    TLS and needs ``cert``/``key``. With ``stun_only`` the instance answers
    STUN binding requests only and must not have a TLS port or credentials.
    """

    listen_ip: str
    relay_ip: str
    workdir: Path
    port: int = 3478
    tls_port: int | None = 443
    realm: str = DEFAULT_REALM
    username: str | None = None
    password: str | None = None
    cert: Path | None = None
    key: Path | None = None
    stun_only: bool = False
    allow_loopback_peers: bool = False
    min_relay_port: int | None = None
    max_relay_port: int | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.stun_only:
            self._check_stun_only()
        else:
            self._check_turn()
        if (self.min_relay_port is None) != (self.max_relay_port is None):
            raise ValueError("min_relay_port and max_relay_port go together")

    def _check_stun_only(self) -> None:
        if self.tls_port is not None:
            raise ValueError("a stun_only server has no TLS port (set tls_port=None)")

    def _check_turn(self) -> None:
        if not self.username or not self.password:
            raise ValueError("a TURN server needs username and password")
        if ":" in self.username:
            raise ValueError("the TURN username must not contain ':'")
        if self.tls_port is not None and (self.cert is None or self.key is None):
            raise ValueError("tls_port needs cert and key")

    @property
    def pidfile(self) -> Path:
        return self.workdir / PID_NAME

    @property
    def db(self) -> Path:
        return self.workdir / DB_NAME

    @property
    def log_file(self) -> Path:
        return self.workdir / LOG_NAME

    @classmethod
    def stun_server(cls, listen_ip: str, workdir: Path, port: int = 3478) -> TurnServerConfig:
        """A STUN-only instance (binding requests on UDP and TCP ``port``)."""
        return cls(
            listen_ip=listen_ip,
            relay_ip=listen_ip,
            workdir=workdir,
            port=port,
            tls_port=None,
            stun_only=True,
        )


def _random_token(length: int) -> str:
    return "".join(secrets.choice(CREDENTIAL_ALPHABET) for _ in range(length))


def generate_credentials() -> tuple[str, str]:
    """Random (username, password) for coturn's long-term credential mechanism.

    Letters and digits only: no ':' (coturn's ``--user user:pass`` separator) and
    no leading '-' (which argparse would take for an option on a command line).
    """
    return "cw" + _random_token(10), _random_token(24)


def _common_args(cfg: TurnServerConfig) -> list[str]:
    args = [
        "-n",
        "--no-cli",
        "--listening-ip", cfg.listen_ip,
        "--listening-port", str(cfg.port),
        "--pidfile", str(cfg.pidfile),
        "--db", str(cfg.db),
        "--log-file", str(cfg.log_file),
        "--simple-log",
        "--no-stdout-log",
        "--no-rfc5780",
        "--no-dtls",
        "--fingerprint",
        "--no-multicast-peers",
    ]
    if cfg.verbose:
        args.append("--verbose")
    return args


def _stun_args() -> list[str]:
    return ["--stun-only", "--no-tls"]


def _turn_args(cfg: TurnServerConfig) -> list[str]:
    args = [
        "--relay-ip", cfg.relay_ip,
        "--lt-cred-mech",
        "--realm", cfg.realm,
        "--user", f"{cfg.username}:{cfg.password}",
    ]
    args += _tls_args(cfg)
    if cfg.allow_loopback_peers:
        args.append("--allow-loopback-peers")
    if cfg.min_relay_port is not None and cfg.max_relay_port is not None:
        args += ["--min-port", str(cfg.min_relay_port), "--max-port", str(cfg.max_relay_port)]
    return args


def _tls_args(cfg: TurnServerConfig) -> list[str]:
    if cfg.tls_port is None:
        return ["--no-tls"]
    return [
        "--tls-listening-port", str(cfg.tls_port),
        "--cert", str(cfg.cert),
        "--pkey", str(cfg.key),
        "--no-tlsv1",
        "--no-tlsv1_1",
    ]


def turnserver_argv(cfg: TurnServerConfig, binary: str = TURNSERVER_BINARY) -> list[str]:
    """The argv list (no shell) that runs *cfg* in the foreground.

    The caller must create ``cfg.workdir`` before starting the process.
    """
    extra = _stun_args() if cfg.stun_only else _turn_args(cfg)
    return [binary, *_common_args(cfg), *extra]


def _binding_request(transaction_id: bytes) -> bytes:
    return struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE) + transaction_id


def _is_binding_success(data: bytes, transaction_id: bytes) -> bool:
    if len(data) < 20:
        return False
    msg_type, _, cookie = struct.unpack("!HHI", data[:8])
    return (
        msg_type == STUN_BINDING_SUCCESS
        and cookie == STUN_MAGIC_COOKIE
        and data[8:20] == transaction_id
    )


def probe_stun(host: str, port: int, timeout: float = 0.5) -> bool:
    """Send one STUN binding request over UDP; True if a success response came back."""
    transaction_id = secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(_binding_request(transaction_id), (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return _is_binding_success(data, transaction_id)


def wait_stun_ready(host: str, port: int, timeout: float = 10.0) -> bool:
    """Poll :func:`probe_stun` until it succeeds or *timeout* seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe_stun(host, port, timeout=0.3):
            return True
        time.sleep(0.1)
    return False


def wait_tcp_ready(host: str, port: int, timeout: float = 10.0) -> bool:
    """Poll a TCP connect to (host, port) until it succeeds or *timeout* passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return True
        except OSError:
            time.sleep(0.1)
    return False
