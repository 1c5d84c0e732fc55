"""E-mail over any SMTP relay (stdlib ``smtplib``).

SMTP has no webhooks: bounces and complaints come back as mail, not as signed HTTP
calls. The webhook methods therefore fail closed — no route key, never verified, no
events — so a stray ``POST /webhooks/smtp`` finds no tenant and is refused.
"""

from __future__ import annotations

import smtplib
import ssl
from contextlib import contextmanager
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.base import (
    HealthCheck,
    InboundEvent,
    MessagingConnector,
    OutboundMessage,
    PermanentProviderError,
    ProviderError,
    SendResult,
    TransientProviderError,
    WebhookRequest,
)
from connectors.netguard import NetworkGuard, TargetRefused, TargetUnreachable
from connectors.smtp.compose import compose_email, domain_of, message_id_for, verify_generated_headers
from connectors.smtp.headers import check_header_text

Security = Literal["none", "starttls", "tls"]


class SmtpCredentials(BaseModel):
    """What the vault keeps for one tenant's SMTP relay."""

    model_config = ConfigDict(title="SMTP relay")

    host: str = Field(title="Host", description="SMTP server name, e.g. smtp.example.com.", min_length=1)
    port: int = Field(
        default=587, title="Port", description="587 for STARTTLS, 465 for implicit TLS, 25 for none.", ge=1, le=65535
    )
    username: str | None = Field(default=None, title="Username", description="Leave empty for no AUTH.")
    password: SecretStr | None = Field(default=None, title="Password")
    from_address: str = Field(title="From address", description="Envelope sender and From: address.")
    from_name: str | None = Field(default=None, title="From name", description="Display name in From:.")
    security: Security = Field(
        default="starttls",
        title="Transport security",
        description="none, starttls (upgrade after connecting) or tls (TLS from the first byte).",
    )

    @field_validator("from_address")
    @classmethod
    def _single_address(cls, value: str) -> str:
        value = value.strip()
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(ch.isspace() or ch in '<>,;"' for ch in value):
            raise ValueError("must be a bare address like agenda@clinica.com.br")
        return value

    @field_validator("from_name")
    @classmethod
    def _one_line_name(cls, value: str | None) -> str | None:
        # a display name is header text: no line break, even one spelled as an encoded-word
        return check_header_text(value) if value else value


class SmtpConfig(BaseModel):
    model_config = ConfigDict(title="SMTP settings")

    helo_hostname: str | None = Field(
        default=None,
        title="EHLO name",
        description="Name we greet the server with; defaults to the From address's domain "
        "(smtplib's default does a reverse DNS lookup, slow in containers).",
    )


def _reply_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _by_reply_code(code: int, text: str, what: str) -> ProviderError:
    """4xx: try again later; 5xx: the server refused for good."""
    message = f"{what}: {code} {text}".strip()
    if 400 <= code < 500:
        return TransientProviderError(message, code=str(code))
    if 500 <= code < 600:
        return PermanentProviderError(message, code=str(code))
    # smtplib uses -1 when the connection closed before a valid reply
    return TransientProviderError(message, code="connection_error")


def provider_error(exc: Exception) -> ProviderError:
    """Map an ``smtplib``/socket failure to the error the delivery pipeline acts on."""
    if isinstance(exc, TargetRefused):
        return PermanentProviderError(str(exc), code="address_not_allowed")
    if isinstance(exc, TargetUnreachable):
        # refused, timed out, no route, no such name, not an SMTP server: one answer, so a
        # tenant cannot tell an open port from a closed one
        return TransientProviderError(f"could not connect to the SMTP server {exc.host}:{exc.port}",
                                      code="connection_error")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (-1, b""))
        return _by_reply_code(code, _reply_text(text), "recipient refused")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read timeout as a disconnect; the timeout is its context
        if isinstance(exc.__context__, TimeoutError):
            return TransientProviderError(f"SMTP server timed out: {exc}", code="timeout")
        return TransientProviderError(f"SMTP server disconnected: {exc}", code="connection_error")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentProviderError(f"SMTP server lacks a required extension: {exc}", code="not_supported")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_reply_code(exc.smtp_code, _reply_text(exc.smtp_error), type(exc).__name__)
    if isinstance(exc, TimeoutError):
        return TransientProviderError(f"SMTP server timed out: {exc}", code="timeout")
    if isinstance(exc, ssl.SSLCertVerificationError):
        # a wrong host name or an untrusted certificate does not fix itself
        return PermanentProviderError(f"TLS certificate rejected: {exc}", code="tls_error")
    if isinstance(exc, OSError | smtplib.SMTPException):
        return TransientProviderError(f"SMTP connection failed: {exc!r}", code="connection_error")
    raise TypeError(f"not an SMTP failure: {exc!r}") from exc


