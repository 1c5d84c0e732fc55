"""Contacts: CRUD, business hours, auto-reply rules, and what happens when a contact writes
in — matched or created by phone, opt-out/opt-in keywords, auto-replies.

The inbound hook is ``on_inbound_message``, called by the webhook handlers right after
``record_inbound_message``. Everything it does is idempotent (a repeated event changes
nothing and sends nothing twice): consent changes are conditional updates, and each
auto-reply claims a unique row per (conversation, rule, window) first. The LGPD export
and erasure live in ``lgpd.py``; consent a provider or a recipient reports outside a
message (a carrier STOP, one-click unsubscribe) in ``consent.py``.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.whatsapp_cloud.users import is_bsuid
from hub.calendar.models import Appointment
from hub.contacts.models import AutoReplyRule, BusinessHours, ConsentStatus, Contact, ContactConsent
from hub.contacts.repository import PHONE_CHANNELS, AutoReplyRepository, ContactRepository
from hub.contacts.schemas import (
    WEEKDAYS,
    AutoReplyCreate,
    AutoReplyUpdate,
    BusinessHoursWrite,
    ContactCreate,
    ContactUpdate,
)
from hub.db import utcnow
from hub.errors import Conflict, HubError, Invalid, NotFound
from hub.messaging.addresses import InvalidAddress, check_recipient_phone, normalize_email, normalize_phone
from hub.messaging.channels import region_of
from hub.messaging.models import Direction, Message
from hub.messaging.schemas import ConversationReply
from hub.messaging.service import reply_to_conversation
from hub.pagination import Page
from tenants.models import Tenant

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.contacts")

OPT_OUT_KEYWORDS = frozenset({"stop", "sair", "parar", "cancelar", "descadastrar"})
OPT_IN_KEYWORDS = frozenset({"start", "voltar"})
SOURCE_API = "api"
SOURCE_KEYWORD = "inbound_keyword"
# a keyword rule answers a conversation at most once in this long
KEYWORD_WINDOW = timedelta(hours=24)
AFTER_HOURS = "after_hours"
# how far ahead the next opening is looked for (a schedule of holidays only has none)
OPENING_HORIZON_DAYS = 400

CONFIRMATIONS: dict[str, dict[str, str]] = {
    "pt": {
        ConsentStatus.OPTED_OUT: "Pronto: você não receberá mais mensagens nossas por aqui. "
                                 "Para voltar a receber, responda VOLTAR.",
        ConsentStatus.OPTED_IN: "Pronto: você voltará a receber nossas mensagens por aqui. "
                                "Para cancelar, responda SAIR.",
    },
    "en": {
        ConsentStatus.OPTED_OUT: "Done: you will no longer receive messages from us here. "
                                 "Reply START to receive them again.",
        ConsentStatus.OPTED_IN: "Done: you will receive our messages here again. Reply STOP to unsubscribe.",
    },
}


# --- text matching ---------------------------------------------------------------------


def _fold(text: str) -> str:
    """Case and accents folded: "Sáir" and "SAIR" are one word."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _is_edge(char: str) -> bool:
    # whitespace, punctuation, symbols (emoji) and controls around a keyword do not count
    return unicodedata.category(char)[0] in "PZSC"


def consent_keyword(body: str) -> str | None:
    """The opt-out/opt-in keyword the whole message is, folded, or None."""
    text = _fold(body or "")
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    word = text[start:end]
    return word if word in OPT_OUT_KEYWORDS or word in OPT_IN_KEYWORDS else None


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", _fold(text)))


def keywords_match(keywords: list[str], body: str) -> bool:
    """Whether one of ``keywords`` appears in ``body`` as whole words (case and accents folded)."""
    words = f" {_words(body)} "
    return any((kw := _words(keyword)) and f" {kw} " in words for keyword in keywords)


# --- contacts ------------------------------------------------------------------------------


def _phone(session: Session, tenant_id: uuid.UUID, raw: str) -> str:
    try:
        return check_recipient_phone(normalize_phone(raw, default_region=region_of(session, tenant_id)))
    except InvalidAddress as exc:
        raise Invalid(f"phone: {exc}", code="invalid_phone") from None


def _email(raw: str) -> str:
    try:
        return normalize_email(raw)
    except InvalidAddress as exc:
        raise Invalid(f"email: {exc}", code="invalid_email") from None


