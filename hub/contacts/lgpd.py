"""LGPD: everything the hub holds about one person (access, art. 18), and its erasure."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from hub.calendar.models import Appointment
from hub.contacts.models import Contact, ContactConsent
from hub.contacts.repository import ContactRepository
from hub.contacts.service import get_contact
from hub.db import utcnow
from hub.messaging.inbound import contact_address
from hub.messaging.models import CLAIMABLE, Conversation, Direction, Message, MessageStatus, OutboxEntry
from hub.webhooks.models import WebhookEvent


@dataclass(frozen=True)
class ContactData:
    """Everything the hub holds about one person."""

    contact: Contact
    consents: list[ContactConsent]
    conversations: list[Conversation]
    messages: list[Message]
    appointments: list[Appointment]


def _appointments_of(session: Session, tenant_id: uuid.UUID, contact: Contact) -> list[Appointment]:
    matches = [c == v for c, v in ((Appointment.contact_phone, contact.phone),
                                    (Appointment.contact_email, contact.email)) if v]
    if not matches:
        return []
    return list(session.scalars(select(Appointment).where(Appointment.tenant_id == tenant_id, or_(*matches))
                                .order_by(Appointment.start_at)))


def export_contact(*, session: Session, tenant_id: uuid.UUID, contact_id: uuid.UUID) -> ContactData:
    """The contact, their consents, conversations, messages and appointments (LGPD access)."""
    repo = ContactRepository(session, tenant_id)
    contact = get_contact(session=session, tenant_id=tenant_id, contact_id=contact_id)
    conversations = repo.conversations_of(contact)
    return ContactData(contact=contact, consents=repo.consents(contact.id), conversations=conversations,
                       messages=repo.messages_of(contact, [c.id for c in conversations]),
                       appointments=_appointments_of(session, tenant_id, contact))


def pseudonym() -> str:
    """A stand-in address no one can map back to the person: an HMAC under a random key
    that is never stored, so not even the hub can recompute it from the phone."""
    return "erased:" + hmac.new(secrets.token_bytes(32), secrets.token_bytes(16), hashlib.sha256).hexdigest()[:16]


def _erase_webhook_events(session: Session, tenant_id: uuid.UUID, contact: Contact, now: datetime) -> int:
    """Strip the raw provider events sent by or about the contact's phone or WhatsApp BSUID."""
    matches = []
    if contact.phone:
        tail = contact.phone[-8:]  # every spelling (a wa_id without the 9th digit too) ends so
        matches += [WebhookEvent.payload[key].as_string().like(f"%{tail}") for key in ("from", "recipient_id")]
    if contact.whatsapp_user_id:
        matches += [WebhookEvent.payload[key].as_string() == contact.whatsapp_user_id
                    for key in ("from_user_id", "recipient_user_id")]
    if not matches:
        return 0
    candidates = session.scalars(select(WebhookEvent).where(WebhookEvent.tenant_id == tenant_id, or_(*matches)))
    erased = 0
    for event in candidates:
        raw = event.payload.get("from") or event.payload.get("recipient_id") or ""
        channel = event.payload.get("channel") or "whatsapp"
        by_phone = bool(raw) and contact.phone is not None and contact_address(channel, str(raw)) == contact.phone
        by_user = contact.whatsapp_user_id is not None and contact.whatsapp_user_id in (
            event.payload.get("from_user_id"), event.payload.get("recipient_user_id"))
        if not (by_phone or by_user):
            continue
        kept = {k: event.payload[k] for k in ("channel", "message_sid", "message_id", "status")
                if k in event.payload}
        event.payload = {**kept, "erased_at": now.isoformat()}
        # an event not handled yet must not bring the person's message back
        event.handled_at = event.handled_at or now
        erased += 1
    return erased


def erase_contact(*, session: Session, tenant_id: uuid.UUID, contact_id: uuid.UUID) -> str:
    """LGPD erasure in the caller's transaction: the contact's personal data goes from the
    contact, its conversations, messages, appointments and raw webhook events; the rows
    stay (counts by channel, status and day still add up). Returns the pseudonym used."""
    repo = ContactRepository(session, tenant_id)
    contact = get_contact(session=session, tenant_id=tenant_id, contact_id=contact_id)
    now = utcnow()
    alias = pseudonym()
    addresses = {a for a in (contact.phone, contact.email, contact.whatsapp_user_id) if a}
    conversations = repo.conversations_of(contact)
    messages = repo.messages_of(contact, [c.id for c in conversations])
    unsent = [m.id for m in messages if m.direction == Direction.OUTBOUND and m.status in CLAIMABLE]
    if unsent:
        # nothing is sent to a person who asked to be forgotten (a message a worker holds
        # right now may still go, with the body it already read)
        session.execute(delete(OutboxEntry).where(OutboxEntry.message_id.in_(unsent)))
    for message in messages:
        if message.id in unsent:
            message.status = MessageStatus.FAILED
            message.error_code = "contact_erased"
            message.next_attempt_at = None
        message.body = ""
        message.media = []
        # a provider's error may quote the number
        message.error_message = "the contact was erased before delivery" if message.id in unsent else None
        if message.to_address in addresses:
            message.to_address = alias
        if message.from_address in addresses:
            message.from_address = alias
    for conversation in conversations:
        conversation.contact_address = alias
    for appointment in _appointments_of(session, tenant_id, contact):
        appointment.contact_name = appointment.contact_phone = appointment.contact_email = None
    _erase_webhook_events(session, tenant_id, contact, now)
    repo.delete_consents(contact.id)
    contact.name = contact.phone = contact.email = contact.whatsapp_user_id = contact.locale = None
    contact.erased_at = now
    contact.updated_at = now
    session.flush()
    return alias
