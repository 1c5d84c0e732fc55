"""Every query of broadcasts.

Tenant-facing reads and writes go through ``BroadcastRepository``, which applies the
tenant filter in one place. Expansion and the relay work by broadcast id across
tenants (a worker has no tenant of its own); their statements are the module-level
functions below, each one conditional so concurrent workers and relays can run them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from hub.broadcasts.models import Broadcast, BroadcastRecipient, BroadcastStatus, SendLane
from hub.contacts.models import ConsentStatus, Contact, ContactConsent
from hub.db import insert_ignore, is_postgres, new_id
from hub.messaging.models import Conversation, ConversationStatus, Message, MessageStatus, OutboxEntry
from hub.pagination import MAX_LIMIT, Page, decode_cursor, encode_cursor

# statuses a worker may still claim: cancel stops these
UNCLAIMED = (MessageStatus.QUEUED, MessageStatus.RETRYING)
# a broadcast is done when none of its messages is in one of these
NOT_GONE = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRYING, "scheduled")
PHONE_CHANNELS = ("sms", "whatsapp")
_IN_CHUNK = 1000  # ids per IN (...) list


@dataclass
class MessageCounts:
    by_status: dict[str, int]
    last_change: datetime | None  # the latest updated_at of the broadcast's messages


class BroadcastRepository:
    """Broadcasts of one tenant: no query here can see another tenant's rows."""

    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def _scoped(self) -> Select[tuple[Broadcast]]:
        return select(Broadcast).where(Broadcast.tenant_id == self.tenant_id)

    def get(self, broadcast_id: uuid.UUID, *, for_update: bool = False) -> Broadcast | None:
        stmt = self._scoped().where(Broadcast.id == broadcast_id).execution_options(populate_existing=True)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def list(self, *, limit: int, cursor: str | None) -> Page[Broadcast]:
        """Newest first."""
        limit = max(1, min(limit, MAX_LIMIT))
        stmt = self._scoped()
        if cursor:
            at, last_id = decode_cursor(cursor)
            stmt = stmt.where(or_(Broadcast.created_at < at, and_(Broadcast.created_at == at, Broadcast.id < last_id)))
        rows = list(self.session.scalars(stmt.order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
                                         .limit(limit + 1)))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
        return Page(rows, next_cursor)

    def message_counts(self, broadcast_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, MessageCounts]:
        """Messages by status, and when the latest of them changed, per broadcast (one grouped query)."""
        counts = {broadcast_id: MessageCounts({}, None) for broadcast_id in broadcast_ids}
        if not broadcast_ids:
            return counts
        rows = self.session.execute(
            select(Message.broadcast_id, Message.status, func.count(), func.max(Message.updated_at))
            .where(Message.tenant_id == self.tenant_id, Message.broadcast_id.in_(list(broadcast_ids)))
            .group_by(Message.broadcast_id, Message.status)
        )
        for broadcast_id, status, n, changed_at in rows:
            entry = counts[broadcast_id]
            entry.by_status[status] = n
            if entry.last_change is None or changed_at > entry.last_change:
                entry.last_change = changed_at
        return counts

    def cancel_unclaimed(self, broadcast_id: uuid.UUID, *, now: datetime) -> int:
        """Cancel the broadcast's messages no worker has claimed, and drop their outbox
        entries: one UPDATE and one DELETE. A message being sent is left to finish."""
        canceled = self.session.execute(
            update(Message)
            .where(Message.tenant_id == self.tenant_id, Message.broadcast_id == broadcast_id,
                   Message.status.in_(UNCLAIMED))
            .values(status=MessageStatus.CANCELED, next_attempt_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount or 0
        self.session.execute(
            delete(OutboxEntry).where(OutboxEntry.message_id.in_(
                select(Message.id).where(Message.tenant_id == self.tenant_id, Message.broadcast_id == broadcast_id,
                                         Message.status == MessageStatus.CANCELED)))
            .execution_options(synchronize_session=False)
        )
        return canceled

    def release_lane(self, channel: str, *, now: datetime) -> None:
        """Give back the slots a canceled broadcast had reserved: the lane's next slot
        moves back to the end of what the tenant's other running broadcasts hold."""
        still_held = self.session.scalar(
            select(func.max(Broadcast.slots_until))
            .where(Broadcast.tenant_id == self.tenant_id, Broadcast.channel == channel,
                   Broadcast.status == BroadcastStatus.SENDING)
        )
        floor = max(now, still_held) if still_held else now
        self.session.execute(
            update(SendLane).where(SendLane.tenant_id == self.tenant_id, SendLane.channel == channel,
                                   SendLane.next_slot_at > floor)
            .values(next_slot_at=floor).execution_options(synchronize_session=False)
        )

    def contacts(self, contact_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Contact]:
        """The tenant's contacts among ``contact_ids`` (others' are simply absent)."""
        found: dict[uuid.UUID, Contact] = {}
        unique = list(dict.fromkeys(contact_ids))
        for start in range(0, len(unique), _IN_CHUNK):
            for contact in self.session.scalars(select(Contact).where(
                    Contact.tenant_id == self.tenant_id, Contact.id.in_(unique[start:start + _IN_CHUNK]))):
                found[contact.id] = contact
        return found

    def opted_out(self, channel: str, addresses: Sequence[str]) -> set[str]:
        """Which of these addresses belong to a contact who opted out of ``channel``."""
        if not addresses:
            return set()
        column = Contact.phone if channel in PHONE_CHANNELS else Contact.email
        return set(self.session.scalars(
            select(column).join(ContactConsent, ContactConsent.contact_id == Contact.id)
            .where(Contact.tenant_id == self.tenant_id, column.in_(list(addresses)),
                   ContactConsent.channel == channel, ContactConsent.status == ConsentStatus.OPTED_OUT)
        ))

    def thread_conversations(self, *, integration_id: uuid.UUID | None, channel: str, contacts: Sequence[str],
                             hub_address: str | None, at: datetime) -> dict[str, uuid.UUID]:
        """``thread_conversation`` for many contacts in three statements: insert-or-ignore
        each, read their ids, (re)open them and advance ``last_message_at``."""
        if not contacts:
            return {}
        rows = [{"id": new_id(), "tenant_id": self.tenant_id, "integration_id": integration_id, "channel": channel,
                 "contact_address": contact, "hub_address": hub_address, "status": ConversationStatus.OPEN,
                 "last_message_at": at, "created_at": at, "updated_at": at} for contact in contacts]
        if is_postgres(self.session):
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self.session.execute(insert(Conversation).on_conflict_do_nothing(
            index_elements=["tenant_id", "channel", "contact_address"]), rows)
        ids = dict(self.session.execute(
            select(Conversation.contact_address, Conversation.id)
            .where(Conversation.tenant_id == self.tenant_id, Conversation.channel == channel,
                   Conversation.contact_address.in_(list(contacts)))
        ).all())
        when = literal(at, type_=Conversation.__table__.c.last_message_at.type)
        self.session.execute(
            update(Conversation).where(Conversation.id.in_(list(ids.values())))
            .values(status=ConversationStatus.OPEN,
                    last_message_at=case((Conversation.last_message_at.is_(None), when),
                                         (Conversation.last_message_at < when, when),
                                         else_=Conversation.last_message_at),
                    hub_address=func.coalesce(Conversation.hub_address, hub_address),
                    integration_id=func.coalesce(Conversation.integration_id, integration_id))
            .execution_options(synchronize_session=False)
        )
        return ids


# --- expansion and relay: by broadcast id, across tenants ------------------------------------


def claim_expansion(session: Session, *, broadcast_id: uuid.UUID, now: datetime) -> bool:
    """Take the broadcast's next chunk, in ONE conditional UPDATE: it must be due and
    neither canceled nor already being expanded (the winner clears ``next_expand_at``
    until it commits; a rollback hands the chunk back)."""
    claimed = session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.next_expand_at <= now,
               Broadcast.status.in_((BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING)))
        .values(next_expand_at=None, expand_published_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def load_broadcast(session: Session, broadcast_id: uuid.UUID) -> Broadcast | None:
    return session.scalar(select(Broadcast).where(Broadcast.id == broadcast_id)
                          .execution_options(populate_existing=True))


def unexpanded_recipients(session: Session, *, broadcast_id: uuid.UUID, limit: int) -> list[BroadcastRecipient]:
    """The next ``limit`` recipients without a message, in request order."""
    return list(session.scalars(
        select(BroadcastRecipient)
        .where(BroadcastRecipient.broadcast_id == broadcast_id, BroadcastRecipient.message_id.is_(None))
        .order_by(BroadcastRecipient.position).limit(limit)
    ))


def reserve_slots(session: Session, *, tenant_id: uuid.UUID, channel: str, count: int, rate: float,
                  now: datetime) -> datetime:
    """Reserve ``count`` send slots ``1 / rate`` apart on the tenant's lane for ``channel``;
    returns the first. The lane row is locked until the caller commits."""
    insert_ignore(session, SendLane, {"tenant_id": tenant_id, "channel": channel, "next_slot_at": now},
                  conflict=["tenant_id", "channel"])
    stmt = (select(SendLane).where(SendLane.tenant_id == tenant_id, SendLane.channel == channel)
            .execution_options(populate_existing=True))
    if is_postgres(session):
        stmt = stmt.with_for_update()
    lane = session.scalar(stmt)
    assert lane is not None  # just inserted or already there
    start = max(now, lane.next_slot_at)
    lane.next_slot_at = start + timedelta(seconds=count / rate)
    return start


def link_recipients(session: Session, links: Sequence[dict[str, Any]]) -> None:
    """Record which message each recipient became (``[{"id", "message_id"}]``, one executemany)."""
    if links:
        session.execute(update(BroadcastRecipient), list(links))


def due_for_expansion(session: Session, *, now: datetime, republish_before: datetime,
                      limit: int) -> list[uuid.UUID]:
    """Broadcasts whose next chunk is due and whose expansion task was not published
    since (or so long ago that the broker lost it). Rows another relay holds are skipped."""
    stmt = (
        select(Broadcast.id)
        .where(Broadcast.next_expand_at <= now,
               or_(Broadcast.expand_published_at.is_(None), Broadcast.expand_published_at <= republish_before))
        .order_by(Broadcast.next_expand_at)
        .limit(limit)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def mark_expansion_published(session: Session, *, broadcast_ids: Sequence[uuid.UUID], now: datetime) -> None:
    if broadcast_ids:
        session.execute(update(Broadcast).where(Broadcast.id.in_(list(broadcast_ids)))
                        .values(expand_published_at=now).execution_options(synchronize_session=False))
