"""Mutual TLS to a Temporal cluster: a real TLS front (client certificates required, as a production
cluster's frontend would) before a real dev server, with certificates made for the test."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError
from temporalio.service import RetryConfig, TLSConfig
from temporalio.testing import WorkflowEnvironment

from disputeflow.settings import Settings
from disputeflow.temporal import SEARCH_ATTRIBUTES, connect, tls_config
from tests.conftest import free_port, installed_binary

QUICK = RetryConfig(initial_interval_millis=50, max_interval_millis=200, max_elapsed_time_millis=1500)


# -- Certificates ------------------------------------------------------------------------------


@dataclass
class Issued:
    cert: Path
    key: Path


def _write(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    issued = Issued(folder / f"{name}.pem", folder / f"{name}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issued.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return issued


class Authority:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _write(folder, name, self.cert, self.key).cert

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.now(timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)]))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1)))

    def issue(self, common_name: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _write(self.folder, common_name, builder.sign(self.key, hashes.SHA256()), key)


@dataclass
class Pki:
    ca: Authority
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from a CA the cluster does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority(folder, "hotline-ca")
    server = ca.issue("temporal.hotline.internal", ExtendedKeyUsageOID.SERVER_AUTH,
                      [x509.DNSName("temporal.hotline.internal"), x509.IPAddress(IPv4Address("127.0.0.1"))])
    client = ca.issue("disputeflow-worker", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    stranger = Authority(folder, "other-ca").issue("intruder", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return Pki(ca, server, client, stranger)


# -- The cluster: a dev server behind a TLS front that requires client certificates -----------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@pytest.fixture(scope="module")
async def cluster(pki: Pki) -> AsyncIterator[str]:
    """host:port of the TLS front."""
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=installed_binary("temporal"),
                                                search_attributes=SEARCH_ATTRIBUTES)
    upstream_host, upstream_port = env.client.service_client.config.target_host.rsplit(":", 1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    context.load_verify_locations(pki.ca.pem)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(upstream_host, int(upstream_port))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    port = free_port()
    server = await asyncio.start_server(relay, "127.0.0.1", port, ssl=context)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        await env.shutdown()


def cluster_settings(tmp_path: Path, address: str, **tls: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, temporal_address=address, **tls)


# The server ends the handshake. Under TLS 1.3 the client may already count the connection as open
# when the server checks its certificate, so the cut shows as either of these, depending on timing.
CUT_OFF = r"transport error|connection closed"


# -- Tests ---------------------------------------------------------------------------------------


async def test_mutual_tls_with_the_client_certificate(tmp_path: Path, cluster: str, pki: Pki) -> None:
    settings = cluster_settings(tmp_path, cluster, temporal_tls_server_ca=pki.ca.pem,
                                temporal_tls_client_cert=pki.client.cert, temporal_tls_client_key=pki.client.key,
                                temporal_tls_server_name="temporal.hotline.internal")
    client = await connect(settings, retry_config=QUICK)
    described = await client.workflow_service.describe_namespace(_describe("default"))
    assert described.namespace_info.name == "default"


async def test_the_cluster_refuses_a_client_without_a_certificate(tmp_path: Path, cluster: str, pki: Pki) -> None:
    settings = cluster_settings(tmp_path, cluster, temporal_tls_server_ca=pki.ca.pem,
                                temporal_tls_server_name="temporal.hotline.internal")
    with pytest.raises(RuntimeError, match=CUT_OFF):
        await connect(settings, retry_config=QUICK)


async def test_the_cluster_refuses_a_certificate_from_another_ca(tmp_path: Path, cluster: str, pki: Pki) -> None:
    settings = cluster_settings(tmp_path, cluster, temporal_tls_server_ca=pki.ca.pem,
                                temporal_tls_client_cert=pki.stranger.cert, temporal_tls_client_key=pki.stranger.key,
                                temporal_tls_server_name="temporal.hotline.internal")
    with pytest.raises(RuntimeError, match=CUT_OFF):
        await connect(settings, retry_config=QUICK)


async def test_the_client_refuses_a_server_it_cannot_verify(tmp_path: Path, cluster: str, pki: Pki) -> None:
    # The system's trust store does not know the cluster's private CA.
    settings = cluster_settings(tmp_path, cluster, temporal_tls=True, temporal_tls_client_cert=pki.client.cert,
                                temporal_tls_client_key=pki.client.key,
                                temporal_tls_server_name="temporal.hotline.internal")
    with pytest.raises(RuntimeError, match="UnknownIssuer"):
        await connect(settings, retry_config=QUICK)


def test_tls_settings(tmp_path: Path, pki: Pki) -> None:
    plain = cluster_settings(tmp_path, "temporal:7233")
    assert tls_config(plain) is False
    assert tls_config(plain.model_copy(update={"temporal_tls": True})) is True
    config = tls_config(cluster_settings(tmp_path, "temporal:7233", temporal_tls_server_ca=pki.ca.pem,
                                         temporal_tls_client_cert=pki.client.cert,
                                         temporal_tls_client_key=pki.client.key))
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == pki.ca.pem.read_bytes()
    assert config.client_cert == pki.client.cert.read_bytes() and config.domain is None
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CLIENT_CERT and TEMPORAL_TLS_CLIENT_KEY together"):
        cluster_settings(tmp_path, "temporal:7233", temporal_tls_client_cert=pki.client.cert)
    missing = cluster_settings(tmp_path, "temporal:7233", temporal_tls_server_ca=tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="TEMPORAL_TLS_SERVER_CA: cannot read .*nope.pem"):
        tls_config(missing)


def _describe(namespace: str):
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    return DescribeNamespaceRequest(namespace=namespace)
