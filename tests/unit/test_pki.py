"""Unit tests for harness.services.pki."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from harness.services.pki import CertBundle, issue_run_certificates


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def bundle(tmp_path: Path) -> CertBundle:
    return issue_run_certificates(tmp_path / "pki", ip_sans=["127.0.0.1", "10.0.0.9"],
                                  dns_sans=["relay.callwall.test"])


def test_files_and_modes(bundle: CertBundle) -> None:
    for path in (bundle.ca_cert, bundle.server_cert, bundle.server_key):
        assert path.is_file()
    assert stat.S_IMODE(bundle.server_key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in bundle.server_key.read_bytes()
    assert b"PRIVATE KEY" not in bundle.ca_cert.read_bytes()
    # The CA key is never written.
    assert sorted(p.name for p in bundle.ca_cert.parent.iterdir()) == [
        "ca.pem", "server.key", "server.pem"
    ]


def test_ca_is_self_signed_ca(bundle: CertBundle) -> None:
    ca = _load(bundle.ca_cert)
    assert ca.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ca.verify_directly_issued_by(ca)


def test_server_cert_signed_by_ca_with_sans(bundle: CertBundle) -> None:
    ca, server = _load(bundle.ca_cert), _load(bundle.server_cert)
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.9")
    ]
    assert san.get_values_for_type(x509.DNSName) == ["relay.callwall.test"]
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_each_run_gets_a_new_ca(tmp_path: Path) -> None:
    first = issue_run_certificates(tmp_path / "a", ip_sans=["127.0.0.1"])
    second = issue_run_certificates(tmp_path / "b", ip_sans=["127.0.0.1"])
    assert first.ca_cert.read_bytes() != second.ca_cert.read_bytes()


def test_bad_sans_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        issue_run_certificates(tmp_path, ip_sans=[])
    with pytest.raises(ValueError):
        issue_run_certificates(tmp_path, ip_sans=["not-an-ip"])


async def _handshake(bundle: CertBundle, client_ctx: ssl.SSLContext) -> str:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(bundle.server_cert, bundle.server_key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        # Like aioice for turns:IP:port, the server name is the IP address.
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_ctx), 5
        )
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return line.decode().strip()
    finally:
        server.close()


def test_tls_handshake_verifies_ip_san(bundle: CertBundle) -> None:
    client_ctx = ssl.create_default_context(cafile=str(bundle.ca_cert))
    assert asyncio.run(_handshake(bundle, client_ctx)) == "hello"


def test_ssl_cert_file_makes_default_context_trust_the_run_ca(
    bundle: CertBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aioice uses ssl=True, i.e. ssl.create_default_context(): this is what peers rely on.
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle.ca_cert))
    assert asyncio.run(_handshake(bundle, ssl.create_default_context())) == "hello"


def test_untrusted_ca_is_rejected(bundle: CertBundle, tmp_path: Path) -> None:
    other = issue_run_certificates(tmp_path / "other", ip_sans=["127.0.0.1"])
    client_ctx = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(_handshake(bundle, client_ctx))
