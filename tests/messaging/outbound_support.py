"""Helpers of the outbound-messaging tests: a tenant whose bring-your-own Twilio account
lives in the live hub's sandbox, and polling with short deadlines."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from hub.messaging.models import Conversation, Message, MessageAttempt, OutboxEntry
from hub.queue import make_celery
from hub.webhooks.routes import claim_route
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.support import bearer, create_client, create_tenant, get_token, random_hex

FINAL = {"delivered", "read", "failed", "dead", "undelivered"}
CUSTOMER = "+5511987654321"


@dataclass
class TwilioTenant:
    tenant_id: uuid.UUID
    headers: dict[str, str]
    account_sid: str
    auth_token: str
    number: str
    integration_id: uuid.UUID


def make_fast(hub, *, max_attempts: int = 5) -> None:
    """Short backoff and provider timeout, so retries take milliseconds, not minutes."""
    settings = hub.runtime.settings
    settings.delivery_retry_base_seconds = 0.02
    settings.delivery_retry_cap_seconds = 0.2
    # long enough that a loaded CI machine's slow answer is not taken for a lost one
    settings.delivery_timeout_seconds = 6.0
    settings.delivery_max_attempts = max_attempts
    hub.sandbox.twilio.callback_delay = 0.02


def twilio_tenant(hub, slug: str = "acme", *, channels=("sms", "whatsapp"), status=IntegrationStatus.ACTIVE,
                  scopes: list[str] | None = None) -> TwilioTenant:
    """A tenant, a token, and its Twilio integration: a sandbox main account of its own
    (the sandbox accepts any well-formed one) with its first number routed to the tenant."""
    runtime = hub.runtime
    tenant_id = create_tenant(runtime, slug)
    headers = bearer(get_token(hub.http, create_client(runtime, tenant_id, scopes)))
    sid, token = "AC" + random_hex(16), random_hex(16)
    hub.sandbox.twilio.register_account(sid, token)
    number = hub.sandbox.twilio.numbers(account_sid=sid)[0]["phone_number"]
    with runtime.session_factory() as session, session.begin():
        integration = tenants.put_integration(
            session=session, vault=runtime.vault, tenant_id=tenant_id, kind="twilio",
            credentials={"account_sid": sid, "auth_token": token},
            config={"numbers": [number], "channels": list(channels)}, status=status,
        )
        claim_route(session, kind="twilio", route_key=number, integration=integration)
        integration_id = integration.id
    return TwilioTenant(tenant_id, headers, sid, token, number, integration_id)


def eventually(probe: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def get_message(hub, tenant: TwilioTenant, message_id: str) -> dict:
    response = hub.http.get(f"/v1/messages/{message_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_status(hub, tenant: TwilioTenant, message_id: str, *statuses: str, timeout: float = 30.0) -> dict:
    """The message once its status is one of ``statuses``."""
    last: dict = {}

    def probe() -> dict | None:
        nonlocal last
        last = get_message(hub, tenant, message_id)
        return last if last["status"] in statuses else None

    try:
        return eventually(probe, timeout=timeout, what=f"status in {statuses}")
    except AssertionError:
        raise AssertionError(f"message never reached {statuses}: {last}") from None


def send(hub, tenant: TwilioTenant, *, to: str = CUSTOMER, body: str = "Sua consulta é amanhã às 14h.",
         channel: str = "sms", headers: dict | None = None, **fields) -> Any:
    return hub.http.post("/v1/messages", headers={**tenant.headers, **(headers or {})},
                         json={"channel": channel, "to": to, "body": body, **fields})


def sent_to(hub, number: str) -> list[dict]:
    """What reached the sandbox for ``number`` (either channel)."""
    return hub.sandbox.twilio.sent_messages(to=number)


def count(runtime, model, tenant_id: uuid.UUID | None = None) -> int:
    stmt = select(func.count()).select_from(model)
    if tenant_id is not None and hasattr(model, "tenant_id"):
        stmt = stmt.where(model.tenant_id == tenant_id)
    with runtime.session_factory() as session:
        return session.scalar(stmt)


def rows_of(runtime, tenant_id: uuid.UUID) -> dict[str, int]:
    """How many messages, conversations, attempts and outbox entries the tenant has."""
    with runtime.session_factory() as session:
        message_ids = select(Message.id).where(Message.tenant_id == tenant_id)
        return {
            "messages": session.scalar(select(func.count()).where(Message.tenant_id == tenant_id)),
            "conversations": session.scalar(select(func.count()).where(Conversation.tenant_id == tenant_id)),
            "attempts": session.scalar(select(func.count()).where(MessageAttempt.message_id.in_(message_ids))),
            "outbox": session.scalar(select(func.count()).where(OutboxEntry.message_id.in_(message_ids))),
        }


def outbox_entry(runtime, message_id) -> OutboxEntry | None:
    with runtime.session_factory() as session:
        return session.scalar(select(OutboxEntry).where(OutboxEntry.message_id == uuid.UUID(str(message_id))))


def backdate(runtime, message_id, *, seconds: float = 3600) -> None:
    """Move a message's lease and its outbox entry into the past: as if that much time went by."""
    from datetime import timedelta

    from hub.db import utcnow

    past = utcnow() - timedelta(seconds=seconds)
    mid = uuid.UUID(str(message_id))
    with runtime.session_factory() as session, session.begin():
        session.execute(update(Message).where(Message.id == mid, Message.claimed_until.is_not(None))
                        .values(claimed_until=past))
        session.execute(update(OutboxEntry).where(OutboxEntry.message_id == mid).values(available_at=past))


def offline_runtime(runtime, broker: str = "memory://"):
    """The same runtime publishing elsewhere: ``memory://`` is a queue no worker reads
    (a broker that accepts and loses), a dead Redis URL one that refuses."""
    settings = runtime.settings.model_copy(update={"redis_url": "" if broker == "memory://" else broker})
    return dataclasses.replace(runtime, celery=make_celery(settings), relay=None)
