"""Pure parts of the tunnel strategies: names, configs, routes, PKI, mapping."""

from __future__ import annotations

import json
import stat
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from harness.calls.strategies import STRATEGIES
from harness.netns.endpoint import Endpoint
from harness.services.pki import issue_tunnel_pki
from harness.tunnels import INNER_STRATEGIES, TUNNEL_STRATEGIES, inner_strategy
from harness.tunnels.naming import IFNAMSIZ_MAX, KIND_LETTERS, interface_name, next_tunnel_names
from harness.tunnels.openvpn import OpenVpnSide
from harness.tunnels.openvpn import render_config as openvpn_config
from harness.tunnels.routing import (
    TunnelAddressing,
    exit_firewall,
    masquerade_rules,
    set_prefixes,
)
from harness.tunnels.shadowsocks import render_config as ss_config
from harness.tunnels.shadowsocks import tunnel_argv
from harness.tunnels.wireguard import render_config as wg_config

ADDRS = TunnelAddressing(IPv4Interface("10.77.0.1/30"), IPv4Interface("10.77.0.2/30"))


def test_every_tunnel_strategy_carries_a_known_ice_strategy() -> None:
    assert set(INNER_STRATEGIES) == set(TUNNEL_STRATEGIES)
    assert not set(TUNNEL_STRATEGIES) & set(STRATEGIES)
    assert all(inner_strategy(s) in STRATEGIES for s in TUNNEL_STRATEGIES)
    assert inner_strategy("wireguard") == "direct"
    assert inner_strategy("shadowsocks") == "turn-udp"
    assert inner_strategy("turn-tcp") == "turn-tcp"  # not a tunnel: itself


@pytest.mark.parametrize("run_id", ["cw5aa4c1", "cwffffff", "a-very-long-custom-run-id"])
def test_interface_names_fit_and_differ(run_id: str) -> None:
    names = {interface_name(run_id, kind, serial, side)
             for kind in KIND_LETTERS for serial in (0, 9, 10, 123456) for side in ("server",
                                                                                    "client")}
    assert len(names) == len(KIND_LETTERS) * 4 * 2
    assert all(len(n) <= IFNAMSIZ_MAX and n.isalnum() for n in names)


def test_names_depend_on_the_run() -> None:
    assert (interface_name("cw000001", "wireguard", 0, "client")
            != interface_name("cw000002", "wireguard", 0, "client"))
    long_a, long_b = "x" * 20 + "a", "x" * 20 + "b"
    assert (interface_name(long_a, "wireguard", 0, "client")
            != interface_name(long_b, "wireguard", 0, "client"))


def test_next_names_skip_taken_ones_and_never_repeat() -> None:
    first = next_tunnel_names("cw123456", "wireguard", lambda n: False)
    second = next_tunnel_names("cw123456", "wireguard", lambda n: False)
    assert first != second
    assert first.server != first.client and first.label == first.server[:-1]
    with pytest.raises(RuntimeError, match="no free"):
        next_tunnel_names("cw123456", "wireguard", lambda n: True)


def test_bad_kind_or_side_is_named() -> None:
    with pytest.raises(ValueError, match="no tunnel kind 'ipsec'"):
        interface_name("cw1", "ipsec", 0, "client")
    with pytest.raises(ValueError, match="side"):
        interface_name("cw1", "wireguard", 0, "middle")


def test_wireguard_config_has_what_wg_setconf_reads() -> None:
    server = wg_config("PRIV", "PEERPUB", "10.77.0.2/32", listen_port=51820)
    assert server.splitlines() == ["[Interface]", "PrivateKey = PRIV", "ListenPort = 51820", "",
                                   "[Peer]", "PublicKey = PEERPUB", "AllowedIPs = 10.77.0.2/32"]
    client = wg_config("PRIV", "PEERPUB", "0.0.0.0/0", endpoint="198.18.7.2:51820",
                       keepalive_s=25)
    assert "Endpoint = 198.18.7.2:51820" in client and "ListenPort" not in client
    assert "PersistentKeepalive = 25" in client
    assert "Address" not in client  # wg-quick's key: wg setconf would reject it


