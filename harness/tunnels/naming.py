"""Names of tunnel interfaces: unique per run and per tunnel, at most 15 characters.

Mininet hosts share one mount namespace, so wireguard-go's control sockets
(/var/run/wireguard/<interface>.sock) of two labs, or of two tunnels in one
lab, collide unless every tunnel interface has a name of its own. The name
starts with the run id (unique across labs), then one letter for the tool,
then a counter (unique within the run), then `s` or `c` for the server and
the client end: both ends of one tunnel live in one lab, so they need
distinct control sockets too.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

IFNAMSIZ_MAX = 15  # Linux interface names: 16 bytes including the final NUL.
KIND_LETTERS: dict[str, str] = {
    "wireguard": "w",
    "junk-obfuscation": "j",
    "split-route": "s",
    "openvpn-udp": "u",
    "openvpn-tcp": "t",
    "shadowsocks": "x",
}
SIDES: dict[str, str] = {"server": "s", "client": "c"}
_COUNTER = itertools.count()


def interface_name(run_id: str, strategy: str, serial: int, side: str) -> str:
    """`<run id><kind letter><serial><side letter>`; a run id too long to fit
    is replaced by a hash of it, so the name still depends on the run alone."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    try:
        letter = KIND_LETTERS[strategy]
    except KeyError:
        raise ValueError(f"no tunnel kind {strategy!r}; kinds are: "
                         f"{', '.join(KIND_LETTERS)}") from None
    if serial < 0:
        raise ValueError(f"serial must be >= 0, got {serial}")
    suffix = f"{letter}{serial}{SIDES[side]}"
    if len(suffix) > 8:
        raise ValueError(f"serial {serial} is too large for an interface name")
    prefix = run_id
    if not prefix.isalnum() or len(prefix) + len(suffix) > IFNAMSIZ_MAX:
        prefix = "t" + hashlib.sha256(run_id.encode()).hexdigest()[:IFNAMSIZ_MAX - 1 - len(suffix)]
    return prefix + suffix


@dataclass(frozen=True)
class TunnelNames:
    """A tunnel's label (it names what it owns) and its two interfaces."""

    label: str
    server: str
    client: str


def next_tunnel_names(run_id: str, strategy: str, taken: Callable[[str], bool]) -> TunnelNames:
    """The first serial of this run and kind whose two names `taken` says are free."""
    for _ in range(1000):
        serial = next(_COUNTER)
        server, client = (interface_name(run_id, strategy, serial, side) for side in SIDES)
        if not taken(server) and not taken(client):
            return TunnelNames(server[:-1], server, client)
    raise RuntimeError(f"no free tunnel interface names for run {run_id}")
