"""Endpoint descriptors: a user's own call client or tunnel, described in YAML
instead of written as harness code.

A descriptor is a folder with an ``endpoint.yaml`` (beside it: the program's
scripts, a Dockerfile) under ``endpoints/`` (harness.paths.ENDPOINTS), or
under a folder listed in ``CALLWALL_ENDPOINTS``. It declares either a call
client, which becomes a call profile of its own name, or a tunnel, which
becomes a strategy of its own name::

    name: my-phone
    description: one line
    client:
      image: my-phone:latest         # optional: run the argv inside this image
      build: Dockerfile              # optional: how to build it here (in this folder)
      command: [my-phone]            # optional: argv prefix for both sides
      callee: [--listen, "{own_ip}:{own_port}", --out, "{out_dir}"]
      caller: [--call, "{peer_ip}:{peer_port}", --play, "{reference_wav}", --out, "{out_dir}"]
      strategies: [direct]           # what it can be placed with
      tools: [{program: my-phone, package: my-phone}]   # host programs it needs

    name: my-tunnel
    tunnel:
      carries: turn-udp              # the caller's TURN traffic, through local_port
      local_port: 13480
      server: {argv: [...], ready: {port: 8443}}       # in the `vpn` host
      client: {argv: [...], ready: {log: "started"}}   # in the `caller` host
      tools: [{program: my-tunnel, package: my-tunnel}]

Every argv element may hold ``{placeholders}`` (``{{`` and ``}}`` for literal
braces); each is replaced by its value inside that one element, so a value
never becomes a second argument and no shell ever reads it. Which
placeholders each block takes: CLIENT_PLACEHOLDERS, TUNNEL_PLACEHOLDERS.

A client's program writes ``{out_dir}/result.json`` (the contract:
:func:`parse_result`); the harness reads it into the side's report, and a
missing or invalid one is an error, never a pass.

This module also gives the vocabulary with descriptors included (profiles(),
strategies(), unplaceable_any()): harness.spec.names holds the built-in
profiles and strategies only.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import paths
from harness.spec.names import (
    ALL_STRATEGIES,
    ICE_STRATEGIES,
    PROFILES,
    TUNNEL_STRATEGIES,
    unplaceable,
)
from harness.spec.schema import (
    Located,
    SpecError,
    check_name,
    load_yaml_node,
    locate,
    parse_dataclass,
    shorten,
)

DESCRIPTOR_FILE = "endpoint.yaml"
ENV_ENDPOINTS = "CALLWALL_ENDPOINTS"
MAX_ARGV = 64
MAX_ARG_CHARS = 4096
MAX_DESCRIPTORS = 64
# A Docker image reference: [registry/]name[:tag], lower-case path parts.
IMAGE_PATTERN = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?")
PROGRAM_PATTERN = re.compile(r"[A-Za-z0-9._+-]{1,64}")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

# What a client's argv may use. Addresses are the lab's; for the caller inside
# a tunnel, the TURN values are the tunnel's local end.
CLIENT_PLACEHOLDERS: dict[str, str] = {
    "role": "caller or callee",
    "strategy": "the strategy the call is placed with (direct, turn-udp, ...)",
    "own_ip": "this side's address in the lab",
    "own_port": "the descriptor's port: where this side listens",
    "peer_ip": "the other side's address in the lab",
    "peer_port": "the descriptor's port on the other side",
    "stun_url": "stun:IP:PORT of the lab's STUN server",
    "turn_url": "turn:IP:PORT of the lab's TURN relay (UDP and TCP)",
    "turn_host": "the TURN relay's address",
    "turn_port": "the TURN relay's port",
    "turn_user": "the run's TURN user name",
    "turn_password": "the run's TURN password",
    "ca_file": "the run's CA certificate (PEM), which signed the relay's TLS certificate",
    "signalling": "IP:PORT of the lab's signalling server (newline-delimited JSON rooms)",
    "signalling_ip": "the signalling server's address",
    "signalling_port": "the signalling server's port",
    "room": "a signalling room name unique to this call",
    "reference_wav": "the speech both sides send (WAV)",
    "out_dir": "this side's own folder: the program writes result.json (and its WAV) here",
    "media_s": "seconds of media the call should carry",
    "setup_timeout_s": "seconds the call may take to set up",
    "descriptor_dir": "the descriptor's folder (its scripts)",
}
TUNNEL_PLACEHOLDERS: dict[str, str] = {
    "server_ip": "the vpn host's address (where the server side runs)",
    "relay_ip": "the TURN relay's address",
    "turn_port": "the TURN relay's port",
    "local_port": "the descriptor's local_port, on the caller's loopback",
    "local_ip": "the caller's loopback address the tunnel listens on (127.0.0.1)",
    "work_dir": "a private folder for this tunnel's files (keys, configs, logs)",
    "cert_file": "a TLS certificate for the server's address, signed by the run's CA",
    "key_file": "its private key",
    "ca_file": "the run's CA certificate",
    "secret": "a random password for this tunnel (URL-safe)",
    "uuid": "a random UUID for this tunnel",
    "descriptor_dir": "the descriptor's folder (its scripts)",
}


class DescriptorError(ValueError):
    """A descriptor's placeholder could not be filled (a value is missing)."""


