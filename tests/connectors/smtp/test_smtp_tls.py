"""STARTTLS and implicit TLS against aiosmtpd with a throwaway certificate for 127.0.0.1.

The connector verifies certificates with the system trust store; the tests add their
own CA the way an operator would, through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtp_support import PASSWORD, USERNAME, StoringHandler, authenticate, create_connector

from connectors.base import OutboundMessage, PermanentProviderError
from connectors.sandbox.server import free_port

MESSAGE = OutboundMessage(channel="email", to="ana@example.com", subject="TLS", body="sigilo")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate whose SAN is 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture(scope="module")
def starttls_relay(certificate) -> Iterator[Controller]:
    controller = Controller(
        StoringHandler(),
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture(scope="module")
def implicit_tls_relay(certificate) -> Iterator[Controller]:
    controller = Controller(
        StoringHandler(), hostname="127.0.0.1", port=free_port(), ssl_context=server_context(certificate)
    )
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def trusted(certificate, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


class TestStartTls:
    def test_upgrades_then_logs_in_and_sends(self, starttls_relay, trusted):
        connector = create_connector(starttls_relay.port, security="starttls", username=USERNAME, password=PASSWORD)
        connector.send(MESSAGE)
        [envelope] = starttls_relay.handler.envelopes
        assert envelope.rcpt_tos == ["ana@example.com"]

    def test_login_without_tls_is_permanent(self, starttls_relay):
        # the relay hides AUTH until the session is encrypted
        connector = create_connector(starttls_relay.port, security="none", username=USERNAME, password=PASSWORD)
        with pytest.raises(PermanentProviderError) as caught:
            connector.send(MESSAGE)
        assert caught.value.code == "not_supported"

    def test_mail_without_tls_is_permanent_530(self, starttls_relay):
        with pytest.raises(PermanentProviderError) as caught:
            create_connector(starttls_relay.port, security="none").send(MESSAGE)
        assert caught.value.code == "530"


class TestImplicitTls:
    def test_tls_from_the_first_byte(self, implicit_tls_relay, trusted):
        create_connector(implicit_tls_relay.port, security="tls").send(MESSAGE)
        assert len(implicit_tls_relay.handler.envelopes) == 1
        assert create_connector(implicit_tls_relay.port, security="tls").check().ok

    def test_untrusted_certificate_is_permanent(self, implicit_tls_relay, monkeypatch, tmp_path):
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "empty.pem"))
        with pytest.raises(PermanentProviderError) as caught:
            create_connector(implicit_tls_relay.port, security="tls").send(MESSAGE)
        assert caught.value.code == "tls_error"