class _GuardedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` whose socket comes from the network guard: connected to the very
    address that was checked (TLS still verifies the host name, ``self._host``)."""

    def __init__(self, *args, network: NetworkGuard, **kwargs) -> None:
        self._network = network
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        return self._network.connect(host, port, timeout, self.source_address)


class _GuardedSMTP_SSL(smtplib.SMTP_SSL, _GuardedSMTP):  # noqa: N801 - smtplib's name
    """TLS from the first byte over the guarded socket (SMTP_SSL wraps what _GuardedSMTP connects)."""

    def __init__(self, *args, network: NetworkGuard, **kwargs) -> None:
        self._network = network
        smtplib.SMTP_SSL.__init__(self, *args, **kwargs)


def _connected(creds: SmtpCredentials, *, helo: str, timeout: float, context: ssl.SSLContext,
               network: NetworkGuard) -> smtplib.SMTP:
    """A session past the server's greeting. Whatever goes wrong before the greeting is one
    ``TargetUnreachable``; only a refused address or a refused certificate says more."""
    try:
        if creds.security == "tls":
            return _GuardedSMTP_SSL(creds.host, creds.port, local_hostname=helo, timeout=timeout, context=context,
                                    network=network)
        return _GuardedSMTP(creds.host, creds.port, local_hostname=helo, timeout=timeout, network=network)
    except (TargetRefused, TargetUnreachable, ssl.SSLCertVerificationError):
        raise
    except (smtplib.SMTPException, OSError):
        raise TargetUnreachable(creds.host, creds.port) from None


class SmtpConnector(MessagingConnector):
    """Sends e-mail through one tenant's SMTP relay."""

    kind: ClassVar[str] = "smtp"
    display_name: ClassVar[str] = "E-mail (SMTP)"
    credentials_model: ClassVar[type[BaseModel]] = SmtpCredentials
    config_model: ClassVar[type[BaseModel] | None] = SmtpConfig
    webhook_secret_field: ClassVar[str | None] = None
    event_types: ClassVar[frozenset[str]] = frozenset()
    channels: ClassVar[frozenset[str]] = frozenset({"email"})

    credentials: SmtpCredentials
    settings: SmtpConfig

    # --- webhooks: SMTP has none; fail closed (see the module docstring) ---------------
    @classmethod
    def route_keys(cls, request: WebhookRequest) -> list[str]:
        return []

    @classmethod
    def verify(cls, request: WebhookRequest, secret: str) -> bool:
        return False

    @classmethod
    def parse(cls, request: WebhookRequest) -> list[InboundEvent]:
        return []

    # --- where it connects ----------------------------------------------------------
    def network_targets(self) -> list[tuple[str, str, int]]:
        """``(credentials field, host, port)`` the tenant chose and the hub will connect to."""
        return [("host", self.credentials.host, self.credentials.port)]

    # --- provider calls -------------------------------------------------------------
    @contextmanager
    def _session(self):
        """A connected, secured and (when configured) authenticated SMTP session."""
        creds = self.credentials
        helo = self.settings.helo_hostname or domain_of(creds.from_address)
        context = ssl.create_default_context()
        smtp = _connected(creds, helo=helo, timeout=self.timeout, context=context, network=self.network)
        try:
            smtp.ehlo()
            if creds.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if creds.username:
                password = creds.password.get_secret_value() if creds.password else ""
                smtp.login(creds.username, password)
            yield smtp
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()  # the server already hung up; nothing left to say

    def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one e-mail; returns the Message-ID we generated as the provider id."""
        if message.channel not in self.channels:
            raise PermanentProviderError(f"SMTP cannot send on channel {message.channel!r}")
        creds = self.credentials
        message_id = message_id_for(from_address=creds.from_address, idempotency_key=message.idempotency_key)
        email = compose_email(
            message, from_address=creds.from_address, from_name=creds.from_name, message_id=message_id
        )
        verify_generated_headers(email)
        try:
            with self._session() as smtp:
                smtp.send_message(email, from_addr=creds.from_address, to_addrs=[email["To"].addresses[0].addr_spec])
        except (smtplib.SMTPException, OSError, TargetRefused) as exc:
            raise provider_error(exc) from exc
        return SendResult(provider_message_id=message_id, status="sent", raw={"message_id": message_id})

    def check(self) -> HealthCheck:
        """Connect, secure, log in when credentials are given, then NOOP."""
        try:
            with self._session() as smtp:
                code, reply = smtp.noop()
        except (smtplib.SMTPException, OSError, TargetRefused) as exc:
            error = provider_error(exc)
            return HealthCheck(ok=False, detail=f"{error.code}: {error.message}")
        return HealthCheck(ok=code == 250, detail=f"{code} {_reply_text(reply)}")
