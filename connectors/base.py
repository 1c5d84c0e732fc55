"""The connector contract: what every provider integration declares and returns.

A connector *class* describes a provider (kind, credentials model, webhook scheme,
the event types it emits). A connector *instance* is built per call from one tenant's
integration (decrypted credentials + config) and makes provider calls; it is never
shared between tenants. Connectors import nothing from ``hub`` or ``tenants``: they
receive plain values and return the normalized types below, so each can be tested
alone against its emulator in ``connectors.sandbox``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar, NewType
from urllib.parse import parse_qsl

from pydantic import BaseModel

from connectors.netguard import NetworkGuard

# Normalized event types. A connector lists the ones it may emit in ``event_types``;
# tests fail when ``parse`` returns anything undeclared.
MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
CALENDAR_CHANGED = "calendar.changed"

# A provider's name for one of its objects (Meta's phone_number_id, a Twilio SID, a
# Google channel id). Some are all digits and read like phone numbers; they are not
# addresses and never go through phone normalization (the hub's addresses are E164).
ProviderId = NewType("ProviderId", str)


def load_json(body: bytes | str) -> Any:
    """``json.loads`` for bodies nobody has verified yet: nesting deep enough to exhaust
    the parser's recursion guard is a ValueError like any other unreadable body (the
    C decoder raises RecursionError cleanly; it must not become a 500 and a traceback)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


@dataclass(frozen=True)
class WebhookRequest:
    """An inbound provider call, free of any web framework.

    ``url`` is the public URL the provider called (``HUB_PUBLIC_URL`` + path + query):
    signature schemes such as Twilio's sign it, so it must not be the internal one.
    Header names are lower-case.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def form(self) -> dict[str, str]:
        """The form-encoded body (last value wins, as Twilio never repeats keys)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    @cached_property
    def form_items(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (nesting too deep included)."""
        return load_json(self.body)


@dataclass(frozen=True)
class InboundEvent:
    """One normalized event parsed from a webhook.

    ``provider_event_id`` de-duplicates repeated deliveries: the hub stores an event
    once per ``(kind, provider_event_id)``. ``data`` is JSON-serializable.
    """

    type: str
    provider_event_id: str
    data: dict[str, Any]
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class OutboundMessage:
    """A message to deliver on one channel (``sms``, ``whatsapp`` or ``email``)."""

    channel: str
    to: str
    body: str = ""
    sender: str | None = None
    media_urls: Sequence[str] = ()
    status_callback: str | None = None
    # e-mail
    subject: str | None = None
    html: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # a provider-approved template (WhatsApp outside the 24 h window)
    template_name: str | None = None
    template_language: str | None = None
    template_parameters: Sequence[str] = ()
    # a NAMED template's placeholder names, one per parameter (Meta's ``parameter_name``)
    template_parameter_names: Sequence[str] = ()
    # passed to the provider where it supports idempotent sends
    idempotency_key: str | None = None


@dataclass(frozen=True)
class SendResult:
    """What the provider answered to an accepted send."""

    provider_message_id: str
    status: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SentMessage:
    """A message the provider holds, as listed by ``find_sent``."""

    provider_message_id: str
    created_at: datetime
    body: str


@dataclass(frozen=True)
class HealthCheck:
    ok: bool
    detail: str


class ProviderError(Exception):
    """A provider call failed. ``permanent`` failures must not be retried.

    ``code`` is the provider's own error code (Twilio ``21211``, Meta ``131026``,
    SMTP ``550`` …) as a string; ``retry_after`` is seconds the provider asked us
    to wait (HTTP 429 ``Retry-After``).
    """

    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after = retry_after


class TransientProviderError(ProviderError):
    """5xx, 429, timeouts, connection errors: worth another attempt later."""

    permanent = False


class PermanentProviderError(ProviderError):
    """The provider refused the request itself (invalid number, unsubscribed …)."""

    permanent = True


class Connector:
    """Base of every connector. Subclasses set the class attributes.

    Webhook methods are class methods: the hub calls ``route_keys`` before it knows
    the tenant, then ``verify`` with that tenant's secret, then ``parse``.
    Provider calls are instance methods on an object built per call.
    """

    kind: ClassVar[str]
    display_name: ClassVar[str]
    credentials_model: ClassVar[type[BaseModel]]
    config_model: ClassVar[type[BaseModel] | None] = None
    # the credentials field whose value signs this provider's webhooks
    webhook_secret_field: ClassVar[str | None] = None
    event_types: ClassVar[frozenset[str]] = frozenset()
    # True when one request may batch events of several route keys (Meta batches the
    # changes of many phone numbers, even of several tenants, in one POST): then
    # ``route_keys`` lists every key and ``event_route_key`` names each event's own.
    routes_per_event: ClassVar[bool] = False

    def __init__(
        self,
        *,
        credentials: BaseModel,
        config: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
        network: NetworkGuard | None = None,
    ) -> None:
        # Every connector takes its own credentials model (or its fields, from a mapping
        # or another model) and its config model, so subclasses need not check either.
        self.credentials = self.credentials_model.model_validate(credentials, from_attributes=True)
        self.config = dict(config or {})
        self.settings = self.config_model.model_validate(self.config) if self.config_model else None
        # None means the real provider; the hub passes the sandbox's URL in development.
        self.base_url = base_url
        self.timeout = timeout
        # where the connector may connect when a tenant names the address (an SMTP host):
        # public addresses only unless the hub says otherwise (development)
        self.network = network or NetworkGuard()

    # --- webhooks -------------------------------------------------------------
    @classmethod
    def route_keys(cls, request: WebhookRequest) -> list[str]:
        """Candidate route keys naming the tenant, most specific first."""
        raise NotImplementedError

    @classmethod
    def event_route_key(cls, event: InboundEvent) -> str | None:
        """The route key of one parsed event (``routes_per_event`` connectors only)."""
        return None

    @classmethod
    def verify(cls, request: WebhookRequest, secret: str) -> bool:
        """True when the request carries the provider's valid signature."""
        raise NotImplementedError

    @classmethod
    def parse(cls, request: WebhookRequest) -> list[InboundEvent]:
        """The normalized events in a verified request (possibly none)."""
        raise NotImplementedError

    def network_targets(self) -> list[tuple[str, str, int]]:
        """``(credentials field, host, port)`` of every address the tenant chose that this
        connector connects to (checked against ``self.network`` when installed); none for a
        connector that only calls its provider's own endpoints."""
        return []

    # --- provider calls -------------------------------------------------------
    def check(self) -> HealthCheck:
        """Call the provider cheaply to prove the credentials work."""
        raise NotImplementedError


class MessagingConnector(Connector):
    """A connector that delivers messages (Twilio, WhatsApp Cloud, SMTP)."""

    channels: ClassVar[frozenset[str]] = frozenset()

    def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one message; raise Transient/PermanentProviderError on failure."""
        raise NotImplementedError

    def find_sent(self, *, channel: str, to: str, sender: str | None, since: datetime) -> list[SentMessage] | None:
        """Messages to ``to`` the provider created since ``since`` — how a sender whose
        earlier attempt got no answer learns whether it went out. None: the provider
        cannot be asked (the caller then decides between resending and giving up)."""
        return None
