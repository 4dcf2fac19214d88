"""A per-tunnel PKI for OpenVPN: a fresh CA, a server and a client certificate.

harness.services.certs issues only server certificates (coturn needs no
more) and discards its CA key; OpenVPN's TLS mode needs a client
certificate too, so this issues both from one CA whose key never reaches
the disk. Keys are ECDSA P-256 (OpenVPN then uses ECDHE: `dh none`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class TunnelPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "callwall"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
             now: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + VALIDITY))


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=not ca, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _leaf(common_name: str, purpose: x509.ObjectIdentifier, ca_key: ec.EllipticCurvePrivateKey,
          ca_name: x509.Name, now: datetime.datetime
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(common_name, ca_name, key, now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(mode)


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue_tunnel_pki(workdir: Path, prefix: str) -> TunnelPki:
    """Write `<prefix>-{ca,server,client}.pem` and the two keys (mode 0600)."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("callwall tunnel CA")
    ca = (_builder("callwall tunnel CA", ca_name, ca_key, now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(ca=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server, server_key = _leaf("callwall vpn server", ExtendedKeyUsageOID.SERVER_AUTH,
                               ca_key, ca_name, now)
    client, client_key = _leaf("callwall vpn client", ExtendedKeyUsageOID.CLIENT_AUTH,
                               ca_key, ca_name, now)
    pki = TunnelPki(*(workdir / f"{prefix}-{n}" for n in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
    pem = serialization.Encoding.PEM
    _write(pki.ca_cert, ca.public_bytes(pem), 0o644)
    _write(pki.server_cert, server.public_bytes(pem), 0o644)
    _write(pki.client_cert, client.public_bytes(pem), 0o644)
    _write(pki.server_key, _key_bytes(server_key), 0o600)
    _write(pki.client_key, _key_bytes(client_key), 0o600)
    return pki
