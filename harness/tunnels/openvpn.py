"""`openvpn-udp` and `openvpn-tcp`: OpenVPN 2.6 in TLS point-to-point mode.

The server runs on the VPN host, the client on the caller, each with a TUN
interface of a per-run name and certificates from a per-tunnel CA
(harness.services.pki). Point-to-point mode (`ifconfig local remote`, no
`server`/`pull`) keeps it to one client and lets OpenVPN open and address
its TUN at start; the routes (everything but the server's own address) are
the harness's, added with pyroute2 as for WireGuard. This kernel has no
ovpn-dco module, hence `disable-dco`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from harness.netns.host import LabHost
from harness.services.pki import TunnelPki, issue_tunnel_pki
from harness.testbed import Lab
from harness.tunnels.base import TunnelError, TunnelledEndpoints
from harness.tunnels.naming import TunnelNames, next_tunnel_names
from harness.tunnels.plumbing import Plumbing, Started, link_exists
from harness.tunnels.routing import (
    FULL_TUNNEL,
    TunnelAddressing,
    exit_firewall,
    masquerade_rules,
    route_through_tunnel,
    uplink_of,
)
from harness.tunnels.wireguard import ping_through

OPENVPN = "openvpn"
OPENVPN_PORT = 1194
ADDRESSING = TunnelAddressing(IPv4Interface("10.78.0.1/30"), IPv4Interface("10.78.0.2/30"))
READY_LINE = "Initialization Sequence Completed"
PROTOCOLS = {"openvpn-udp": ("udp4", "udp4"), "openvpn-tcp": ("tcp4-server", "tcp4-client")}


@dataclass(frozen=True)
class OpenVpnSide:
    ifname: str
    proto: str
    local: IPv4Interface
    remote: IPv4Interface
    server_ip: str
    tls_role: str  # "tls-server" or "tls-client"
    ca: Path
    cert: Path
    key: Path


def render_config(side: OpenVpnSide) -> str:
    """One end's config file; certificates by path, nothing secret inline."""
    lines = [f"dev {side.ifname}", "dev-type tun", "disable-dco", f"proto {side.proto}",
             f"ifconfig {side.local.ip} {side.remote.ip}", side.tls_role,
             f"ca {side.ca}", f"cert {side.cert}", f"key {side.key}",
             "ping 5", "ping-restart 60", "verb 3"]
    if side.tls_role == "tls-server":
        lines += ["dh none", f"local {side.server_ip}", f"lport {OPENVPN_PORT}"]
    else:
        lines += [f"remote {side.server_ip} {OPENVPN_PORT}", "nobind",
                  "remote-cert-tls server", "connect-retry 1"]
    return "\n".join(lines) + "\n"


class OpenVpnTunnel:
    def __init__(self, lab: Lab, strategy: str, workdir: Path) -> None:
        if strategy not in PROTOCOLS:
            raise ValueError(f"not an OpenVPN strategy: {strategy!r}")
        self.name = strategy
        self.lab = lab
        self.workdir = workdir
        self.names = TunnelNames("", "", "")
        self.endpoints = TunnelledEndpoints()
        self.established = False
        self.plumbing = Plumbing(lab, "", workdir)

    def up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        caller, vpn = self.lab.host_with_role("caller"), self.lab.host_with_role("vpn")
        self.names = next_tunnel_names(self.lab.run_id, self.name, self._taken)
        self.plumbing.label = self.names.label
        server_ip = str(self.lab.topology.address_of(vpn.name))
        pki = issue_tunnel_pki(self.workdir, self.names.label)
        for path in (pki.server_key, pki.client_key):
            self.plumbing.own_file(path)
        server_proto, client_proto = PROTOCOLS[self.name]
        server = self._start(vpn, "server", OpenVpnSide(
            self.names.server, server_proto, ADDRESSING.server, ADDRESSING.client, server_ip,
            "tls-server", pki.ca_cert, pki.server_cert, pki.server_key))
        exposed_port = OPENVPN_PORT if self.name == "openvpn-udp" else None
        self.plumbing.add_nft_table(vpn, masquerade_rules(self.names.server, ADDRESSING, "server")
                                    + "\n" + exit_firewall(uplink_of(self.lab, vpn), exposed_port))
        self._start(caller, "client", self._client_side(pki, client_proto, server_ip))
        route_through_tunnel(self.plumbing, caller, self.names.client, server_ip,
                             list(FULL_TUNNEL))
        self.plumbing.add_nft_table(caller, masquerade_rules(self.names.client, ADDRESSING,
                                                             "client"))
        self.endpoints = TunnelledEndpoints(host_ip=str(ADDRESSING.client.ip))
        self.established = ping_through(caller, str(ADDRESSING.server.ip))
        self.plumbing.check_alive(server)

    def down(self) -> None:
        problems = self.plumbing.undo()
        if problems:
            raise TunnelError(f"{self.name} left behind: " + "; ".join(problems))

    def _client_side(self, pki: TunnelPki, proto: str, server_ip: str) -> OpenVpnSide:
        return OpenVpnSide(self.names.client, proto, ADDRESSING.client, ADDRESSING.server,
                           server_ip, "tls-client", pki.ca_cert, pki.client_cert, pki.client_key)

    def _taken(self, ifname: str) -> bool:
        hosts = (self.lab.host_with_role("caller"), self.lab.host_with_role("vpn"))
        return any(link_exists(h, ifname) for h in hosts)

    def _start(self, host: LabHost, side: str, config: OpenVpnSide) -> Started:
        path = self.plumbing.write_private(f"openvpn-{config.ifname}.conf",
                                           render_config(config))
        started = self.plumbing.start(host, [OPENVPN, "--config", str(path)],
                                      what=f"openvpn {side}")
        self.plumbing.wait_for_link(started, config.ifname, up=True)
        return started
