"""`shadowsocks`: shadowsocks-libev with its UDP relay carrying the call.

ss-server runs on the VPN host with the UDP relay on (`-u`). On the caller,
`ss-tunnel -u` forwards a local port to the TURN relay's UDP/TCP 3478 through
the server; the caller's peer then uses TURN-UDP with the relay's address
replaced by that local port (TunnelledEndpoints.turn), so every media packet
of the caller goes, inside shadowsocks' UDP relay, to the VPN host and from
there to the relay. The callee uses the relay directly, as with `turn-udp`.

Why ss-tunnel and not `ss-redir -u`: TPROXY does work on this kernel (an nft
`tproxy` rule and the iptables TPROXY target both load in a lab namespace,
checked 2026-11-28), but the peer runs on the caller itself, and TPROXY acts
in prerouting only: locally generated UDP would need an output mark, a
policy route through loopback to re-enter prerouting, and ss-redir's replies
need IP_TRANSPARENT source spoofing. ss-tunnel needs none of that, and makes
the TURN allocation the one flow that must use the UDP relay, so a call that
connects (relay-only ICE) proves the relay carried all of its media.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from harness.netns.endpoint import Endpoint
from harness.testbed import Lab
from harness.tunnels.base import TunnelError, TunnelledEndpoints
from harness.tunnels.naming import next_tunnel_names
from harness.tunnels.plumbing import Plumbing

SS_PORT = 8388
LOCAL_PORT = 13478
LOCAL_IP = "127.0.0.1"
METHOD = "chacha20-ietf-poly1305"
UDP_TIMEOUT_S = 60


def render_config(server_ip: str, password: str, side: str) -> str:
    """The JSON config of one end (the password stays off the command line).
    Only the client gets local_*: ss-server reads local_address as the source
    address of its outgoing sockets."""
    config: dict[str, object] = {"server": server_ip, "server_port": SS_PORT,
                                 "password": password, "method": METHOD,
                                 "timeout": UDP_TIMEOUT_S, "mode": "tcp_and_udp"}
    if side == "client":
        config.update(local_address=LOCAL_IP, local_port=LOCAL_PORT)
    elif side != "server":
        raise ValueError(f"side must be 'server' or 'client', got {side!r}")
    return json.dumps(config, indent=2) + "\n"


def server_argv(config: Path) -> list[str]:
    return ["ss-server", "-c", str(config), "-u", "-v"]


def tunnel_argv(config: Path, forward_to: Endpoint) -> list[str]:
    """ss-tunnel: LOCAL_IP:LOCAL_PORT (TCP and UDP) -> forward_to, via the server."""
    return ["ss-tunnel", "-c", str(config), "-L", f"{forward_to.host}:{forward_to.port}",
            "-u", "-v"]


class ShadowsocksTunnel:
    def __init__(self, lab: Lab, strategy: str, workdir: Path) -> None:
        self.name = strategy
        self.lab = lab
        self.workdir = workdir
        self.endpoints = TunnelledEndpoints()
        self.established = False
        self.plumbing = Plumbing(lab, "", workdir)

    def up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # No interface, but the label keeps this tunnel's processes apart in the registry.
        self.plumbing.label = next_tunnel_names(self.lab.run_id, self.name,
                                                lambda _: False).label
        caller, vpn = self.lab.host_with_role("caller"), self.lab.host_with_role("vpn")
        services = self.lab.services
        assert services is not None, "the lab's services are not running"
        server_ip = str(self.lab.topology.address_of(vpn.name))
        password = secrets.token_urlsafe(18)
        label = self.plumbing.label
        server_config = self.plumbing.write_private(
            f"ss-server-{label}.json", render_config(server_ip, password, "server"))
        client_config = self.plumbing.write_private(
            f"ss-client-{label}.json", render_config(server_ip, password, "client"))
        server = self.plumbing.start(vpn, server_argv(server_config), what="ss-server")
        self.plumbing.wait_for_log(server, "UDP relay enabled")
        self.plumbing.wait_for_log(server, "listening at")
        relay = Endpoint(services.relay_ip, services.turn_port)
        client = self.plumbing.start(caller, tunnel_argv(client_config, relay),
                                     what="ss-tunnel")
        self.plumbing.wait_for_log(client, "listening at")
        self.plumbing.check_alive(server)
        self.endpoints = TunnelledEndpoints(turn=Endpoint(LOCAL_IP, LOCAL_PORT))
        self.established = True

    def down(self) -> None:
        problems = self.plumbing.undo()
        if problems:
            raise TunnelError(f"{self.name} left behind: " + "; ".join(problems))