def test_openvpn_configs_pair_up(tmp_path: Path) -> None:
    common = dict(ca=tmp_path / "ca.pem", cert=tmp_path / "c.pem", key=tmp_path / "c.key")
    server = openvpn_config(OpenVpnSide("cwabu0s", "udp4", ADDRS.server, ADDRS.client,
                                        "198.18.7.2", "tls-server", **common))
    client = openvpn_config(OpenVpnSide("cwabu0c", "tcp4-client", ADDRS.client, ADDRS.server,
                                        "198.18.7.2", "tls-client", **common))
    assert "dev cwabu0s" in server and "ifconfig 10.77.0.1 10.77.0.2" in server
    assert "dh none" in server and "lport 1194" in server and "remote " not in server
    assert "remote 198.18.7.2 1194" in client and "remote-cert-tls server" in client
    assert "ifconfig 10.77.0.2 10.77.0.1" in client and "proto tcp4-client" in client
    assert all("disable-dco" in c for c in (server, client))


def test_shadowsocks_configs_keep_local_settings_on_the_client() -> None:
    server = json.loads(ss_config("198.18.7.2", "pw", "server"))
    client = json.loads(ss_config("198.18.7.2", "pw", "client"))
    assert "local_address" not in server  # ss-server would bind its outgoing sockets to it
    assert client["local_address"] == "127.0.0.1" and client["mode"] == "tcp_and_udp"
    argv = tunnel_argv(Path("/run/x.json"), Endpoint("198.18.1.2", 3478))
    assert argv[argv.index("-L") + 1] == "198.18.1.2:3478" and "-u" in argv
    assert "pw" not in argv
    with pytest.raises(ValueError, match="side"):
        ss_config("198.18.7.2", "pw", "both")


def test_masquerade_rules() -> None:
    server = masquerade_rules("cw1w0s", ADDRS, "server")
    assert 'ip saddr 10.77.0.0/30 oifname != "cw1w0s" masquerade' in server
    client = masquerade_rules("cw1w0c", ADDRS, "client")
    assert 'oifname "cw1w0c" ip saddr != 10.77.0.2 masquerade' in client
    with pytest.raises(ValueError):
        TunnelAddressing(IPv4Interface("10.0.0.1/30"), IPv4Interface("10.0.1.2/30"))


def test_split_route_prefixes_come_from_the_named_sets() -> None:
    sets = {"relays": [IPv4Network("198.18.1.0/24")], "stun-servers":
            [IPv4Network("198.18.2.0/24"), IPv4Network("198.18.1.0/24")],
            "signalling": [IPv4Network("198.18.3.0/24")]}
    assert set_prefixes(sets, ("relays", "stun-servers", "telegram-relays")) == [
        "198.18.1.0/24", "198.18.2.0/24"]
    with pytest.raises(RuntimeError, match="none of the sets"):
        set_prefixes(sets, ("whatsapp-relays",))


def test_tunnel_pki_chains_and_keeps_keys_private(tmp_path: Path) -> None:
    pki = issue_tunnel_pki(tmp_path / "pki", "cw1u0")
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    for cert_path, purpose in ((pki.server_cert, ExtendedKeyUsageOID.SERVER_AUTH),
                               (pki.client_cert, ExtendedKeyUsageOID.CLIENT_AUTH)):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        cert.verify_directly_issued_by(ca)
        assert purpose in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    for key in (pki.server_key, pki.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not list((tmp_path / "pki").glob("*ca.key"))


def test_the_exit_drops_unsolicited_udp_except_to_the_tunnel_port() -> None:
    rules = exit_firewall("eth0", 51820)
    assert 'iifname "eth0" meta l4proto udp ct state new udp dport != 51820 drop' in rules
    assert "dport" not in exit_firewall("eth0", None)  # openvpn-tcp: no UDP port to keep
