"""Broadcasts: validate the whole audience up front, then fan out at the tenant's pace.

A broadcast is accepted in one transaction that writes it and its recipient rows, and
nothing else: no message exists yet. Its recipients become messages in chunks
(``expand_broadcast``, a worker task), and each message's outbox entry is given its own
``available_at`` (and the message its ``next_attempt_at``) ``1 / rate`` seconds after
the previous one, so the existing relay releases them on time and the delivery claim
refuses them early. Slots come from the tenant's lane for the channel (``SendLane``),
reserved a chunk at a time under a row lock, so two broadcasts of one tenant share its
rate instead of doubling it. A chunk is expanded when the lane is about to run dry
(``LOOKAHEAD``), so a long, slow broadcast does not render everything hours early.

Everything is in the database: ``next_expand_at`` is due work the relay publishes
(scheduled broadcasts included: ``send_at`` is just the first ``next_expand_at``), a
chunk is one transaction, and a restart resumes where it stopped.

The rate is the lower of the tenant's (its ``messages_per_second`` override, else its
plan's) and the sender's (``SENDER_RATES``). Slots space the messages out; at send
time each also waits for its turn on the lane (``hub.ratelimit.take_turn``), so
workers catching up after a backlog, and retries, which go when their backoff says,
still never exceed the rate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import insert
from sqlalchemy.orm import Session

from hub import idempotency
from hub.broadcasts import repository as repo
from hub.broadcasts.models import Broadcast, BroadcastRecipient, BroadcastStatus
from hub.broadcasts.repository import NOT_GONE, BroadcastRepository, MessageCounts
from hub.broadcasts.schemas import BroadcastCreate
from hub.db import new_id, transaction, utcnow
from hub.errors import Conflict, HubError, Invalid, NotFound
from hub.messaging.addresses import InvalidAddress, recipient_address
from hub.messaging.channels import region_of
from hub.messaging.channels import sender_for as _sender
from hub.messaging.models import Direction, Message, MessageStatus, OutboxEntry
from hub.messaging.rendering import RenderedMessage, TemplateError
from hub.messaging.segments import MAX_SMS_SEGMENTS
from hub.pagination import Page
from hub.queue import EXPAND_BROADCAST, enqueue_after_commit, publish
from hub.tenant_time import schedule_time
from tenants.models import Tenant
from tenants.plans import DEFAULT_PLAN, PLANS

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.broadcasts")

CREATE_SCOPE = "broadcasts.create"
# Recipients turned into messages per transaction.
CHUNK = 500
# The next chunk is expanded this long before the lane's reserved slots run out.
LOOKAHEAD = timedelta(seconds=30)
# An expansion task published this long ago whose chunk is still due was lost: publish again.
REPUBLISH_EXPANSION_AFTER = timedelta(seconds=30)
RELAY_BATCH = 50
# How many bad recipients a 422 lists (the count covers them all).
MAX_LISTED_ERRORS = 100
# send_at may be at most this far ahead.
MAX_SCHEDULE_AHEAD = timedelta(days=366)

# Messages per second one sender takes, by (channel, sender kind), from the providers'
# documentation: a Twilio long code sends about 1 SMS/s (Twilio queues the excess and
# fails what waits over 4 h); a Messaging Service spreads over its pool, counted here as
# a small pool of long codes; a WhatsApp sender (Twilio or Meta's Cloud API) starts at
# 80 messages/s; e-mail is bounded by what a typical SMTP relay accepts before it
# starts deferring.
SENDER_RATES: dict[tuple[str, str], float] = {
    ("sms", "number"): 1.0,
    ("sms", "messaging_service"): 10.0,
    ("whatsapp", "number"): 80.0,
    ("whatsapp", "messaging_service"): 80.0,
    ("email", "number"): 10.0,
    ("email", "messaging_service"): 10.0,
}


@dataclass(frozen=True)
class BroadcastView:
    """A broadcast with its derived status and its counts."""

    broadcast: Broadcast
    status: str
    counts: dict[str, int]
    replayed: bool = False
    # the broadcast's own row, or the latest of its messages, whichever changed last
    updated_at: datetime | None = None


@dataclass
class _Recipient:
    address: str
    contact_id: uuid.UUID | None = None
    locale: str | None = None
    data: dict[str, Any] | None = None


@dataclass
class _Planned:
    """What one recipient's message will be."""

    recipient: BroadcastRecipient
    status: str
    body: str = ""
    segments: int | None = None
    subject: str | None = None
    html: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class _Problems:
    errors: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def add(self, index: int, reason: str) -> None:
        self.count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"index": index, "reason": reason})


