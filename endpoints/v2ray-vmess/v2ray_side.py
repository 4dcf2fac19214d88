#!/usr/bin/env python3
"""One side of the v2ray-vmess tunnel: write its V2Ray 4 JSON config, then
exec v2ray on it (so the process the harness started is v2ray itself).

server: a VMess inbound on LISTEN:PORT over TCP with TLS (the certificate and
        key given), and a freedom outbound: what arrives goes where the
        client asked.
client: a dokodemo-door inbound on LOCAL (TCP and UDP) whose destination is
        FORWARD, and a VMess outbound over TCP with TLS to SERVER:PORT that
        trusts only the CA given (no system roots).

Standard library only; run by the harness with the descriptor's argv.
"""

import argparse
import json
import os
import shutil
import sys


def server_config(args: argparse.Namespace) -> dict:
    return {
        "log": {"loglevel": "info"},
        "inbounds": [{
            "listen": args.listen, "port": args.port, "protocol": "vmess",
            "settings": {"clients": [{"id": args.uuid, "alterId": 0}]},
            "streamSettings": {"network": "tcp", "security": "tls", "tlsSettings": {
                "certificates": [{"certificateFile": args.cert, "keyFile": args.key}]}},
        }],
        "outbounds": [{"protocol": "freedom", "settings": {}}],
    }


def client_config(args: argparse.Namespace) -> dict:
    local_ip, local_port = args.local.rsplit(":", 1)
    forward_ip, forward_port = args.forward.rsplit(":", 1)
    return {
        "log": {"loglevel": "info"},
        "inbounds": [{
            "listen": local_ip, "port": int(local_port), "protocol": "dokodemo-door",
            "settings": {"address": forward_ip, "port": int(forward_port),
                         "network": "tcp,udp"},
        }],
        "outbounds": [{
            "protocol": "vmess",
            "settings": {"vnext": [{"address": args.server, "port": args.port,
                                    "users": [{"id": args.uuid, "alterId": 0,
                                               "security": "aes-128-gcm"}]}]},
            "streamSettings": {"network": "tcp", "security": "tls", "tlsSettings": {
                "serverName": args.server, "allowInsecure": False, "disableSystemRoot": True,
                "certificates": [{"usage": "verify", "certificateFile": args.ca}]}},
        }],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="side", required=True)
    server = sub.add_parser("server")
    server.add_argument("--listen", required=True)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    client = sub.add_parser("client")
    client.add_argument("--server", required=True)
    client.add_argument("--ca", required=True)
    client.add_argument("--local", required=True, help="IP:PORT to listen on")
    client.add_argument("--forward", required=True, help="IP:PORT to forward to")
    for side in (server, client):
        side.add_argument("--port", type=int, required=True)
        side.add_argument("--uuid", required=True)
        side.add_argument("--config", required=True, help="where to write the config")
    args = parser.parse_args()
    config = server_config(args) if args.side == "server" else client_config(args)
    fd = os.open(args.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    v2ray = shutil.which("v2ray")
    if v2ray is None:
        sys.exit("v2ray_side: v2ray is not installed (Debian package v2ray)")
    sys.stdout.flush()
    os.execv(v2ray, [v2ray, "-config", args.config])


if __name__ == "__main__":
    main()
