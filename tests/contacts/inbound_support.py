"""Helpers of the contacts tests: a tenant with a Twilio integration (nothing delivers:
replies stay queued in the outbox), and inbound messages fed through the real webhook
path — parsed by the real connector, stored as the route stores them, handled by the
worker's ``handle_event``."""

from __future__ import annotations

import uuid
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import select

from connectors.base import WebhookRequest
from connectors.twilio import TwilioConnector
from hub.contacts.models import Contact, ContactConsent
from hub.db import new_id, utcnow
from hub.messaging.models import Direction, Message
from hub.webhooks import service as webhooks
from hub.webhooks.models import WebhookEvent
from tests.support import random_hex
from tests.webhooks.helpers import TwilioTenant, inbound_form, new_account_sid, twilio_tenant

CUSTOMER = "+5511987654321"
OUR_NUMBER = "+5511930000001"


def clinic(runtime, slug: str = "clinica", number: str = OUR_NUMBER) -> TwilioTenant:
    return twilio_tenant(runtime, slug, account_sid=new_account_sid(), auth_token=random_hex(16),
                         numbers=[number])


def store_event(runtime, tenant_id: uuid.UUID, *, kind: str, event_type: str, payload: dict,
                provider_event_id: str, integration_id: uuid.UUID | None = None,
                received_at: datetime | None = None) -> uuid.UUID:
    with runtime.session_factory() as session, session.begin():
        row = WebhookEvent(id=new_id(), kind=kind, provider_event_id=provider_event_id, type=event_type,
                           tenant_id=tenant_id, integration_id=integration_id, payload=payload,
                           received_at=received_at or utcnow())
        session.add(row)
        return row.id


def inbound(runtime, tenant: TwilioTenant | uuid.UUID, body: str, *, from_: str = CUSTOMER, channel: str = "sms",
            at: datetime | None = None) -> uuid.UUID:
    """A Twilio inbound message handled by the worker; its event id."""
    tenant_id = tenant if isinstance(tenant, uuid.UUID) else tenant.tenant_id
    to = OUR_NUMBER if isinstance(tenant, uuid.UUID) else tenant.numbers[0]
    form = inbound_form(to=to, from_=from_, body=body, account_sid="AC" + "0" * 32, channel=channel)
    [event] = TwilioConnector.parse(WebhookRequest("POST", "http://x/", {}, urlencode(form).encode()))
    event_id = store_event(runtime, tenant_id, kind="twilio", event_type=event.type, payload=event.data,
                           provider_event_id=event.provider_event_id, received_at=at,
                           integration_id=None if isinstance(tenant, uuid.UUID) else tenant.integration_id)
    assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "handled"
    return event_id


def replies(runtime, tenant_id: uuid.UUID) -> list[Message]:
    """The tenant's outbound messages, oldest first."""
    with runtime.session_factory() as session:
        return list(session.scalars(select(Message).where(Message.tenant_id == tenant_id,
                                                          Message.direction == Direction.OUTBOUND)
                                    .order_by(Message.created_at)))


def contacts(runtime, tenant_id: uuid.UUID) -> list[Contact]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Contact).where(Contact.tenant_id == tenant_id)
                                    .order_by(Contact.created_at)))


def consent(runtime, tenant_id: uuid.UUID, phone: str, channel: str) -> ContactConsent | None:
    with runtime.session_factory() as session:
        return session.scalar(select(ContactConsent).join(Contact, Contact.id == ContactConsent.contact_id)
                              .where(Contact.tenant_id == tenant_id, Contact.phone == phone,
                                     ContactConsent.channel == channel))