# --- rendering ----------------------------------------------------------------------------


def render_message(*, session: Session, tenant_id: uuid.UUID, template: str, channel: str, data: dict[str, Any],
                   locale: str | None = None) -> RenderedMessage:
    """Render ``template`` for one recipient with the tenant's overrides, in ``locale`` or
    the tenant's (the one place broadcasts render)."""
    from hub.templates.service import render_message as render_template

    return render_template(session=session, tenant_id=tenant_id, template=template, channel=channel, data=data,
                           locale=locale)


def _render_problem(session: Session, tenant_id: uuid.UUID, template: str, channel: str, data: dict[str, Any],
                    locale: str | None) -> tuple[RenderedMessage | None, str | None, str | None]:
    """``(rendered, error code, reason)``: a template error or an SMS too long is a reason, not an exception."""
    try:
        rendered = render_message(session=session, tenant_id=tenant_id, template=template, channel=channel,
                                  data=data, locale=locale)
    except TemplateError as exc:
        return None, "template_error", str(exc)
    except HubError as exc:  # the messaging feature's renderer raises its own 422s
        return None, exc.code, exc.message
    if rendered.segments is not None and rendered.segments.segments > MAX_SMS_SEGMENTS:
        return None, "too_many_segments", (f"the SMS takes {rendered.segments.segments} segments; "
                                           f"at most {MAX_SMS_SEGMENTS}")
    return rendered, None, None


# --- the rate -------------------------------------------------------------------------------


def tenant_rate(tenant: Tenant) -> float:
    """The tenant's messages per second: its override, else its plan's."""
    if tenant.messages_per_second:
        return float(tenant.messages_per_second)
    return PLANS.get(tenant.plan, PLANS[DEFAULT_PLAN]).messages_per_second


def sender_rate(channel: str, *, messaging_service: bool) -> float:
    """Messages per second the provider takes from one sender of this kind."""
    return SENDER_RATES[(channel, "messaging_service" if messaging_service else "number")]


# --- creating -------------------------------------------------------------------------------


