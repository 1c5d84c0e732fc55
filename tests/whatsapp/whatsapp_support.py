"""Helpers of the hub-side WhatsApp Cloud tests: tenants whose whatsapp_cloud integration
is installed the way PUT /v1/integrations/whatsapp_cloud installs it, and Meta payloads
signed the way Meta signs them (by the sandbox's own signer, not the connector's)."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from connectors.sandbox.meta import sign
from hub.db import utcnow
from hub.messaging.models import Direction, Message, MessageStatus
from hub.webhooks.models import WebhookEvent
from hub.webhooks.service import handle_event
from hub.whatsapp import service as whatsapp
from hub.whatsapp.models import WhatsAppTemplate
from tests.support import bearer, create_client, create_tenant, get_token, random_hex

CUSTOMER_WA_ID = "5511987654321"
CUSTOMER = "+5511987654321"
BUSINESS_DISPLAY = "5511999990000"  # metadata.display_phone_number: digits, no "+"
BUSINESS = "+5511999990000"


@dataclass
class WhatsAppTenant:
    tenant_id: uuid.UUID
    integration_id: uuid.UUID
    phone_number_id: str
    app_secret: str
    verify_token: str
    access_token: str
    waba_id: str


def new_phone_number_id() -> str:
    return str(100000000000000 + random.randrange(899999999999999))


def whatsapp_tenant(runtime, slug: str, *, app_secret: str | None = None, phone_number_id: str | None = None,
                    waba_id: str = "102290129340398", locale: str = "pt-BR") -> WhatsAppTenant:
    tenant_id = create_tenant(runtime, slug, locale=locale)
    values = {"phone_number_id": phone_number_id or new_phone_number_id(), "waba_id": waba_id,
              "access_token": "EAAG" + random_hex(12), "app_secret": app_secret or random_hex(16),
              "verify_token": "verify-" + random_hex(8)}
    with runtime.session_factory() as session, session.begin():
        # as a tenant whose app is already subscribed to the account (Meta's dashboard): these
        # tests feed Meta's webhooks by hand; the API's install subscribes (test_whatsapp_live)
        integration = whatsapp.install_whatsapp_cloud(session=session, runtime=runtime, tenant_id=tenant_id,
                                                      credentials=values, config={}, subscribe=False)
        integration_id = integration.id
    return WhatsAppTenant(tenant_id, integration_id, values["phone_number_id"], values["app_secret"],
                          values["verify_token"], values["access_token"], waba_id)


def headers_for(http, runtime, tenant_id: uuid.UUID, scopes: list[str] | None = None) -> dict[str, str]:
    return bearer(get_token(http, create_client(runtime, tenant_id, scopes)))


def change(phone_number_id: str, *, messages: list[dict] | None = None, statuses: list[dict] | None = None,
           wa_id: str = CUSTOMER_WA_ID, name: str = "Maria", display: str = BUSINESS_DISPLAY) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id}}
    if messages is not None:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": wa_id}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def envelope(*entries: list[dict]) -> bytes:
    """A webhook body: one ``entry`` per list of changes."""
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": changes} for changes in entries]}).encode()


def wamid() -> str:
    return "wamid.HBgN" + random_hex(16).upper()


def text_message(body: str, *, sender: str = CUSTOMER_WA_ID, message_id: str | None = None) -> dict[str, Any]:
    return {"from": sender, "id": message_id or wamid(), "timestamp": str(int(time.time())), "type": "text",
            "text": {"body": body}}


def status_item(message_id: str, status: str, *, error: tuple[int, str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": message_id, "status": status, "timestamp": str(int(time.time())),
                            "recipient_id": CUSTOMER_WA_ID}
    if error:
        item["errors"] = [{"code": error[0], "title": error[1], "message": error[1],
                           "error_data": {"details": f"{error[1]} (details)"}}]
    return item


def post_signed(client, body: bytes, secret: str, path: str = "/webhooks/whatsapp"):
    return client.post(path, content=body, headers={"Content-Type": "application/json",
                                                    "X-Hub-Signature-256": sign(secret, body)})


def handle_stored(runtime) -> list[str]:
    """Run the worker's handler over every stored, unhandled event (what the relay would hand it)."""
    with runtime.session_factory() as session:
        ids = list(session.scalars(select(WebhookEvent.id).where(WebhookEvent.handled_at.is_(None))
                                   .order_by(WebhookEvent.received_at)))
    return [handle_event(runtime=runtime, event_id=i) for i in ids]


def stored_events(runtime) -> list[WebhookEvent]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.received_at)))


def messages_of(runtime, tenant_id: uuid.UUID, direction: str | None = None) -> list[Message]:
    with runtime.session_factory() as session:
        query = select(Message).where(Message.tenant_id == tenant_id)
        if direction:
            query = query.where(Message.direction == direction)
        return list(session.scalars(query.order_by(Message.created_at)))


def outbound_message(runtime, tenant: WhatsAppTenant, provider_message_id: str, *, to: str = CUSTOMER) -> uuid.UUID:
    """An outbound message Meta accepted (as the delivery worker records it)."""
    now = utcnow()
    message = Message(tenant_id=tenant.tenant_id, integration_id=tenant.integration_id,
                      direction=Direction.OUTBOUND, channel="whatsapp", to_address=to,
                      from_address=tenant.phone_number_id, body="Olá", media=[], status=MessageStatus.SENT,
                      provider_message_id=provider_message_id, sent_at=now, created_at=now, updated_at=now)
    with runtime.session_factory() as session, session.begin():
        session.add(message)
    return message.id


def add_template(runtime, tenant: WhatsAppTenant, name: str, language: str = "pt_BR", *, status: str = "APPROVED",
                 body: str = "Olá {{1}}, sua consulta é em {{2}}.", header: str | None = None) -> None:
    """A template row as a sync leaves it (the sync itself is tested against the sandbox)."""
    from connectors.whatsapp_cloud.templates import parameter_counts

    components: list[dict[str, Any]] = [{"type": "BODY", "text": body}]
    if header is not None:
        components.insert(0, {"type": "HEADER", "format": "TEXT", "text": header})
    with runtime.session_factory() as session, session.begin():
        session.add(WhatsAppTemplate(tenant_id=tenant.tenant_id, integration_id=tenant.integration_id, name=name,
                                     language=language, status=status, category="UTILITY",
                                     parameter_counts=parameter_counts(components), components=components))
