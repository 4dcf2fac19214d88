"""`wireguard`, `split-route` and `junk-obfuscation`: wireguard-go in userspace.

This kernel has no WireGuard module, so both ends run wireguard-go in the
foreground (`-f`) under the lab's supervision (LabHost.start records them),
configured with `wg setconf` from a file in the run's private directory,
addressed and routed with pyroute2. wireguard-go's control socket lives in
/var/run/wireguard/<interface>.sock, in the mount namespace all Mininet hosts
share: hence the per-run interface names of harness.tunnels.naming.

- `wireguard`: everything from the caller goes through the tunnel.
- `split-route`: only the relay and STUN sets go through it.
- `junk-obfuscation`: as `wireguard`, with the junk shims of
  harness.tunnels.junkshim between the two wireguard-go (AmneziaWG-style).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from harness.netns.host import LabHost
from harness.testbed import Lab
from harness.tunnels import junkshim
from harness.tunnels.base import TunnelError, TunnelledEndpoints
from harness.tunnels.junkshim import JunkParams
from harness.tunnels.naming import TunnelNames, next_tunnel_names
from harness.tunnels.plumbing import Plumbing, link_exists, run_checked
from harness.tunnels.routing import (
    FULL_TUNNEL,
    SPLIT_ROUTE_SETS,
    TunnelAddressing,
    configure_address,
    exit_firewall,
    masquerade_rules,
    route_through_tunnel,
    set_prefixes,
    uplink_of,
)

WIREGUARD_GO = "wireguard-go"
WG = "wg"
CONTROL_DIR = Path("/var/run/wireguard")
WG_PORT = 51820
SHIM_PORT = 51821  # the server shim's public port and the client shim's local one
KEEPALIVE_S = 25
ADDRESSING = TunnelAddressing(IPv4Interface("10.77.0.1/30"), IPv4Interface("10.77.0.2/30"))
# wireguard-go refuses to run on Linux without it (the kernel module is
# preferred there; this kernel has none).
WG_GO_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1", "LOG_LEVEL": "verbose"}
# wireguard-go retries a lost handshake initiation after 5 s: wait past that,
# in short pings, so that a tunnel that comes up fast is not kept waiting.
PING_WAIT_S = 0.25
PING_TRIES = 32


@dataclass(frozen=True)
class KeyPair:
    private: str
    public: str


def generate_keypair() -> KeyPair:
    """`wg genkey` / `wg pubkey`: pure computations, no network needed."""
    private = _wg_tool(["genkey"], None)
    return KeyPair(private, _wg_tool(["pubkey"], private))


def _wg_tool(args: list[str], stdin: str | None) -> str:
    result = subprocess.run([WG, *args], input=stdin, capture_output=True, text=True,
                            timeout=10, check=False)
    if result.returncode != 0:
        raise TunnelError(f"wg {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def render_config(private_key: str, peer_public_key: str, allowed_ips: str, *,
                  listen_port: int | None = None, endpoint: str | None = None,
                  keepalive_s: int | None = None) -> str:
    """A `wg setconf` file (wg-quick's Address/Route keys are not wg's: the
    harness does those with pyroute2)."""
    lines = ["[Interface]", f"PrivateKey = {private_key}"]
    if listen_port is not None:
        lines.append(f"ListenPort = {listen_port}")
    lines += ["", "[Peer]", f"PublicKey = {peer_public_key}", f"AllowedIPs = {allowed_ips}"]
    if endpoint is not None:
        lines.append(f"Endpoint = {endpoint}")
    if keepalive_s is not None:
        lines.append(f"PersistentKeepalive = {keepalive_s}")
    return "\n".join(lines) + "\n"


def control_socket(ifname: str) -> Path:
    return CONTROL_DIR / f"{ifname}.sock"


class WireGuardTunnel:
    """One wireguard-go pair; `split` routes only the relay sets; `junk` adds the shims."""

    def __init__(self, lab: Lab, strategy: str, workdir: Path, *, split: bool = False,
                 junk: JunkParams | None = None) -> None:
        self.name = strategy
        self.lab = lab
        self.workdir = workdir
        self.split = split
        self.junk = junk
        self.names = TunnelNames("", "", "")
        self.endpoints = TunnelledEndpoints()
        self.established = False
        self.plumbing = Plumbing(lab, "", workdir)

    @property
    def server_ip(self) -> str:
        return str(self.lab.topology.address_of(self.lab.host_with_role("vpn").name))

    def up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        caller, vpn = self.lab.host_with_role("caller"), self.lab.host_with_role("vpn")
        self.names = next_tunnel_names(self.lab.run_id, self.name, self._taken)
        self.plumbing.label = self.names.label
        server_keys, client_keys = generate_keypair(), generate_keypair()
        self._start_wireguard(vpn, self.names.server, render_config(
            server_keys.private, client_keys.public, str(ADDRESSING.client.ip) + "/32",
            listen_port=WG_PORT), ADDRESSING.server)
        exposed_port = SHIM_PORT if self.junk else WG_PORT
        self.plumbing.add_nft_table(vpn, masquerade_rules(self.names.server, ADDRESSING, "server")
                                    + "\n" + exit_firewall(uplink_of(self.lab, vpn), exposed_port))
        endpoint = self._start_shims(caller, vpn) if self.junk else f"{self.server_ip}:{WG_PORT}"
        self._start_wireguard(caller, self.names.client, render_config(
            client_keys.private, server_keys.public, "0.0.0.0/0", endpoint=endpoint,
            keepalive_s=KEEPALIVE_S), ADDRESSING.client)
        prefixes = (set_prefixes(self.lab.topology.sets, SPLIT_ROUTE_SETS) if self.split
                    else list(FULL_TUNNEL))
        route_through_tunnel(self.plumbing, caller, self.names.client, self.server_ip, prefixes)
        self.plumbing.add_nft_table(caller, masquerade_rules(self.names.client, ADDRESSING,
                                                             "client"))
        self.endpoints = (TunnelledEndpoints() if self.split
                          else TunnelledEndpoints(host_ip=str(ADDRESSING.client.ip)))
        self.established = ping_through(caller, str(ADDRESSING.server.ip))

    def down(self) -> None:
        problems = self.plumbing.undo()
        if problems:
            raise TunnelError(f"{self.name} left behind: " + "; ".join(problems))

    def _taken(self, ifname: str) -> bool:
        hosts = (self.lab.host_with_role("caller"), self.lab.host_with_role("vpn"))
        return control_socket(ifname).exists() or any(link_exists(h, ifname) for h in hosts)

    def _start_wireguard(self, host: LabHost, ifname: str, config: str,
                         address: IPv4Interface) -> None:
        side = "server" if ifname == self.names.server else "client"
        started = self.plumbing.start(host, [WIREGUARD_GO, "-f", ifname],
                                      what=f"wireguard-go {side}", env=_env())
        self.plumbing.own_file(control_socket(ifname))
        self.plumbing.wait_for_link(started, ifname)
        self.plumbing.wait_until(started, control_socket(ifname).exists,
                                 f"control socket {control_socket(ifname)}")
        path = self.plumbing.write_private(f"wg-{ifname}.conf", config)
        run_checked(host, [WG, "setconf", ifname, str(path)], f"wg setconf in {host.name}")
        configure_address(host, ifname, address)

    def _start_shims(self, caller: LabHost, vpn: LabHost) -> str:
        """Server shim on the VPN's public address, client shim on the caller's
        loopback; returns the endpoint the caller's wireguard-go uses."""
        assert self.junk is not None
        params = self.junk.to_arg()
        # Run by path: junkshim needs only the standard library, and `-m` would
        # first import the whole harness.tunnels package (mininet, pyroute2...).
        shim = [sys.executable, str(Path(junkshim.__file__))]
        server = self.plumbing.start(vpn, [*shim, "server", "--listen",
                                           f"{self.server_ip}:{SHIM_PORT}", "--forward",
                                           f"127.0.0.1:{WG_PORT}", "--params", params],
                                     what="junkshim server")
        self.plumbing.wait_for_log(server, "junkshim server ready")
        client = self.plumbing.start(caller, [*shim, "client", "--listen",
                                              f"127.0.0.1:{SHIM_PORT}", "--forward",
                                              f"{self.server_ip}:{SHIM_PORT}", "--params",
                                              params], what="junkshim client")
        self.plumbing.wait_for_log(client, "junkshim client ready")
        return f"127.0.0.1:{SHIM_PORT}"


def _env() -> dict[str, str]:
    return {**os.environ, **WG_GO_ENV}


def ping_through(host: LabHost, address: str, tries: int = PING_TRIES) -> bool:
    """Whether `address` (the server's tunnel address) answers: the tunnel
    carries packets both ways. A blocked tunnel is not an error here: the call
    placed through it is what shows the block."""
    for _ in range(tries):
        result = host.run(["ping", "-n", "-q", "-c", "1", "-W", str(PING_WAIT_S), address],
                          check=False)
        if result.returncode == 0:
            return True
    return False