def create_broadcast(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID, broadcast_in: BroadcastCreate,
                     idempotency_key: str | None = None) -> BroadcastView:
    """Validate the whole broadcast, store it with its recipients, and start (or schedule) its fan-out.

    Nothing is written when anything is wrong: a bad recipient, an unknown template, data
    any recipient's message cannot be rendered with, a past ``send_at``."""
    claim = None
    if idempotency_key:
        claim = idempotency.claim(session=session, tenant_id=tenant_id, scope=CREATE_SCOPE, key=idempotency_key,
                                  body=broadcast_in.model_dump(mode="json"))
        if isinstance(claim, idempotency.Replay):
            if claim.resource_id is None:
                raise NotFound("the broadcast this Idempotency-Key created no longer exists")
            view = get_broadcast(session=session, tenant_id=tenant_id, broadcast_id=claim.resource_id)
            return BroadcastView(view.broadcast, view.status, view.counts, replayed=True, updated_at=view.updated_at)
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None  # the token's tenant
    now = utcnow()
    send_at = _send_at(broadcast_in.send_at, tenant.timezone, now)
    channel = broadcast_in.channel
    sender = _sender(session, runtime, tenant_id, channel)
    recipients, duplicates = _audience(session, tenant_id, broadcast_in)
    _check_every_message(session, tenant_id, broadcast_in, recipients)
    rate = min(tenant_rate(tenant), sender_rate(channel, messaging_service=sender.address is None))
    broadcast = Broadcast(
        id=new_id(), tenant_id=tenant_id, template=broadcast_in.template, channel=channel, data=broadcast_in.data,
        status=BroadcastStatus.SCHEDULED if send_at else BroadcastStatus.SENDING, rate=rate,
        total=len(recipients), duplicates=duplicates, expanded=0, send_at=send_at,
        next_expand_at=send_at or now, expand_published_at=None if send_at else now,
        started_at=None if send_at else now, idempotency_key=idempotency_key, created_at=now, updated_at=now,
    )
    session.add(broadcast)
    session.flush()
    session.execute(insert(BroadcastRecipient), [
        {"id": new_id(), "broadcast_id": broadcast.id, "position": i, "address": r.address,
         "contact_id": r.contact_id, "locale": r.locale, "data": r.data, "message_id": None}
        for i, r in enumerate(recipients)
    ])
    if claim is not None:
        idempotency.complete(session=session, claim_row=claim, resource_id=broadcast.id, status_code=202)
    if not send_at:
        enqueue_after_commit(session, runtime.celery, EXPAND_BROADCAST, str(broadcast.id))
    log.info("broadcast accepted", broadcast_id=str(broadcast.id), tenant_id=str(tenant_id), channel=channel,
             recipients=len(recipients), duplicates=duplicates, rate=rate,
             send_at=send_at.isoformat() if send_at else None)
    return _view(broadcast, MessageCounts({}, None))


def _check_every_message(session: Session, tenant_id: uuid.UUID, broadcast_in: BroadcastCreate,
                         recipients: list[_Recipient]) -> None:
    """Render each recipient's message before anything is written: a 422 listing every
    recipient whose data the template cannot be rendered with (capped), or none.

    The template is looked up once per locale; what is rendered here is thrown away
    (the expansion renders again, with the template as it is then)."""
    from hub.templates.service import template_renderer  # the templates feature renders; see render_message

    renderers: dict[str | None, Any] = {}
    problems = _Problems()
    for index, recipient in enumerate(recipients):
        if recipient.locale not in renderers:
            try:
                renderers[recipient.locale] = template_renderer(
                    session=session, tenant_id=tenant_id, template=broadcast_in.template,
                    channel=broadcast_in.channel, locale=recipient.locale)
            except HubError as exc:  # an unknown template: the same for every recipient
                raise Invalid(exc.message, code="template_invalid") from None
        try:
            renderers[recipient.locale]({**broadcast_in.data, **(recipient.data or {})})
        except HubError as exc:
            problems.add(index, f"{recipient.address}: {exc.message}")
    if problems.count:
        raise Invalid(f"{problems.count} of {len(recipients)} recipients' messages cannot be rendered; nothing "
                      "was sent", code="template_invalid",
                      details={"invalid_count": problems.count, "invalid": problems.errors})


def _send_at(value: datetime | None, timezone: str, now: datetime) -> datetime | None:
    """An aware UTC time (naive means the tenant's time zone); a past or too distant one is a 422."""
    return schedule_time(value, zone=timezone, field="send_at", now=now, max_ahead=MAX_SCHEDULE_AHEAD)


