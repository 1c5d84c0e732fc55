"""Outbound messages and conversations.

A send validates the address (E.164, Brazil's ninth digit) and the SMS segments,
then writes the message, its conversation and its outbox entry in the caller's
transaction. Once that commits, the delivery task is published and the entry marked
published; if the broker did not take it, the entry stays due and the relay
(``relay_outbox``) publishes it. Delivery itself is in ``delivery.py``.

The outbox holds one entry per message that still needs a worker: ``available_at``
is when it is next due (a new message: after a short grace that leaves the common
case to the after-commit publish; a retry: its ``next_attempt_at``; a message being
sent: the end of its worker's lease), and the entry is deleted once the message
reaches a final state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, event, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hub import idempotency
from hub.contacts.models import Contact
from hub.contacts.repository import ContactRepository
from hub.db import new_id, utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.events.service import publish_conversation_updated
from hub.messaging import channels
from hub.messaging import repository as outbox
from hub.messaging.addresses import InvalidAddress, normalize_email, normalize_phone
from hub.messaging.inbound import _conversation_id as thread_conversation
from hub.messaging.models import (
    CANCELABLE,
    RETRYABLE,
    Conversation,
    Direction,
    Message,
    MessageAttempt,
    MessageStatus,
    MessagingSettings,
    OutboxEntry,
)
from hub.messaging.repository import ConversationRepository, MessageRepository
from hub.messaging.schemas import ConversationReply, ConversationUpdate, MessageCreate, MessagingSettingsUpdate
from hub.messaging.segments import MAX_SMS_SEGMENTS  # noqa: F401 - its historic home
from hub.pagination import Page
from hub.queue import DELIVER_MESSAGES, outermost_commit, publish
from hub.tenant_time import schedule_time
from hub.whatsapp.service import template_request as whatsapp_template_request
from tenants.models import Tenant

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.messaging")

SENDING_KIND = channels.SENDING_KIND
# how far ahead a message may be scheduled
MAX_SCHEDULE_AHEAD = timedelta(days=366)
# A new entry is the after-commit publish's to send; the relay steps in after this.
AFTER_COMMIT_GRACE = timedelta(seconds=2)
# A published entry whose message no worker claimed by then is published again (a
# broker that lost its queue, a worker killed with the task fetched but not yet
# claimed): within a minute, as a killed worker's claims lapse (hub.messaging.claims).
# A second task for a message is harmless: only one can claim it.
REPUBLISH_UNCLAIMED_AFTER = timedelta(seconds=45)
RELAY_BATCH = 200
# messages per delivery task: the claim and the record are one transaction per task,
# and the task's calls go one after another (its lease grows with it)
DELIVERY_BATCH = 20

SEND_SCOPE = "messages.send"
REPLY_SCOPE = "conversations.reply"


@dataclass(frozen=True)
class QueuedMessage:
    """A message accepted for delivery; ``replayed`` when an Idempotency-Key matched an earlier send."""

    message: Message
    replayed: bool = False


# --- sending ------------------------------------------------------------------------


def send_message(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID, message_in: MessageCreate,
                 idempotency_key: str | None = None) -> QueuedMessage:
    """Validate, render, route and queue an outbound message (with its conversation and
    outbox entry); see ``hub.messaging.channels`` for how the channel is chosen."""
    # exclude_unset: the stored request is what the caller sent, so a repeat matches it
    request = message_in.model_dump(mode="json", exclude_unset=True)
    replay, claim = _idempotency(session, tenant_id, SEND_SCOPE, idempotency_key, request)
    if replay is not None:
        return replay
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    contact = None
    if message_in.contact_id is not None:
        contact = ContactRepository(session, tenant_id).get(message_in.contact_id)
        if contact is None or contact.erased_at is not None:
            raise NotFound("contact not found", code="contact_not_found")
    elif message_in.to is not None:
        contact = channels.contact_at(session, tenant_id, message_in.to)
    fallback = message_in.fallback
    if fallback is None:
        # a channel the caller named is a requirement: only ``fallback: true`` relaxes it
        fallback = message_in.channel is None and (message_in.template is not None
                                                   or message_in.contact_id is not None)
    order = list(channels.messaging_settings(session, tenant_id).channel_order)
    first = [message_in.channel] if message_in.channel else []
    candidates = first + [c for c in order if c not in first]
    content = channels.Content(
        template=message_in.template, data=message_in.data if message_in.template else None,
        body=message_in.body or "", media=message_in.media_list(), subject=message_in.subject,
        locale=message_in.locale or (contact.locale if contact and contact.locale else None) or tenant.locale,
        whatsapp_template=whatsapp_template_request(message_in.whatsapp_template),
    )
    send_at = _send_at(message_in.send_at, tenant)
    return _queue(session, runtime, tenant_id, candidates=candidates, fallback=fallback, only=not fallback
                  and message_in.channel is not None, contact=contact if message_in.contact_id else None,
                  linked_contact=contact, raw_to=message_in.to, content=content, send_at=send_at,
                  idempotency_key=idempotency_key, claim=claim)


def reply_to_conversation(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                          reply_in: ConversationReply, idempotency_key: str | None = None,
                          bypass_consent: bool = False) -> QueuedMessage:
    """Queue a reply to the conversation's contact on the conversation's channel.

    ``bypass_consent``: the message goes even to a contact who opted out of the channel
    (only the hub's own opt-out/opt-in confirmations, see hub.contacts.service)."""
    conversation = get_conversation(session=session, tenant_id=tenant_id, conversation_id=conversation_id)
    request = {"conversation_id": str(conversation.id), **reply_in.model_dump(mode="json")}
    replay, claim = _idempotency(session, tenant_id, REPLY_SCOPE, idempotency_key, request)
    if replay is not None:
        return replay
    tenant = session.get(Tenant, tenant_id)
    content = channels.Content(template=None, data=None, body=reply_in.body, media=reply_in.media_list(),
                               subject=None, locale=tenant.locale if tenant else "pt-BR",
                               whatsapp_template=whatsapp_template_request(reply_in.whatsapp_template))
    return _queue(session, runtime, tenant_id, candidates=[conversation.channel], fallback=False, only=True,
                  contact=None, linked_contact=None, raw_to=conversation.contact_address, content=content,
                  send_at=None, idempotency_key=idempotency_key, claim=claim, consent_exempt=bypass_consent)


def _idempotency(session: Session, tenant_id: uuid.UUID, scope: str, key: str | None,
                 request: dict[str, Any]) -> tuple[QueuedMessage | None, Any]:
    if not key:
        return None, None
    claim = idempotency.claim(session=session, tenant_id=tenant_id, scope=scope, key=key, body=request)
    if isinstance(claim, idempotency.Replay):
        message = MessageRepository(session, tenant_id).get(claim.resource_id) if claim.resource_id else None
        if message is None:
            raise NotFound("the message this Idempotency-Key created no longer exists")
        return QueuedMessage(message, replayed=True), None
    return None, claim


def _send_at(send_at: datetime | None, tenant: Tenant) -> datetime | None:
    """An aware UTC time within the next year (a naive one is the tenant's wall clock)."""
    return schedule_time(send_at, zone=tenant.timezone, field="send_at", now=utcnow(), max_ahead=MAX_SCHEDULE_AHEAD)


def _queue(session: Session, runtime: Runtime, tenant_id: uuid.UUID, *, candidates: list[str], fallback: bool,
           only: bool, contact: Contact | None, linked_contact: Contact | None, raw_to: str | None,
           content: channels.Content, send_at: datetime | None, idempotency_key: str | None,
           claim: Any, consent_exempt: bool = False) -> QueuedMessage:
    """Route to the first possible candidate channel and write the message there.

    ``only``: the caller named one channel without fallback, so its refusal (no
    integration, a bad address …) is the answer, as a 4xx."""
    skips: list[channels.Skip] = []
    route: channels.Route | None = None
    rest: list[str] = []
    for index, channel in enumerate(candidates):
        found = channels.route_to(session, runtime, tenant_id, channel=channel, contact=contact, raw_to=raw_to,
                                  content=content, strict=True, check_consent=not consent_exempt)
        if isinstance(found, channels.Route):
            route, rest = found, list(candidates[index + 1:])
            break
        skips.append(found)
        if only:
            break
    now = utcnow()
    common = dict(
        tenant_id=tenant_id, direction=Direction.OUTBOUND,
        media=[{"url": url, "content_type": None} for url in content.media], attempt_count=0,
        max_attempts=runtime.settings.delivery_max_attempts, idempotency_key=idempotency_key,
        contact_id=linked_contact.id if linked_contact else None, template=content.template,
        template_data=content.data, locale=content.locale, send_at=send_at, consent_exempt=consent_exempt,
        created_at=now, updated_at=now,
    )
    if route is None:
        suppressed = [skip for skip in skips if skip.outcome == channels.SUPPRESSED]
        if not suppressed:
            if len(skips) == 1:
                raise skips[0].error
            raise Conflict("no channel can reach the recipient: " + "; ".join(
                f"{skip.channel}: {skip.error.message}" for skip in skips), code="no_channel_available",
                details=[skip.hop() for skip in skips])
        # opted out everywhere it could go: kept, visible, and not an error to the caller
        first = suppressed[0]
        message = Message(id=new_id(), channel=first.channel, to_address=first.to or "", from_address=None,
                          body=content.body, status=MessageStatus.SUPPRESSED, error_code=channels.OPTED_OUT,
                          error_message=first.error.message, hops=[skip.hop() for skip in skips],
                          channel_plan=[], next_attempt_at=None, **common)
        session.add(message)
        session.flush()
    else:
        sender = route.sender
        integration_id = sender.integration.id if sender.integration else None
        # Any new message, ours or theirs, (re)opens the contact's conversation and advances it.
        conversation_id = thread_conversation(
            session, tenant_id=tenant_id, integration_id=integration_id, channel=route.channel, contact=route.to,
            hub_address=sender.address, received_at=now,
        )
        message = Message(
            id=new_id(), conversation_id=conversation_id, integration_id=integration_id, channel=route.channel,
            to_address=route.to, from_address=sender.address, body=route.body, subject=route.subject,
            html=route.html, segments=route.segments, provider_template=route.provider_template,
            status=MessageStatus.SCHEDULED if send_at else MessageStatus.QUEUED, next_attempt_at=send_at or now,
            hops=[skip.hop() for skip in skips], channel_plan=rest if fallback else [], **common,
        )
        session.add(message)
        channels.attach_whatsapp_template(session, message, route)
        # a scheduled message is the relay's to publish when due; the others go after commit
        available_at = send_at or now + AFTER_COMMIT_GRACE
        session.add(OutboxEntry(id=new_id(), message_id=message.id, available_at=available_at, created_at=now))
        session.flush()
        if send_at is None:
            publish_after_commit(session, runtime, message.id, available_at)
    if claim is not None:
        idempotency.complete(session=session, claim_row=claim, resource_id=message.id, status_code=202)
    return QueuedMessage(message)


# --- after-commit publishing --------------------------------------------------------

_PENDING = "hub_outbox_after_commit"


def publish_after_commit(session: Session, runtime: Runtime, message_id: uuid.UUID, available_at: Any) -> None:
    """Once ``session`` commits, publish the message's delivery task and mark its outbox
    entry published; dropped on rollback. What the broker refuses stays for the relay."""
    if runtime.hands_off_to_relay:
        return  # the entry is due at available_at: the running hub's relay publishes it
    session.info.setdefault(_PENDING, []).append((runtime, message_id, available_at))


def publish_deliveries(runtime: Runtime, message_ids: list[uuid.UUID]) -> bool:
    """One delivery task for up to ``DELIVERY_BATCH`` messages; False if the broker refused it."""
    return publish(runtime.celery, DELIVER_MESSAGES, [str(m) for m in message_ids])


@event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    if not outermost_commit(session):
        return
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    by_runtime: dict[int, tuple[Runtime, list[tuple[uuid.UUID, Any]]]] = {}
    for runtime, message_id, available_at in pending:
        by_runtime.setdefault(id(runtime), (runtime, []))[1].append((message_id, available_at))
    for runtime, entries in by_runtime.values():
        published = []
        for start in range(0, len(entries), DELIVERY_BATCH):
            chunk = entries[start:start + DELIVERY_BATCH]
            if not publish_deliveries(runtime, [message_id for message_id, _ in chunk]):
                break  # the broker is down: the rest would wait for the same timeout
            published.extend(chunk)
        if published:
            try:
                with runtime.engine.begin() as connection:
                    outbox.mark_published_as_written(connection, entries=published, now=utcnow())
            except SQLAlchemyError as exc:
                # harmless: the relay publishes them again, and a duplicate task cannot claim twice
                log.warning("could not mark outbox entries published", error=type(exc).__name__)
        runtime.wake_relay()


@event.listens_for(Session, "after_soft_rollback")
def _drop_uncommitted(session: Session, previous_transaction: Any) -> None:
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)


