"""Circumvention strategies that run real tunnel tools in the lab.

Every strategy is one class behind the `Tunnel` interface (harness.tunnels.base):
`up()` starts the server side in the `vpn` host and the client side in the
`caller` host and sets the routes; `down()` removes exactly what `up` made.
`open_tunnel` is the only way the harness uses them: the tunnel is removed
when the block ends, whatever happened inside it (and `up` failing half-way
too). A tunnel carries a call placed with an ordinary ICE strategy
(`inner_strategy`), the caller's peer using `tunnel.endpoints`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from harness.spec.descriptor import carried_strategy, descriptors, tunnel_strategies
from harness.spec.names import TUNNEL_STRATEGIES
from harness.tunnels.base import Tunnel, TunnelError

if TYPE_CHECKING:
    from harness.testbed import Lab


# Which ICE strategy the call uses inside each tunnel. A full tunnel carries a
# `direct` call (its server-reflexive address becomes the VPN exit's);
# shadowsocks carries the TURN-UDP allocation in its UDP relay; split-route
# tunnels only the relay and STUN sets, so the call must use the relay.
INNER_STRATEGIES: dict[str, str] = {
    "wireguard": "direct",
    "openvpn-udp": "direct",
    "openvpn-tcp": "direct",
    "junk-obfuscation": "direct",
    "shadowsocks": "turn-udp",
    "split-route": "turn-udp",
    # decoy changes no address: the webrtc call goes to the relay over UDP,
    # the flow whose STUN Allocate the censor looks for.
    "decoy": "turn-udp",
}

# The programs each tunnel runs, with the Debian package that has them.
_WIREGUARD = (("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools"))
TOOLS: dict[str, tuple[tuple[str, str], ...]] = {
    "wireguard": _WIREGUARD,
    "split-route": _WIREGUARD,
    "junk-obfuscation": _WIREGUARD,
    "openvpn-udp": (("openvpn", "openvpn"),),
    "openvpn-tcp": (("openvpn", "openvpn"),),
    "shadowsocks": (("ss-server", "shadowsocks-libev"), ("ss-tunnel", "shadowsocks-libev")),
    "decoy": (("iptables", "iptables"), ("nft", "nftables")),
}

__all__ = ["TOOLS", "TUNNEL_STRATEGIES", "Tunnel", "TunnelError", "inner_strategy",
           "make_tunnel", "missing_tools", "open_tunnel"]


def missing_tools(strategy: str) -> list[str]:
    """The programs `strategy` needs that this machine lacks, each as
    'program (Debian package P)'; empty for a strategy that is no tunnel.
    A tunnel descriptor's programs are its `tools:`."""
    found = descriptors().tunnels.get(strategy)
    needs = TOOLS.get(strategy, ()) if found is None else tuple(
        (tool.program, tool.package) for tool in found.tools)
    return [f"{binary} (Debian package {package})" for binary, package in needs
            if shutil.which(binary) is None]


def inner_strategy(strategy: str) -> str:
    """The ICE strategy a call uses inside `strategy`'s tunnel; a strategy that
    is no tunnel is its own. A tunnel descriptor's is the strategy it carries."""
    return carried_strategy(strategy) or INNER_STRATEGIES.get(strategy, strategy)


def make_tunnel(lab: Lab, strategy: str, workdir: Path) -> Tunnel:
    """The tunnel object (not yet up). The tools' modules are imported here, so
    that importing this package (e.g. for TUNNEL_STRATEGIES) stays cheap and
    free of import cycles with harness.spec and harness.lab."""
    from harness.tunnels.decoy import DecoyTunnel
    from harness.tunnels.descriptor import DescriptorTunnel
    from harness.tunnels.junkshim import JunkParams
    from harness.tunnels.openvpn import OpenVpnTunnel
    from harness.tunnels.shadowsocks import ShadowsocksTunnel
    from harness.tunnels.wireguard import WireGuardTunnel

    found = descriptors().tunnels.get(strategy)
    if found is not None:
        return DescriptorTunnel(lab, found, workdir)
    if strategy in ("wireguard", "split-route", "junk-obfuscation"):
        return WireGuardTunnel(lab, strategy, workdir, split=strategy == "split-route",
                               junk=JunkParams() if strategy == "junk-obfuscation" else None)
    if strategy in ("openvpn-udp", "openvpn-tcp"):
        return OpenVpnTunnel(lab, strategy, workdir)
    if strategy == "shadowsocks":
        return ShadowsocksTunnel(lab, strategy, workdir)
    if strategy == "decoy":
        return DecoyTunnel(lab, strategy, workdir)
    raise ValueError(f"unknown tunnel strategy {strategy!r}; tunnel strategies are: "
                     f"{', '.join(TUNNEL_STRATEGIES)}")


@contextlib.contextmanager
def open_tunnel(lab: Lab, strategy: str, workdir: Path,
                logs_to: Path | None = None) -> Iterator[Tunnel | None]:
    """The tunnel of `strategy`, up for the block (None for a non-tunnel
    strategy). `workdir` holds its keys and logs (give it a directory in the
    run's private files); with `logs_to`, the tools' logs are copied there
    when the tunnel goes down."""
    if strategy not in tunnel_strategies():
        yield None
        return
    tunnel = make_tunnel(lab, strategy, workdir)
    try:
        tunnel.up()
        yield tunnel
    finally:
        try:
            tunnel.down()
        finally:
            if logs_to is not None:
                _copy_logs(workdir, logs_to)


def _copy_logs(workdir: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for log in sorted(workdir.glob("*.log")):
        shutil.copyfile(log, target / f"tunnel-{log.name}")
