"""The one certificate builder of callwall: a fresh CA per use, and the leaf
certificates signed by it, generated in-process with ``cryptography``.

- :func:`issue_run_certificates`: the run's CA and the relay's server
  certificate (coturn's TLS listener; clients trust the CA through
  ``SSL_CERT_FILE``, see harness.calls.peer);
- :func:`issue_tunnel_pki`: a CA, a server and a client certificate for one
  OpenVPN tunnel (its TLS mode authenticates both ends).

Keys are ECDSA P-256 (OpenVPN then uses ECDHE: ``dh none``). A CA's private
key never reaches the disk: nothing else can be signed with it afterwards.
Key files are created with mode 0600 from the start.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "callwall run CA"
SERVER_COMMON_NAME = "callwall relay"
DEFAULT_VALIDITY = datetime.timedelta(days=7)
TUNNEL_VALIDITY = datetime.timedelta(days=2)
# Tolerate small clock differences between namespaces/hosts.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class CertBundle:
    """Paths of the PEM files issued for one run's relay."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class TunnelPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True)
class _Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    validity: datetime.timedelta
    now: datetime.datetime

    def sign(self, common_name: str, purpose: x509.ObjectIdentifier,
             sans: x509.SubjectAlternativeName | None = None
             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for `purpose` (server or client auth), and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (_builder(common_name, self.cert.subject, key, self.now, self.validity)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(_key_usage(ca=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), critical=False))
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def new_authority(common_name: str, validity: datetime.timedelta) -> _Authority:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (_builder(common_name, _name(common_name), key, now, validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return _Authority(key, cert, validity, now)


def subject_alt_names(
    ip_sans: Sequence[str], dns_sans: Sequence[str] = ()
) -> x509.SubjectAlternativeName:
    """Build a SAN extension; raises ValueError on a malformed IP address."""
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans
    ]
    names += [x509.DNSName(name) for name in dns_sans]
    if not names:
        raise ValueError("a server certificate needs at least one IP or DNS SAN")
    return x509.SubjectAlternativeName(names)


def issue_run_certificates(
    workdir: Path,
    ip_sans: Sequence[str],
    dns_sans: Sequence[str] = (),
    validity: datetime.timedelta = DEFAULT_VALIDITY,
) -> CertBundle:
    """Create ``ca.pem``, ``server.pem`` and ``server.key`` in *workdir*: the
    server certificate carries the given IP (and optional DNS) subject
    alternative names."""
    sans = subject_alt_names(ip_sans, dns_sans)
    workdir.mkdir(parents=True, exist_ok=True)
    ca = new_authority(CA_COMMON_NAME, validity)
    server, server_key = ca.sign(SERVER_COMMON_NAME, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    bundle = CertBundle(ca_cert=workdir / "ca.pem", server_cert=workdir / "server.pem",
                        server_key=workdir / "server.key")
    write_cert(bundle.ca_cert, ca.cert)
    write_cert(bundle.server_cert, server)
    write_key(bundle.server_key, server_key)
    return bundle


def issue_tunnel_pki(workdir: Path, prefix: str) -> TunnelPki:
    """Write `<prefix>-{ca,server,client}.pem` and the two keys (mode 0600)."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = new_authority("callwall tunnel CA", TUNNEL_VALIDITY)
    server, server_key = ca.sign("callwall vpn server", ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = ca.sign("callwall vpn client", ExtendedKeyUsageOID.CLIENT_AUTH)
    pki = TunnelPki(*(workdir / f"{prefix}-{n}" for n in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
    write_cert(pki.ca_cert, ca.cert)
    write_cert(pki.server_cert, server)
    write_cert(pki.client_cert, client)
    write_key(pki.server_key, server_key)
    write_key(pki.client_key, client_key)
    return pki


def write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # Created with 0600 from the start, so the key is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "callwall"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
             now: datetime.datetime, validity: datetime.timedelta) -> x509.CertificateBuilder:
    public = key.public_key()
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + validity)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=not ca, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)