def relay_outbox(*, runtime: Runtime, limit: int = RELAY_BATCH) -> int:
    """Publish due outbox entries (first sends the broker missed, retries, abandoned
    claims); returns how many were handed to the broker. Safe to run concurrently."""
    now = utcnow()
    with runtime.session_factory() as session:
        due = outbox.due_outbox_entries(session, now=now, republish_before=now - REPUBLISH_UNCLAIMED_AFTER,
                                        limit=limit)
        if not due:
            session.rollback()
            return 0
        published = []
        for start in range(0, len(due), DELIVERY_BATCH):
            chunk = due[start:start + DELIVERY_BATCH]
            if not publish_deliveries(runtime, [message_id for _, message_id in chunk]):
                break  # the broker is down: leave the rest for the next pass
            published.extend(entry_id for entry_id, _ in chunk)
        outbox.mark_published(session, entry_ids=published, due_by=now, now=utcnow())
        session.commit()
    if published:
        log.info("outbox relayed", published=len(published), due=len(due))
    return len(published)


# --- reading and retrying messages ----------------------------------------------------


def get_message(*, session: Session, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message:
    """The tenant's message, or NotFound (another tenant's is not found either)."""
    message = MessageRepository(session, tenant_id).get(message_id)
    if message is None:
        raise NotFound("message not found")
    return message


def message_attempts(*, session: Session, tenant_id: uuid.UUID, message_id: uuid.UUID) -> list[MessageAttempt]:
    """The provider attempts of the tenant's message, oldest first."""
    return MessageRepository(session, tenant_id).attempts(message_id)


def list_messages(*, session: Session, tenant_id: uuid.UUID, limit: int, cursor: str | None = None,
                  status: str | None = None, channel: str | None = None, to: str | None = None,
                  direction: str | None = None, conversation_id: uuid.UUID | None = None) -> Page[Message]:
    """One page of the tenant's messages, newest first (``status=dead`` is the dead-letter queue)."""
    if to:
        try:
            to = normalize_phone(to, default_region=channels.region_of(session, tenant_id))
        except InvalidAddress as exc:
            raise Invalid(f"to: {exc}", code="invalid_address") from None
    return MessageRepository(session, tenant_id).list(limit=limit, cursor=cursor, status=status, channel=channel,
                                                      to=to, direction=direction, conversation_id=conversation_id)


def retry_message(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message:
    """Queue a dead, failed or undelivered message again with a fresh set of attempts."""
    message = get_message(session=session, tenant_id=tenant_id, message_id=message_id)
    if message.direction != Direction.OUTBOUND or message.status not in RETRYABLE:
        raise Conflict(f"a {message.direction} message in status {message.status} cannot be retried; "
                       "only dead, failed or undelivered outbound messages can", code="message_not_retryable")
    sender = channels.sender_for(session, runtime, tenant_id, message.channel)
    now = utcnow()
    # Conditional on the status read above, so two concurrent retries queue it once.
    moved = session.execute(
        update(Message)
        .where(Message.id == message.id, Message.tenant_id == tenant_id, Message.status.in_(RETRYABLE))
        .values(status=MessageStatus.QUEUED, attempt_count=0, max_attempts=runtime.settings.delivery_max_attempts,
                next_attempt_at=now, claimed_until=None, error_code=None, error_message=None,
                provider_message_id=None, sent_at=None, delivered_at=None,
                integration_id=sender.integration.id if sender.integration else None,
                from_address=sender.address, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        raise Conflict("the message is being retried already", code="message_not_retryable")
    available_at = now + AFTER_COMMIT_GRACE
    session.execute(delete(OutboxEntry).where(OutboxEntry.message_id == message.id))
    session.add(OutboxEntry(id=new_id(), message_id=message.id, available_at=available_at, created_at=now))
    session.flush()
    publish_after_commit(session, runtime, message.id, available_at)
    return get_message(session=session, tenant_id=tenant_id, message_id=message_id)


def put_messaging_settings(*, session: Session, tenant_id: uuid.UUID,
                           settings_in: MessagingSettingsUpdate) -> MessagingSettings:
    """Change the tenant's fallback order and e-mail headers (the fields given)."""
    values = settings_in.model_dump(exclude_unset=True)
    if "channel_order" in values and values["channel_order"] is None:
        raise Invalid("channel_order: cannot be null", code="invalid_channel_order")
    for name in ("email_reply_to", "email_unsubscribe_mailto"):
        if values.get(name):
            try:
                values[name] = normalize_email(values[name])
            except InvalidAddress as exc:
                raise Invalid(f"{name}: {exc}", code="invalid_address") from None
    return channels.put_messaging_settings(session=session, tenant_id=tenant_id, values=values)


def cancel_message(*, session: Session, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message:
    """Cancel a scheduled or queued message no worker has taken: status ``canceled``, its
    outbox entry gone. 409 once it is being sent or was sent."""
    message = get_message(session=session, tenant_id=tenant_id, message_id=message_id)
    if message.direction != Direction.OUTBOUND or message.status not in CANCELABLE:
        raise Conflict(f"a message in status {message.status} cannot be canceled; only scheduled, queued or "
                       "retrying ones can", code="message_not_cancelable")
    now = utcnow()
    # One conditional UPDATE: a worker's claim (which moves it to sending) and a cancel
    # cannot both win.
    moved = session.execute(
        update(Message)
        .where(Message.id == message.id, Message.tenant_id == tenant_id, Message.status.in_(CANCELABLE))
        .values(status=MessageStatus.CANCELED, next_attempt_at=None, channel_plan=[], updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        raise Conflict("the message is being sent already", code="message_not_cancelable")
    session.execute(delete(OutboxEntry).where(OutboxEntry.message_id == message.id))
    session.flush()
    return get_message(session=session, tenant_id=tenant_id, message_id=message_id)


# --- conversations ------------------------------------------------------------------


def list_conversations(*, session: Session, tenant_id: uuid.UUID, limit: int, cursor: str | None = None,
                       status: str | None = None, channel: str | None = None) -> Page[Conversation]:
    """One page of the tenant's conversations, newest activity first."""
    return ConversationRepository(session, tenant_id).list(limit=limit, cursor=cursor, status=status,
                                                           channel=channel)


def get_conversation(*, session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> Conversation:
    """The tenant's conversation, or NotFound (another tenant's is not found either)."""
    conversation = ConversationRepository(session, tenant_id).get(conversation_id)
    if conversation is None:
        raise NotFound("conversation not found")
    return conversation


def conversation_messages(*, session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                          limit: int) -> tuple[list[Message], bool]:
    """The conversation's latest ``limit`` messages, oldest first, and whether there are older ones."""
    return MessageRepository(session, tenant_id).latest_in_conversation(conversation_id, limit=limit)


def update_conversation(*, session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                        conversation_in: ConversationUpdate) -> Conversation:
    """Close or reopen a conversation."""
    conversation = get_conversation(session=session, tenant_id=tenant_id, conversation_id=conversation_id)
    conversation.status = conversation_in.status
    conversation.updated_at = utcnow()
    session.flush()
    publish_conversation_updated(session=session, tenant_id=tenant_id, conversation_id=conversation.id,
                                 change=str(conversation.status))  # hub.events: closed or reopened
    return conversation