# ------------------------------------------------------------------ schema

def check_argv(argv: list[str]) -> None:
    if not argv:
        raise ValueError("an argv needs at least one element")
    if len(argv) > MAX_ARGV:
        raise ValueError(f"{len(argv)} elements; at most {MAX_ARGV}")
    for arg in argv:
        if len(arg) > MAX_ARG_CHARS or "\x00" in arg:
            raise ValueError(f"{shorten(repr(arg))} is not a usable argument")


def _check_optional_argv(argv: list[str]) -> None:
    if argv:
        check_argv(argv)


def check_image(value: str) -> None:
    if len(value) > 200 or not IMAGE_PATTERN.fullmatch(value):
        raise ValueError(f"{shorten(repr(value))} is not an image name like name:tag "
                         "(lower-case letters, digits, '.', '_', '-', '/')")


def _check_relative_file(value: str) -> None:
    if not value or value.startswith("/") or ".." in Path(value).parts or "\x00" in value:
        raise ValueError(f"{shorten(repr(value))} must be a file inside the descriptor's folder")


def _check_port(value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port (1-65535)")


def _check_program(value: str) -> None:
    if not PROGRAM_PATTERN.fullmatch(value):
        raise ValueError(f"{shorten(repr(value))} is not a program or package name")


@dataclass(frozen=True)
class Tool:
    """A program the descriptor runs on this machine, and the Debian package
    that has it (the matrix skips its cells where it is missing, and says so)."""

    program: str = field(metadata={"check": _check_program})
    package: str = field(metadata={"check": _check_program})


@dataclass(frozen=True)
class ClientSpec:
    caller: list[str] = field(metadata={"check": check_argv})
    callee: list[str] = field(metadata={"check": check_argv})
    strategies: list[str]
    image: str | None = field(default=None, metadata={"check": check_image})
    build: str | None = field(default=None, metadata={"check": _check_relative_file})
    command: list[str] = field(default_factory=list, metadata={"check": _check_optional_argv})
    port: int = field(default=5060, metadata={"check": _check_port})
    # The image's idle process, which holds the container while the call runs.
    idle: list[str] = field(default_factory=lambda: ["sleep", "infinity"],
                            metadata={"check": check_argv})
    tools: list[Tool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.build is not None and self.image is None:
            raise ValueError("build goes with image: the image it builds")
        if self.image is None and not self.command and not self.tools:
            raise ValueError("a client without image needs command (or tools) naming the "
                             "program on this machine")

    def argv(self, role: str) -> list[str]:
        """The unfilled argv of `role`: command, then the role's own."""
        return [*self.command, *(self.caller if role == "caller" else self.callee)]


@dataclass(frozen=True)
class Readiness:
    """When a tunnel side is up: a listening port (TCP or UDP, in its host) or
    a line in its log."""

    port: int | None = field(default=None, metadata={"check": _check_port})
    proto: Literal["tcp", "udp"] = "tcp"
    log: str | None = None
    timeout_s: float = 15.0

    def __post_init__(self) -> None:
        if (self.port is None) == (self.log is None):
            raise ValueError("give exactly one of port and log")
        if self.log is not None and not 0 < len(self.log) <= 200:
            raise ValueError("log: the text to wait for, at most 200 characters")
        if not 0 < self.timeout_s <= 120:
            raise ValueError("timeout_s must lie in (0, 120]")


@dataclass(frozen=True)
class TunnelSide:
    argv: list[str] = field(metadata={"check": check_argv})
    ready: Readiness
    stop: list[str] = field(default_factory=list, metadata={"check": _check_optional_argv})


@dataclass(frozen=True)
class TunnelSpec:
    """``carries``: what the tunnel takes to the far side. ``turn-udp`` and
    ``turn-tcp``: the caller's side listens on ``local_port`` (127.0.0.1) and
    forwards what arrives there to the lab's TURN relay, UDP and TCP, as
    shadowsocks' ss-tunnel does; the call's caller then uses that TURN
    strategy with the relay's address replaced by the local port."""

    carries: Literal["turn-udp", "turn-tcp"]
    local_port: int = field(metadata={"check": _check_port})
    server: TunnelSide
    client: TunnelSide
    tools: list[Tool] = field(default_factory=list)


@dataclass(frozen=True)
class DescriptorSpec:
    """What endpoint.yaml holds."""

    name: str = field(metadata={"check": check_name})
    description: str
    client: ClientSpec | None = None
    tunnel: TunnelSpec | None = None

    def __post_init__(self) -> None:
        if (self.client is None) == (self.tunnel is None):
            raise ValueError("a descriptor declares exactly one of client and tunnel")


@dataclass(frozen=True)
class Descriptor:
    """A loaded descriptor: its spec, the folder it lives in and its file."""

    spec: DescriptorSpec
    directory: Path
    source: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def client(self) -> ClientSpec | None:
        return self.spec.client

    @property
    def tunnel(self) -> TunnelSpec | None:
        return self.spec.tunnel

    @property
    def tools(self) -> list[Tool]:
        spec = self.client if self.client is not None else self.tunnel
        assert spec is not None
        return list(spec.tools)

    def summary(self) -> str:
        what = "client" if self.client is not None else "tunnel"
        where = f" (image {self.client.image})" if self.client and self.client.image else ""
        return f"{what} descriptor{where}: {self.description}"


# ------------------------------------------------------------------ placeholders

def placeholders_in(arg: str) -> list[str]:
    """The placeholder names in one argv element; ValueError for a stray brace."""
    return [text for kind, text in _split(arg) if kind == "name"]


def substitute(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """`argv` with every ``{name}`` replaced by its value, element by element
    (``{{``/``}}`` are literal braces). DescriptorError names a placeholder
    that has no value."""
    out: list[str] = []
    for arg in argv:
        parts: list[str] = []
        for kind, text in _split(arg):
            if kind == "text":
                parts.append(text)
            elif text in values:
                parts.append(str(values[text]))
            else:
                raise DescriptorError(f"no value for {{{text}}} in {arg!r}")
        out.append("".join(parts))
    return out


def _split(arg: str) -> list[tuple[str, str]]:
    """("text", literal) and ("name", placeholder) pieces of one element."""
    pieces: list[tuple[str, str]] = []
    index, literal = 0, []
    while index < len(arg):
        char = arg[index]
        if char == "{" and arg.startswith("{{", index):
            literal.append("{")
            index += 2
        elif char == "}" and arg.startswith("}}", index):
            literal.append("}")
            index += 2
        elif char == "{":
            end = arg.find("}", index)
            if end < 0:
                raise ValueError(f"an unclosed '{{' in {shorten(repr(arg))} (write {{{{ for a "
                                 "literal brace)")
            name = arg[index + 1:end]
            if not re.fullmatch(r"[a-z_]{1,40}", name):
                raise ValueError(f"{{{shorten(name, 30)}}} in {shorten(repr(arg))} is not a "
                                 "placeholder (write {{ and }} for literal braces)")
            if literal:
                pieces.append(("text", "".join(literal)))
                literal = []
            pieces.append(("name", name))
            index = end + 1
        elif char == "}":
            raise ValueError(f"a stray '}}' in {shorten(repr(arg))} (write }}}} for a literal "
                             "brace)")
        else:
            literal.append(char)
            index += 1
    if literal:
        pieces.append(("text", "".join(literal)))
    return pieces


# ------------------------------------------------------------------ loading

def load_descriptor(path: Path) -> Descriptor:
    """Read and check one endpoint.yaml; SpecError (file:line: field) if bad."""
    loc = load_yaml_node(path)
    descriptor = Descriptor(parse_dataclass(loc, DescriptorSpec), path.parent.resolve(),
                            str(path))
    validate_descriptor(descriptor, loc)
    return descriptor


def validate_descriptor(descriptor: Descriptor, loc: Located) -> None:
    """Checks across fields; each points at its line."""
    if descriptor.name in PROFILES or descriptor.name in ALL_STRATEGIES:
        raise locate(loc, "name").error(
            f"{descriptor.name!r} is a built-in profile or strategy; choose another name")
    if descriptor.client is not None:
        _check_client(descriptor, descriptor.client, locate(loc, "client"))
    if descriptor.tunnel is not None:
        _check_tunnel(descriptor.tunnel, locate(loc, "tunnel"))


def _check_client(descriptor: Descriptor, client: ClientSpec, loc: Located) -> None:
    for key in ("caller", "callee", "command"):
        _check_placeholders(getattr(client, key), CLIENT_PLACEHOLDERS, locate(loc, key))
    if not client.strategies:
        raise locate(loc, "strategies").error("list at least one strategy")
    for index, strategy in enumerate(client.strategies):
        where = locate(loc, "strategies", index)
        if strategy in ICE_STRATEGIES:
            continue
        if strategy in TUNNEL_STRATEGIES:
            raise where.error(f"{strategy!r} is a tunnel: a descriptor client goes through "
                              "descriptor tunnels (their carries: strategy) only")
        raise where.error(f"{shorten(repr(strategy))} is not an ICE strategy "
                          f"({', '.join(ICE_STRATEGIES)})")
    if client.build is not None and not (descriptor.directory / client.build).is_file():
        raise locate(loc, "build").error(
            f"no file {client.build} in {descriptor.directory}")


def _check_tunnel(tunnel: TunnelSpec, loc: Located) -> None:
    for side in ("server", "client"):
        spec: TunnelSide = getattr(tunnel, side)
        for key in ("argv", "stop"):
            _check_placeholders(getattr(spec, key), TUNNEL_PLACEHOLDERS,
                                locate(loc, side, key))


def _check_placeholders(argv: Sequence[str], known: Mapping[str, str], loc: Located) -> None:
    for index, arg in enumerate(argv):
        where = locate(loc, index)
        try:
            names = placeholders_in(arg)
        except ValueError as exc:
            raise where.error(str(exc)) from None
        for name in names:
            if name not in known:
                raise where.error(f"unknown placeholder {{{name}}}; known: "
                                  f"{', '.join('{' + k + '}' for k in known)}")


# ------------------------------------------------------------------ the set

def descriptor_dirs() -> list[Path]:
    """Where descriptors are looked for: endpoints/ beside the specs, then each
    folder in CALLWALL_ENDPOINTS (os.pathsep-separated)."""
    dirs = [paths.ENDPOINTS]
    extra = os.environ.get(ENV_ENDPOINTS, "")
    dirs += [Path(part) for part in extra.split(os.pathsep) if part]
    return dirs


def descriptor_files(dirs: Sequence[Path] | None = None) -> list[Path]:
    """Every <dir>/<folder>/endpoint.yaml, sorted by folder within each dir."""
    found: list[Path] = []
    for directory in descriptor_dirs() if dirs is None else dirs:
        if directory.is_dir():
            found += sorted(p for p in directory.glob(f"*/{DESCRIPTOR_FILE}") if p.is_file())
    return found


@dataclass(frozen=True)
class DescriptorSet:
    """The descriptors found, by name; the files that failed to load, by path."""

    clients: Mapping[str, Descriptor]
    tunnels: Mapping[str, Descriptor]
    broken: Mapping[str, SpecError]

    def get(self, name: str) -> Descriptor | None:
        return self.clients.get(name) or self.tunnels.get(name)

    def broken_note(self) -> str:
        if not self.broken:
            return ""
        return " (descriptors that did not load: " + "; ".join(
            str(error) for error in self.broken.values()) + ")"


def load_descriptor_set(files: Sequence[Path]) -> DescriptorSet:
    clients: dict[str, Descriptor] = {}
    tunnels: dict[str, Descriptor] = {}
    broken: dict[str, SpecError] = {}
    for path in files[:MAX_DESCRIPTORS]:
        try:
            descriptor = load_descriptor(path)
        except SpecError as exc:
            broken[str(path)] = exc
            continue
        other = clients.get(descriptor.name) or tunnels.get(descriptor.name)
        if other is not None:
            broken[str(path)] = SpecError(str(path), None, "name",
                                          f"{descriptor.name!r} is also the name of "
                                          f"{other.source}")
            continue
        (clients if descriptor.client is not None else tunnels)[descriptor.name] = descriptor
    return DescriptorSet(clients, tunnels, broken)


def descriptors() -> DescriptorSet:
    """The descriptors of descriptor_dirs(), read again only when a file
    appeared, went or changed."""
    key = []
    for path in descriptor_files():
        try:
            key.append((path, path.stat().st_mtime_ns))
        except OSError:
            continue
    return _cached(tuple(key))


@functools.lru_cache(maxsize=8)
def _cached(files: tuple[tuple[Path, int], ...]) -> DescriptorSet:
    return load_descriptor_set([path for path, _ in files])


def descriptor(name: str) -> Descriptor:
    """The descriptor called `name`; KeyError says which exist."""
    found = descriptors()
    result = found.get(name)
    if result is None:
        known = ", ".join([*found.clients, *found.tunnels]) or "none"
        raise KeyError(f"no endpoint descriptor {name!r} (known: {known}){found.broken_note()}")
    return result


# ------------------------------------------------------------------ vocabulary

def profiles() -> tuple[str, ...]:
    """Every call profile: the built-in ones, then the client descriptors."""
    return (*PROFILES, *descriptors().clients)


def strategies() -> tuple[str, ...]:
    """Every strategy: the built-in ones, then the tunnel descriptors."""
    return (*ALL_STRATEGIES, *descriptors().tunnels)


def tunnel_strategies() -> tuple[str, ...]:
    return (*TUNNEL_STRATEGIES, *descriptors().tunnels)


def carried_strategy(strategy: str) -> str | None:
    """The ICE strategy a descriptor tunnel carries, or None for another strategy."""
    tunnel = descriptors().tunnels.get(strategy)
    return tunnel.tunnel.carries if tunnel is not None and tunnel.tunnel else None


def unplaceable_any(profile: str, strategy: str) -> str | None:
    """Why `profile` cannot be placed with `strategy`, descriptors included, or
    None if it can. A descriptor tunnel carries a TURN strategy: the webrtc
    profile and every client descriptor that takes that strategy can use it."""
    found = descriptors()
    client = found.clients.get(profile)
    if profile not in PROFILES and client is None:
        return (f"unknown profile {profile!r}; profiles are: {', '.join(profiles())}"
                f"{found.broken_note()}")
    if strategy not in ALL_STRATEGIES and strategy not in found.tunnels:
        return (f"unknown strategy {strategy!r}; strategies are: {', '.join(strategies())}"
                f"{found.broken_note()}")
    carried = carried_strategy(strategy)
    if client is not None:
        assert client.client is not None
        wanted = carried if carried is not None else strategy
        if wanted not in client.client.strategies:
            via = f" (it carries {carried})" if carried is not None else ""
            return (f"profile {profile} cannot be placed with {strategy!r}{via}; it takes: "
                    f"{', '.join(client.client.strategies)}")
        return None
    if carried is not None:
        return unplaceable(profile, carried)
    return unplaceable(profile, strategy)


def profile_description(name: str) -> str:
    found = descriptors().clients.get(name)
    return found.summary() if found is not None else ""


def strategy_description(name: str) -> str:
    found = descriptors().tunnels.get(name)
    if found is None or found.tunnel is None:
        return ""
    return f"tunnel (descriptor, carries {found.tunnel.carries}): {found.description}"


# ------------------------------------------------------------------ the result contract

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class EndpointResult:
    """What a descriptor client's program wrote to {out_dir}/result.json:

    - ``connected`` (true/false): the call carried media both ways for it;
    - ``setup_s`` (number, or null when not connected): from its start to media;
    - ``packets_sent``, ``packets_received``, ``packets_lost`` (integers >= 0):
      its audio RTP packets;
    - ``received_wav`` (a file in out_dir, or null): the audio it received.

    Optional: ``error`` (why it failed: a short code such as setup-timeout,
    which policies' ``accepts:`` name), ``detail`` (one line more),
    ``codec`` (opus or g711), ``jitter_ms`` and ``rtt_ms`` (for the
    E-model), ``frame_ms`` (its audio frame) with ``frames_received`` (the
    frames it got in the media window), ``media_seconds`` (how much of the
    window it covered) and ``path`` (which path the media took)."""

    connected: bool
    setup_s: float | None
    packets_sent: int
    packets_received: int
    packets_lost: int
    received_wav: str | None
    error: str | None = None
    detail: str | None = None
    codec: str | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    frame_ms: float | None = None
    media_seconds: float | None = None
    frames_received: int | None = None
    path: str | None = None

    @property
    def loss_pct(self) -> float | None:
        expected = self.packets_received + self.packets_lost
        return round(100.0 * self.packets_lost / expected, 3) if expected > 0 else None


_RESULT_INTS = ("packets_sent", "packets_received", "packets_lost")
_RESULT_OPTIONAL_NUMBERS = ("jitter_ms", "rtt_ms", "frame_ms", "media_seconds")
_RESULT_OPTIONAL_TEXTS = ("error", "detail", "codec", "path")
RESULT_CODECS = ("opus", "g711")


def parse_result(raw: Any) -> EndpointResult:
    """The result contract, checked; ValueError names the first field that
    breaks it (the side's report then says so, and the call is an error)."""
    if not isinstance(raw, dict):
        raise ValueError("result.json must hold a JSON object")
    missing = [key for key in ("connected", "setup_s", *_RESULT_INTS, "received_wav")
               if key not in raw]
    if missing:
        raise ValueError(f"result.json lacks {', '.join(missing)}")
    connected = raw["connected"]
    if not isinstance(connected, bool):
        raise ValueError("connected must be true or false")
    setup_s = _number_or_none(raw, "setup_s")
    if connected and setup_s is None:
        raise ValueError("setup_s must be a number when connected")
    for key in _RESULT_INTS:
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be an integer >= 0")
    wav = raw["received_wav"]
    if wav is not None and (not isinstance(wav, str) or not wav or "\x00" in wav):
        raise ValueError("received_wav must be a file name or null")
    optional: dict[str, Any] = {key: _number_or_none(raw, key)
                                for key in _RESULT_OPTIONAL_NUMBERS}
    for key in _RESULT_OPTIONAL_TEXTS:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        optional[key] = value[:200] if isinstance(value, str) and value else None
    frames = raw.get("frames_received")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int)
                               or frames < 0):
        raise ValueError("frames_received must be an integer >= 0 (or null)")
    optional["frames_received"] = frames
    if optional["codec"] is not None and optional["codec"] not in RESULT_CODECS:
        raise ValueError(f"codec must be one of {', '.join(RESULT_CODECS)}")
    return EndpointResult(connected=connected, setup_s=setup_s, received_wav=wav,
                          packets_sent=raw["packets_sent"],
                          packets_received=raw["packets_received"],
                          packets_lost=raw["packets_lost"], **optional)


def _number_or_none(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{key} must be a number >= 0 (or null)")
    return float(value)