def _audience(session: Session, tenant_id: uuid.UUID, broadcast_in: BroadcastCreate) -> tuple[list[_Recipient], int]:
    """The recipients, normalized and de-duplicated by address (the first one stays), and
    how many duplicates were dropped; a 422 listing every bad one (capped) otherwise."""
    channel = broadcast_in.channel
    problems = _Problems()
    candidates: list[_Recipient | None] = []
    if broadcast_in.recipients is not None:
        region = region_of(session, tenant_id)
        for index, recipient_in in enumerate(broadcast_in.recipients):
            try:
                address = recipient_address(channel, recipient_in.to, default_region=region)
            except InvalidAddress as exc:
                problems.add(index, str(exc))
                candidates.append(None)
                continue
            candidates.append(_Recipient(address, data=recipient_in.data or None))
    else:
        contact_ids = broadcast_in.contact_ids or []
        contacts = BroadcastRepository(session, tenant_id).contacts(contact_ids)
        wanted = "phone" if channel in repo.PHONE_CHANNELS else "email"
        for index, contact_id in enumerate(contact_ids):
            contact = contacts.get(contact_id)
            address = getattr(contact, wanted, None) if contact else None
            if contact is None:
                problems.add(index, f"no contact {contact_id}")
            elif contact.erased_at is not None:
                problems.add(index, f"contact {contact_id} was erased")
            elif not address:
                problems.add(index, f"contact {contact_id} has no {'e-mail' if wanted == 'email' else 'phone'}")
            else:
                candidates.append(_Recipient(address, contact_id=contact.id, locale=contact.locale))
                continue
            candidates.append(None)
    if problems.count:
        raise Invalid(f"{problems.count} of {len(candidates)} recipients are invalid; nothing was sent",
                      code="invalid_recipients",
                      details={"invalid_count": problems.count, "invalid": problems.errors})
    unique: dict[str, _Recipient] = {}
    for candidate in candidates:
        assert candidate is not None
        unique.setdefault(candidate.address, candidate)
    return list(unique.values()), len(candidates) - len(unique)


# --- reading --------------------------------------------------------------------------------


def _view(broadcast: Broadcast, message_counts: MessageCounts) -> BroadcastView:
    counts = {"pending": 0, **{status: 0 for status in (
        MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRYING, MessageStatus.SENT,
        MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.UNDELIVERED, MessageStatus.FAILED,
        MessageStatus.DEAD, MessageStatus.CANCELED, MessageStatus.SUPPRESSED)}}
    for status, n in message_counts.by_status.items():
        counts[str(status)] = counts.get(str(status), 0) + n
    not_expanded = broadcast.total - broadcast.expanded
    if broadcast.status == BroadcastStatus.CANCELED:
        counts[MessageStatus.CANCELED] += not_expanded  # they never will be
        status = BroadcastStatus.CANCELED
    else:
        counts["pending"] = not_expanded
        status = broadcast.status
        if status == BroadcastStatus.SENDING and not not_expanded and not any(counts.get(s) for s in NOT_GONE):
            status = BroadcastStatus.COMPLETED
    updated_at = max(filter(None, (broadcast.updated_at, message_counts.last_change)))
    return BroadcastView(broadcast, str(status), counts, updated_at=updated_at)


def get_broadcast(*, session: Session, tenant_id: uuid.UUID, broadcast_id: uuid.UUID) -> BroadcastView:
    """The tenant's broadcast with its counts, or NotFound (another tenant's is not found either)."""
    broadcasts = BroadcastRepository(session, tenant_id)
    broadcast = broadcasts.get(broadcast_id)
    if broadcast is None:
        raise NotFound("broadcast not found")
    return _view(broadcast, broadcasts.message_counts([broadcast.id])[broadcast.id])


def list_broadcasts(*, session: Session, tenant_id: uuid.UUID, limit: int,
                    cursor: str | None = None) -> Page[BroadcastView]:
    """One page of the tenant's broadcasts, newest first, each with its counts."""
    broadcasts = BroadcastRepository(session, tenant_id)
    page = broadcasts.list(limit=limit, cursor=cursor)
    counts = broadcasts.message_counts([b.id for b in page.items])
    return Page([_view(b, counts[b.id]) for b in page.items], page.next_cursor)


# --- canceling ------------------------------------------------------------------------------


