"""Consent the hub learns outside a conversation: a provider refusing a message because
its recipient opted out at the carrier, and a recipient's one-click unsubscribe."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.orm import Session

from hub.contacts.models import ConsentStatus, Contact
from hub.contacts.repository import PHONE_CHANNELS, ContactRepository
from hub.db import utcnow
from hub.messaging.addresses import InvalidAddress, normalize_email, normalize_phone
from tenants.models import Tenant

log = structlog.get_logger("hub.contacts")

# Twilio's 21610: the person answered STOP to the carrier (Twilio blocks the pair itself);
# https://www.twilio.com/docs/api/errors/21610
SOURCE_CARRIER = "carrier_stop"
CARRIER_OPT_OUT_CODES = frozenset({"21610"})
# RFC 8058 one-click unsubscribe of an e-mail (hub.contacts.unsubscribe)
SOURCE_LIST_UNSUBSCRIBE = "list_unsubscribe"


def _opt_out(repo: ContactRepository, contact: Contact, channel: str, source: str) -> bool:
    changed = repo.set_consent(contact.id, channel, ConsentStatus.OPTED_OUT, source=source, now=utcnow())
    if changed:
        log.info("contact opted out", tenant_id=str(repo.tenant_id), channel=channel, source=source)
    return changed


def on_delivery_refused(*, session: Session, tenant_id: uuid.UUID, channel: str, to: str,
                        error_code: str | None) -> bool:
    """A provider refused a message because its recipient opted out at the carrier
    (Twilio 21610, at send time or in a status callback): the contact is opted out of
    that channel, as by a STOP keyword, so later sends are suppressed (or fall back)
    instead of refused again. True when the consent changed."""
    if error_code not in CARRIER_OPT_OUT_CODES or channel not in PHONE_CHANNELS:
        return False
    try:
        phone = normalize_phone(to)
    except InvalidAddress:
        return False
    repo = ContactRepository(session, tenant_id)
    return _opt_out(repo, repo.match_phone(phone, now=utcnow()), channel, SOURCE_CARRIER)


def unsubscribe_from_email(*, session: Session, tenant_id: uuid.UUID, address: str) -> bool:
    """The recipient of ``address`` pressed unsubscribe: opted out of the tenant's e-mail
    (the contact created if need be, so later sends are suppressed). True when it changed;
    nothing for a tenant that is gone."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or tenant.status in ("erasing", "erased"):
        return False
    try:
        email = normalize_email(address)
    except InvalidAddress:
        return False
    repo = ContactRepository(session, tenant_id)
    return _opt_out(repo, repo.match_email(email, now=utcnow()), "email", SOURCE_LIST_UNSUBSCRIBE)
