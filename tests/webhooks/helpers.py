"""Helpers for the inbound-path tests: tenants with a Twilio integration, Twilio-signed requests, polling."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from hub.messaging.models import Conversation, Message
from hub.webhooks.models import WebhookEvent
from hub.webhooks.routes import claim_route
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.support import create_tenant, random_hex

T = TypeVar("T")


@dataclass
class TwilioTenant:
    tenant_id: uuid.UUID
    integration_id: uuid.UUID
    account_sid: str
    auth_token: str
    numbers: list[str]


def new_account_sid() -> str:
    return "AC" + random_hex(16)


def twilio_tenant(runtime, slug: str, *, account_sid: str, auth_token: str, numbers: list[str],
                  route_keys: list[str] | None = None, stored_token: str | None = None) -> TwilioTenant:
    """A tenant whose Twilio integration holds the account's credentials (or
    ``stored_token``) and owns ``route_keys`` (default: its numbers)."""
    tenant_id = create_tenant(runtime, slug)
    with runtime.session_factory() as session, session.begin():
        integration = tenants.put_integration(
            session=session, vault=runtime.vault, tenant_id=tenant_id, kind="twilio",
            credentials={"account_sid": account_sid, "auth_token": stored_token or auth_token},
            config={"numbers": numbers, "channels": ["sms", "whatsapp"]}, status=IntegrationStatus.ACTIVE,
        )
        for key in numbers if route_keys is None else route_keys:
            claim_route(session, kind="twilio", route_key=key, integration=integration)
        integration_id = integration.id
    return TwilioTenant(tenant_id, integration_id, account_sid, auth_token, numbers)


def twilio_signature(url: str, form: dict[str, str], auth_token: str) -> str:
    """Signed by Twilio's own SDK helper, as Twilio signs."""
    return RequestValidator(auth_token).compute_signature(url, form)


def inbound_form(*, to: str, from_: str, body: str = "Olá", account_sid: str, message_sid: str | None = None,
                 channel: str = "sms", **extra: str) -> dict[str, str]:
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    sid = message_sid or "SM" + random_hex(16)
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": account_sid, "From": prefix + from_,
            "To": prefix + to, "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01", **extra}


def status_form(*, message_sid: str, status: str, from_: str, to: str, account_sid: str,
                **extra: str) -> dict[str, str]:
    return {"MessageSid": message_sid, "SmsSid": message_sid, "MessageStatus": status, "SmsStatus": status,
            "AccountSid": account_sid, "From": from_, "To": to, "ApiVersion": "2010-04-01", **extra}


def wait_for(probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(interval)


def count(runtime, model: Any, *where: Any) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def events(runtime, *where: Any) -> list[WebhookEvent]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(WebhookEvent).where(*where).order_by(WebhookEvent.received_at)))


def conversations(runtime, tenant_id: uuid.UUID) -> list[Conversation]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Conversation).where(Conversation.tenant_id == tenant_id)
                                    .order_by(Conversation.created_at)))


def messages(runtime, *where: Any) -> list[Message]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Message).where(*where).order_by(Message.created_at)))