def cancel_broadcast(*, session: Session, tenant_id: uuid.UUID, broadcast_id: uuid.UUID) -> BroadcastView:
    """Stop what has not gone: unexpanded recipients and unclaimed messages are canceled,
    messages being sent finish. Canceling again is a no-op; a completed broadcast is a 409."""
    broadcasts = BroadcastRepository(session, tenant_id)
    broadcast = broadcasts.get(broadcast_id, for_update=True)
    if broadcast is None:
        raise NotFound("broadcast not found")
    if broadcast.status != BroadcastStatus.CANCELED:
        if get_broadcast(session=session, tenant_id=tenant_id, broadcast_id=broadcast_id).status == \
                BroadcastStatus.COMPLETED:
            raise Conflict("the broadcast has completed: nothing is left to cancel", code="broadcast_finished")
        now = utcnow()
        broadcast.status = BroadcastStatus.CANCELED
        broadcast.canceled_at = now
        broadcast.next_expand_at = None
        broadcast.updated_at = now
        session.flush()
        canceled = broadcasts.cancel_unclaimed(broadcast.id, now=now)
        broadcasts.release_lane(broadcast.channel, now=now)
        log.info("broadcast canceled", broadcast_id=str(broadcast.id), tenant_id=str(tenant_id),
                 messages_canceled=canceled, never_expanded=broadcast.total - broadcast.expanded)
    return get_broadcast(session=session, tenant_id=tenant_id, broadcast_id=broadcast_id)


# --- fan-out ----------------------------------------------------------------------------------


def expand_broadcast(*, runtime: Runtime, broadcast_id: uuid.UUID) -> int:
    """Turn the broadcast's next chunk of recipients into paced messages, in one
    transaction; returns how many messages were written (0: nothing due or claimed)."""
    now = utcnow()
    publish_next = False
    with transaction(runtime.session_factory) as session:
        if not repo.claim_expansion(session, broadcast_id=broadcast_id, now=now):
            return 0
        broadcast = repo.load_broadcast(session, broadcast_id)
        assert broadcast is not None  # just claimed
        recipients = repo.unexpanded_recipients(session, broadcast_id=broadcast.id, limit=CHUNK)
        if broadcast.status == BroadcastStatus.SCHEDULED:
            broadcast.status = BroadcastStatus.SENDING
            broadcast.started_at = now
        written = _write_messages(session, runtime, broadcast, recipients, now)
        broadcast.expanded += len(recipients)
        if broadcast.expanded < broadcast.total:
            # the next chunk when this one's slots are about to run out
            due = max(now, (broadcast.slots_until or now) - LOOKAHEAD)
            broadcast.next_expand_at = due
            publish_next = due <= now
            broadcast.expand_published_at = now if publish_next else None
        broadcast.updated_at = now
    if publish_next:
        publish(runtime.celery, EXPAND_BROADCAST, str(broadcast_id))
    runtime.wake_relay()
    log.info("broadcast chunk expanded", broadcast_id=str(broadcast_id), messages=written,
             more=publish_next)
    return written


