"""Per-run certificate authority and server certificate (for coturn's TLS listener).

Everything is generated in-process with the ``cryptography`` package. The CA is
self-signed and lives only for one run; clients trust it through
``SSL_CERT_FILE=<ca_cert>`` (see :mod:`harness.calls.peer`).
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
# Tolerate small clock differences between namespaces/hosts.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class CertBundle:
    """Paths of the PEM files issued for one run."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "callwall"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(now: datetime.datetime, validity: datetime.timedelta) -> tuple[
    datetime.datetime, datetime.datetime
]:
    return now - BACKDATE, now + validity


def _build_ca(
    key: ec.EllipticCurvePrivateKey, now: datetime.datetime, validity: datetime.timedelta
) -> x509.Certificate:
    not_before, not_after = _validity(now, validity)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_COMMON_NAME))
        .issuer_name(_name(CA_COMMON_NAME))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
        )
    )
    return builder.sign(key, hashes.SHA256())


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


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


def _build_server(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    sans: x509.SubjectAlternativeName,
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> x509.Certificate:
    not_before, not_after = _validity(now, validity)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_COMMON_NAME))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(sans, critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create with 0600 from the start so the key is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def issue_run_certificates(
    workdir: Path,
    ip_sans: Sequence[str],
    dns_sans: Sequence[str] = (),
    validity: datetime.timedelta = DEFAULT_VALIDITY,
) -> CertBundle:
    """Create ``ca.pem``, ``server.pem`` and ``server.key`` in *workdir*.

    The server certificate is signed by the fresh CA and carries the given IP
    (and optional DNS) subject alternative names. The key file gets mode 0600.
    The CA private key is never written to disk: nothing else can be signed
    with it after this call.
    """
    sans = subject_alt_names(ip_sans, dns_sans)
    workdir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _new_key()
    ca_cert = _build_ca(ca_key, now, validity)
    server_key = _new_key()
    server_cert = _build_server(server_key, ca_key, ca_cert, sans, now, validity)
    bundle = CertBundle(
        ca_cert=workdir / "ca.pem",
        server_cert=workdir / "server.pem",
        server_key=workdir / "server.key",
    )
    _write_cert(bundle.ca_cert, ca_cert)
    _write_cert(bundle.server_cert, server_cert)
    _write_key(bundle.server_key, server_key)
    return bundle