def _taken(contact: Contact) -> Conflict:
    return Conflict("a contact with this phone or e-mail exists already", code="contact_exists",
                    details={"id": str(contact.id)})


def list_contacts(*, session: Session, tenant_id: uuid.UUID, limit: int, cursor: str | None = None,
                  phone: str | None = None, email: str | None = None) -> Page[Contact]:
    """One page of the tenant's contacts, newest first; ``phone`` in any spelling."""
    return ContactRepository(session, tenant_id).list(
        limit=limit, cursor=cursor, phone=_phone(session, tenant_id, phone) if phone else None,
        email=_email(email) if email else None)


def get_contact(*, session: Session, tenant_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    """The tenant's contact, or NotFound (another tenant's, or an erased one, is not found either)."""
    contact = ContactRepository(session, tenant_id).live(contact_id)
    if contact is None:
        raise NotFound("contact not found")
    return contact


def contact_consents(*, session: Session, tenant_id: uuid.UUID, contact_id: uuid.UUID) -> list[ContactConsent]:
    """The contact's consent per channel."""
    return ContactRepository(session, tenant_id).consents(contact_id)


def _save(session: Session, repo: ContactRepository, contact: Contact) -> None:
    """Flush ``contact``; a phone or e-mail another request took meanwhile is a 409."""
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
    except IntegrityError:
        existing = repo.by_phone_or_email(phone=contact.phone, email=contact.email, excluding=contact.id)
        if existing is None:
            raise
        raise _taken(existing) from None


def _record_consents(repo: ContactRepository, contact: Contact, consent: dict[str, str], now: datetime) -> None:
    for channel, status in consent.items():
        repo.set_consent(contact.id, channel, status, source=SOURCE_API, now=now)


def create_contact(*, session: Session, tenant_id: uuid.UUID, contact_in: ContactCreate) -> Contact:
    """Create a contact; 409 ``contact_exists`` (with its id) when the phone or e-mail is taken."""
    repo = ContactRepository(session, tenant_id)
    phone = _phone(session, tenant_id, contact_in.phone) if contact_in.phone else None
    email = _email(contact_in.email) if contact_in.email else None
    existing = repo.by_phone_or_email(phone=phone, email=email)
    if existing is not None:
        raise _taken(existing)
    now = utcnow()
    contact = Contact(id=uuid.uuid4(), tenant_id=tenant_id, name=contact_in.name, phone=phone, email=email,
                      locale=contact_in.locale, created_at=now, updated_at=now)
    _save(session, repo, contact)
    _record_consents(repo, contact, contact_in.consent, now)
    session.flush()
    return contact


def update_contact(*, session: Session, tenant_id: uuid.UUID, contact_id: uuid.UUID,
                   contact_in: ContactUpdate) -> Contact:
    """Change the fields sent; consent changes are recorded with source ``api``."""
    repo = ContactRepository(session, tenant_id)
    contact = get_contact(session=session, tenant_id=tenant_id, contact_id=contact_id)
    sent = contact_in.model_fields_set
    phone, email = contact.phone, contact.email
    if "phone" in sent:
        phone = _phone(session, tenant_id, contact_in.phone) if contact_in.phone else None
    if "email" in sent:
        email = _email(contact_in.email) if contact_in.email else None
    if not phone and not email:
        raise Invalid("a contact needs a phone or an email", code="contact_unreachable")
    existing = repo.by_phone_or_email(phone=phone if "phone" in sent else None,
                                      email=email if "email" in sent else None, excluding=contact.id)
    if existing is not None:
        raise _taken(existing)
    contact.phone, contact.email = phone, email
    for field in ("name", "locale"):
        if field in sent:
            setattr(contact, field, getattr(contact_in, field))
    now = utcnow()
    contact.updated_at = now
    _save(session, repo, contact)
    _record_consents(repo, contact, contact_in.consent, now)
    session.flush()
    return contact


# --- inbound: matching, consent keywords, auto-replies --------------------------------------


@dataclass(frozen=True)
class InboundOutcome:
    """What ``on_inbound_message`` did."""

    contact_id: uuid.UUID | None
    consent_changed: str | None = None  # the new status, when a keyword changed it
    reply: Message | None = None  # the confirmation or auto-reply queued
    reply_kind: str | None = None  # "confirmation", "keyword" or "after_hours"


def _locale(session: Session, tenant_id: uuid.UUID, contact: Contact | None) -> str:
    tenant = session.get(Tenant, tenant_id)
    locale = (contact.locale if contact else None) or (tenant.locale if tenant else None) or "pt-BR"
    language = locale.split("-")[0].lower()
    return language if language in CONFIRMATIONS else "pt"


def _zone(session: Session, tenant_id: uuid.UUID) -> ZoneInfo:
    tenant = session.get(Tenant, tenant_id)
    try:
        return ZoneInfo(tenant.timezone if tenant else "America/Sao_Paulo")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _queue_reply(session: Session, runtime: Runtime, tenant_id: uuid.UUID, conversation_id: uuid.UUID, body: str,
                 *, bypass_consent: bool = False, claim: tuple[str, str] | None = None,
                 now: datetime | None = None) -> Message | None:
    """Queue ``body`` on the conversation (claiming the auto-reply window first, if any),
    in a savepoint: when it cannot go (no sending integration, a channel not enabled, a
    sender that is no phone) nothing of it stays and the inbound message is still handled."""
    try:
        with session.begin_nested():
            claimed = None
            if claim is not None:
                claimed = AutoReplyRepository(session, tenant_id).claim_window(conversation_id, *claim,
                                                                                now=now or utcnow())
                if claimed is None:
                    return None  # this window had its reply already
            queued = reply_to_conversation(session=session, runtime=runtime, tenant_id=tenant_id,
                                           conversation_id=conversation_id, reply_in=ConversationReply(body=body),
                                           bypass_consent=bypass_consent)
            if claimed is not None:
                AutoReplyRepository(session, tenant_id).record_reply(claimed, queued.message.id)
            return queued.message
    except HubError as exc:
        log.warning("automatic reply not sent", tenant_id=str(tenant_id), conversation_id=str(conversation_id),
                    code=exc.code, reason=exc.message)
        return None


def _match_contact(repo: ContactRepository, message: Message, now: datetime,
                   whatsapp_user_id: str | None = None) -> Contact | None:
    address = message.from_address or ""
    if message.channel == "whatsapp" and is_bsuid(address):
        return repo.match_whatsapp_user(address, now=now)  # a username user: no phone to key by
    if message.channel in PHONE_CHANNELS:
        try:
            if normalize_phone(address) != address:
                return None
        except InvalidAddress:
            return None  # a short code or an alphanumeric sender is no person to keep
        contact = repo.match_phone(address, now=now)
        if whatsapp_user_id and message.channel == "whatsapp" and is_bsuid(whatsapp_user_id):
            repo.link_whatsapp_user(contact, whatsapp_user_id, now=now)
        return contact
    return repo.by_address(message.channel, address)


def whatsapp_sender_address(session: Session, tenant_id: uuid.UUID, phone: str | None, user_id: str | None) -> str:
    """The address a WhatsApp sender's messages are threaded under: the phone when Meta
    sends it, else the phone of the contact the BSUID belongs to (a person who hid the
    number later stays in the same conversation), else the BSUID itself."""
    if phone:
        return phone
    if not user_id:
        return ""
    contact = ContactRepository(session, tenant_id).by_whatsapp_user(user_id)
    return contact.phone if contact is not None and contact.phone else user_id


def on_inbound_message(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID, message: Message,
                       now: datetime | None = None, whatsapp_user_id: str | None = None) -> InboundOutcome:
    """After an inbound message is recorded: match or create its contact by phone, apply
    an opt-out/opt-in keyword (confirmed once, when the consent changes), otherwise
    answer with an auto-reply due in this window. ``now`` defaults to when the message
    was received (a late retry judges business hours by then)."""
    if message.direction != Direction.INBOUND or message.conversation_id is None:
        return InboundOutcome(None)
    now = now or message.created_at or utcnow()
    repo = ContactRepository(session, tenant_id)
    contact = _match_contact(repo, message, now, whatsapp_user_id)
    if contact is not None and message.contact_id is None:
        message.contact_id = contact.id  # the message is this contact's, as an outbound one to them is
        session.flush()
    keyword = consent_keyword(message.body)
    if keyword is not None and contact is not None:
        status = ConsentStatus.OPTED_OUT if keyword in OPT_OUT_KEYWORDS else ConsentStatus.OPTED_IN
        if not repo.set_consent(contact.id, message.channel, status, source=SOURCE_KEYWORD, now=now):
            return InboundOutcome(contact.id)  # no change: no second confirmation
        text = CONFIRMATIONS[_locale(session, tenant_id, contact)][status]
        # the opt-out's own confirmation goes although the contact just opted out
        reply = _queue_reply(session, runtime, tenant_id, message.conversation_id, text, bypass_consent=True)
        return InboundOutcome(contact.id, consent_changed=status, reply=reply,
                              reply_kind="confirmation" if reply else None)
    if keyword is not None or (contact is not None and repo.opted_out(message.channel, message.from_address or "")):
        return InboundOutcome(contact.id if contact else None)
    reply, kind = _auto_reply(session, runtime, tenant_id, message, now)
    return InboundOutcome(contact.id if contact else None, reply=reply, reply_kind=kind)


def _auto_reply(session: Session, runtime: Runtime, tenant_id: uuid.UUID, message: Message,
                now: datetime) -> tuple[Message | None, str | None]:
    """The first matching keyword rule answers (once per conversation per rule per 24 h);
    with none matching, the after-hours reply (once per conversation per closed period)."""
    repo = AutoReplyRepository(session, tenant_id)
    conversation_id = message.conversation_id
    assert conversation_id is not None
    for rule in repo.rules(enabled_only=True):
        if rule.channel and rule.channel != message.channel:
            continue
        if not keywords_match(rule.keywords, message.body):
            continue
        last = repo.last_sent(conversation_id, str(rule.id))
        if last is not None and now - last.sent_at < KEYWORD_WINDOW:
            return None, None
        # the window opens with the previous reply: two workers racing read the same one
        window = f"after:{last.sent_at.astimezone(UTC).isoformat()}" if last else "first"
        reply = _queue_reply(session, runtime, tenant_id, conversation_id, rule.reply,
                             claim=(str(rule.id), window), now=now)
        return reply, "keyword" if reply else None
    hours = repo.business_hours()
    if hours is None or not hours.enabled or not hours.after_hours_reply:
        return None, None
    zone = _zone(session, tenant_id)
    if is_open(hours, zone, now):
        return None, None
    opening = next_opening(hours, zone, now)
    window = opening.isoformat() if opening else "never"
    reply = _queue_reply(session, runtime, tenant_id, conversation_id, hours.after_hours_reply,
                         claim=(AFTER_HOURS, window), now=now)
    return reply, AFTER_HOURS if reply else None


# --- business hours --------------------------------------------------------------------------


def is_open(hours: BusinessHours, zone: ZoneInfo, now: datetime) -> bool:
    """Whether ``now`` falls in an opening interval of the weekly schedule, not on a holiday."""
    local = now.astimezone(zone)
    if local.date().isoformat() in set(hours.holidays or []):
        return False
    clock = local.strftime("%H:%M")
    return any(start <= clock < end for start, end in (hours.schedule or {}).get(WEEKDAYS[local.weekday()], []))


def next_opening(hours: BusinessHours, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The next opening after ``now`` (UTC), or None when the schedule never opens."""
    local = now.astimezone(zone)
    holidays = set(hours.holidays or [])
    schedule = hours.schedule or {}
    for offset in range(OPENING_HORIZON_DAYS):
        day = local.date() + timedelta(days=offset)
        if day.isoformat() in holidays:
            continue
        for start, _end in schedule.get(WEEKDAYS[day.weekday()], []):
            opening = datetime.combine(day, time.fromisoformat(start), tzinfo=zone)
            if opening > now:
                return opening.astimezone(UTC)
    return None


def get_business_hours(*, session: Session, tenant_id: uuid.UUID) -> BusinessHours:
    """The tenant's business hours; never set: an empty, disabled schedule (not stored)."""
    hours = AutoReplyRepository(session, tenant_id).business_hours()
    return hours or BusinessHours(tenant_id=tenant_id, schedule={}, holidays=[], after_hours_reply=None,
                                  enabled=False)


def put_business_hours(*, session: Session, tenant_id: uuid.UUID, hours_in: BusinessHoursWrite) -> BusinessHours:
    """Replace the tenant's business hours."""
    hours = AutoReplyRepository(session, tenant_id).business_hours()
    if hours is None:
        hours = BusinessHours(tenant_id=tenant_id)
        session.add(hours)
    hours.schedule = {day: [list(i) for i in intervals] for day, intervals in hours_in.schedule.items()}
    hours.holidays = sorted({d.isoformat() for d in hours_in.holidays})
    hours.after_hours_reply = hours_in.after_hours_reply
    hours.enabled = hours_in.enabled
    hours.updated_at = utcnow()
    session.flush()
    return hours


def open_now(*, session: Session, tenant_id: uuid.UUID, hours: BusinessHours, now: datetime | None = None) -> bool:
    """Whether the tenant is open at ``now`` by these hours."""
    return is_open(hours, _zone(session, tenant_id), now or utcnow())


def tenant_time_zone(*, session: Session, tenant_id: uuid.UUID) -> str:
    return _zone(session, tenant_id).key


# --- auto-reply rules -----------------------------------------------------------------------


def list_auto_replies(*, session: Session, tenant_id: uuid.UUID) -> list[AutoReplyRule]:
    """The tenant's keyword rules, in the order they are tried."""
    return AutoReplyRepository(session, tenant_id).rules()


def get_auto_reply(*, session: Session, tenant_id: uuid.UUID, rule_id: uuid.UUID) -> AutoReplyRule:
    """The tenant's rule, or NotFound."""
    rule = AutoReplyRepository(session, tenant_id).rule(rule_id)
    if rule is None:
        raise NotFound("auto-reply rule not found")
    return rule


def _keywords(raw: list[str]) -> list[str]:
    keywords = list(dict.fromkeys(k.strip() for k in raw))
    for keyword in keywords:
        if not _words(keyword):
            raise Invalid(f"keyword {keyword!r} has no letters or digits", code="invalid_keyword")
        if consent_keyword(keyword):
            raise Invalid(f"{keyword!r} is an opt-out/opt-in keyword; it cannot trigger an auto-reply",
                          code="reserved_keyword")
    return keywords


def create_auto_reply(*, session: Session, tenant_id: uuid.UUID, rule_in: AutoReplyCreate) -> AutoReplyRule:
    """Add a keyword rule (tried after the existing ones)."""
    now = utcnow()
    rule = AutoReplyRule(id=uuid.uuid4(), tenant_id=tenant_id, keywords=_keywords(rule_in.keywords),
                         reply=rule_in.reply, channel=rule_in.channel, enabled=rule_in.enabled,
                         created_at=now, updated_at=now)
    session.add(rule)
    session.flush()
    return rule


def update_auto_reply(*, session: Session, tenant_id: uuid.UUID, rule_id: uuid.UUID,
                      rule_in: AutoReplyUpdate) -> AutoReplyRule:
    """Change the fields sent."""
    rule = get_auto_reply(session=session, tenant_id=tenant_id, rule_id=rule_id)
    sent = rule_in.model_fields_set
    for field in ("keywords", "reply", "enabled"):
        if field in sent and getattr(rule_in, field) is None:
            raise Invalid(f"{field} cannot be null", code="invalid_auto_reply")
    if "keywords" in sent:
        rule.keywords = _keywords(rule_in.keywords or [])
    if "reply" in sent:
        rule.reply = rule_in.reply or ""
    if "enabled" in sent:
        rule.enabled = bool(rule_in.enabled)
    if "channel" in sent:
        rule.channel = rule_in.channel
    rule.updated_at = utcnow()
    session.flush()
    return rule


def delete_auto_reply(*, session: Session, tenant_id: uuid.UUID, rule_id: uuid.UUID) -> None:
    """Remove a rule (the replies it gave stay in their conversations)."""
    session.delete(get_auto_reply(session=session, tenant_id=tenant_id, rule_id=rule_id))
    session.flush()


def appointment_view(appointment: Appointment) -> dict[str, Any]:
    """What an export shows of an appointment."""
    return {"id": str(appointment.id), "title": appointment.title, "status": appointment.status,
            "start_at": appointment.start_at.isoformat(), "end_at": appointment.end_at.isoformat(),
            "time_zone": appointment.time_zone, "location": appointment.location, "notes": appointment.notes,
            "contact_name": appointment.contact_name, "contact_phone": appointment.contact_phone,
            "contact_email": appointment.contact_email}