def _write_messages(session: Session, runtime: Runtime, broadcast: Broadcast, recipients: list[BroadcastRecipient],
                    now: datetime) -> int:
    """Render each recipient's message and write it, its outbox entry (at its slot) and
    its conversation in bulk. A recipient that cannot be sent to gets a final message
    saying why (failed, or suppressed when opted out), so the counts add up."""
    tenant_id, channel = broadcast.tenant_id, broadcast.channel
    broadcasts = BroadcastRepository(session, tenant_id)
    try:
        sender = _sender(session, runtime, tenant_id, channel)
        integration_id = sender.integration.id if sender.integration else None  # None: the platform relay
        from_address, no_sender = sender.address, None
    except HubError as exc:  # the integration was removed or deactivated since the broadcast was accepted
        integration_id, from_address, no_sender = None, None, exc
    opted_out = broadcasts.opted_out(channel, [r.address for r in recipients])
    conversations = broadcasts.thread_conversations(integration_id=integration_id, channel=channel,
                                                    contacts=[r.address for r in recipients],
                                                    hub_address=from_address, at=now)
    planned: list[_Planned] = []
    for recipient in recipients:
        if no_sender is not None:
            planned.append(_Planned(recipient, MessageStatus.FAILED, error_code=no_sender.code,
                                    error_message=no_sender.message))
        elif recipient.address in opted_out:
            planned.append(_Planned(recipient, MessageStatus.SUPPRESSED, error_code="opted_out",
                                    error_message=f"the contact opted out of {channel}"))
        else:
            rendered, code, reason = _render_problem(session, tenant_id, broadcast.template, channel,
                                                     {**broadcast.data, **(recipient.data or {})}, recipient.locale)
            if rendered is None:
                planned.append(_Planned(recipient, MessageStatus.FAILED, error_code=code, error_message=reason))
            else:
                planned.append(_Planned(recipient, MessageStatus.QUEUED, body=rendered.body,
                                        segments=rendered.segments.segments if rendered.segments else None,
                                        subject=rendered.subject, html=rendered.html))
    queued = sum(1 for p in planned if p.status == MessageStatus.QUEUED)
    start = repo.reserve_slots(session, tenant_id=tenant_id, channel=channel, count=queued, rate=broadcast.rate,
                               now=now) if queued else now
    interval = timedelta(seconds=1 / broadcast.rate)
    messages, entries, links = [], [], []
    for p in planned:
        message_id = new_id()
        at = None
        if p.status == MessageStatus.QUEUED:
            at = start + len(entries) * interval
            entries.append({"id": new_id(), "message_id": message_id, "available_at": at, "created_at": now,
                            "published_at": None})
        messages.append({
            "id": message_id, "tenant_id": tenant_id, "conversation_id": conversations.get(p.recipient.address),
            "integration_id": integration_id, "direction": Direction.OUTBOUND, "channel": channel,
            "to_address": p.recipient.address, "from_address": from_address, "body": p.body, "media": [],
            "status": p.status, "provider_message_id": None, "segments": p.segments, "attempt_count": 0,
            "max_attempts": runtime.settings.delivery_max_attempts, "next_attempt_at": at, "claimed_until": None,
            "error_code": p.error_code, "error_message": p.error_message, "idempotency_key": None,
            "sent_at": None, "delivered_at": None, "broadcast_id": broadcast.id, "subject": p.subject,
            "html": p.html, "template": broadcast.template,
            "template_data": {**broadcast.data, **(p.recipient.data or {})},
            "locale": p.recipient.locale, "channel_plan": [], "hops": [], "consent_exempt": False, "created_at": now,
            "updated_at": now,
        })
        links.append({"id": p.recipient.id, "message_id": message_id})
    if messages:
        session.execute(insert(Message), messages)
    if entries:
        session.execute(insert(OutboxEntry), entries)
    repo.link_recipients(session, links)
    if queued:
        broadcast.slots_until = start + queued * interval
    return len(messages)


def relay_due_broadcasts(*, runtime: Runtime, limit: int = RELAY_BATCH) -> int:
    """Publish the expansion task of every broadcast whose next chunk is due (scheduled
    ones when their time comes, lost publishes again); returns how many. Safe to run concurrently."""
    now = utcnow()
    with runtime.session_factory() as session:
        due = repo.due_for_expansion(session, now=now, republish_before=now - REPUBLISH_EXPANSION_AFTER,
                                     limit=limit)
        if not due:
            session.rollback()
            return 0
        published = []
        for broadcast_id in due:
            if not publish(runtime.celery, EXPAND_BROADCAST, str(broadcast_id)):
                break  # the broker is down: the next pass tries again
            published.append(broadcast_id)
        repo.mark_expansion_published(session, broadcast_ids=published, now=now)
        session.commit()
    return len(published)
