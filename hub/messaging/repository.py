"""Every query of messages, conversations, attempts and the outbox.

Tenant-facing reads go through ``MessageRepository`` / ``ConversationRepository``,
which apply the tenant filter in one place. Delivery and the relay work by message
id across tenants (a worker has no tenant of its own); their statements are the
module-level functions below, each one conditional so concurrent workers and relays
can run them safely.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from hub.db import insert_ignore, is_postgres, new_id, utcnow
from hub.messaging.models import (
    CLAIMABLE,
    Conversation,
    Direction,
    Message,
    MessageAttempt,
    MessageStatus,
    OutboxEntry,
)
from hub.pagination import MAX_LIMIT, Page, decode_cursor, encode_cursor


def _newest_first(session: Session, stmt: Select[Any], *, key: ColumnElement, row_id: ColumnElement, limit: int,
                  cursor: str | None, key_of: Any) -> Page[Any]:
    """One page of ``stmt`` ordered by ``(key, id)`` descending, with an opaque cursor."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(key < at, and_(key == at, row_id < last_id)))
    rows = list(session.scalars(stmt.order_by(key.desc(), row_id.desc()).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(key_of(rows[-1]), rows[-1].id)
    return Page(rows, next_cursor)


class MessageRepository:
    """Messages of one tenant: no query here can see another tenant's rows."""

    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def _scoped(self) -> Select[tuple[Message]]:
        return select(Message).where(Message.tenant_id == self.tenant_id)

    def get(self, message_id: uuid.UUID, *, for_update: bool = False) -> Message | None:
        stmt = self._scoped().where(Message.id == message_id).execution_options(populate_existing=True)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def list(self, *, limit: int, cursor: str | None, status: str | None = None, channel: str | None = None,
             to: str | None = None, direction: str | None = None,
             conversation_id: uuid.UUID | None = None) -> Page[Message]:
        """Newest first."""
        stmt = self._scoped()
        if status:
            stmt = stmt.where(Message.status == status)
        if channel:
            stmt = stmt.where(Message.channel == channel)
        if to:
            stmt = stmt.where(Message.to_address == to)
        if direction:
            stmt = stmt.where(Message.direction == direction)
        if conversation_id:
            stmt = stmt.where(Message.conversation_id == conversation_id)
        return _newest_first(self.session, stmt, key=Message.created_at, row_id=Message.id, limit=limit,
                             cursor=cursor, key_of=lambda m: m.created_at)

    def attempts(self, message_id: uuid.UUID) -> list[MessageAttempt]:
        """The message's provider attempts, in order (the message must be this tenant's)."""
        return list(self.session.scalars(
            select(MessageAttempt).join(Message, Message.id == MessageAttempt.message_id)
            .where(Message.tenant_id == self.tenant_id, MessageAttempt.message_id == message_id)
            .order_by(MessageAttempt.number, MessageAttempt.started_at)
        ))

    def latest_in_conversation(self, conversation_id: uuid.UUID, *, limit: int) -> tuple[list[Message], bool]:
        """The conversation's ``limit`` most recent messages, oldest first, and whether older ones exist."""
        rows = list(self.session.scalars(
            self._scoped().where(Message.conversation_id == conversation_id)
            .order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
        ))
        return list(reversed(rows[:limit])), len(rows) > limit

    def provider_ids_taken(self, provider_message_ids: Sequence[str]) -> set[str]:
        """Which of these provider ids already name one of the tenant's messages."""
        if not provider_message_ids:
            return set()
        return set(self.session.scalars(
            select(Message.provider_message_id).where(
                Message.tenant_id == self.tenant_id, Message.provider_message_id.in_(list(provider_message_ids)))
        ))


def _activity(conversation: Any = Conversation) -> ColumnElement:
    return func.coalesce(conversation.last_message_at, conversation.created_at)


class ConversationRepository:
    """Conversations of one tenant."""

    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def _scoped(self) -> Select[tuple[Conversation]]:
        return select(Conversation).where(Conversation.tenant_id == self.tenant_id)

    def get(self, conversation_id: uuid.UUID, *, for_update: bool = False) -> Conversation | None:
        stmt = self._scoped().where(Conversation.id == conversation_id).execution_options(populate_existing=True)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def list(self, *, limit: int, cursor: str | None, status: str | None = None,
             channel: str | None = None) -> Page[Conversation]:
        """Newest activity first."""
        stmt = self._scoped()
        if status:
            stmt = stmt.where(Conversation.status == status)
        if channel:
            stmt = stmt.where(Conversation.channel == channel)
        return _newest_first(self.session, stmt, key=_activity(), row_id=Conversation.id, limit=limit,
                             cursor=cursor, key_of=lambda c: c.last_message_at or c.created_at)


# --- delivery: by message id, across tenants ------------------------------------------
# Plain Core statements on the tables: a worker runs these for every message it
# delivers, and ORM objects (identity map, attribute events, unit of work) cost more
# CPU than the statements themselves. The rows come back as named tuples.

_messages = Message.__table__
_attempts = MessageAttempt.__table__
_outbox = OutboxEntry.__table__

# what a delivery attempt reads of its message (``Row`` attributes named as on Message)
CLAIMED_COLUMNS = tuple(_messages.c[name] for name in (
    "id", "tenant_id", "conversation_id", "integration_id", "broadcast_id", "direction", "channel", "to_address",
    "from_address", "body", "media", "attempt_count", "max_attempts", "subject", "html", "provider_template",
    "consent_exempt"))
# what a status event says of a message (hub.events.service.message_data)
_EVENT_COLUMNS = tuple(_messages.c[name] for name in (
    "id", "tenant_id", "conversation_id", "channel", "direction", "status", "error_code"))


def claim_for_delivery(session: Session, *, message_ids: Sequence[uuid.UUID], now: datetime,
                       lease_until: datetime) -> list[Row[Any]]:
    """Take the messages for one provider call each, in ONE conditional UPDATE: a
    message must be due (queued, or retrying with ``next_attempt_at`` passed) or held
    by a worker whose lease ran out. Returns the rows taken (``CLAIMED_COLUMNS``, as they
    are after the claim); the others are another worker's or need no delivery."""
    due = and_(_messages.c.status.in_(CLAIMABLE),
               or_(_messages.c.next_attempt_at.is_(None), _messages.c.next_attempt_at <= now))
    abandoned = and_(_messages.c.status == MessageStatus.SENDING, _messages.c.claimed_until < now)
    return list(session.execute(
        update(_messages)
        .where(_messages.c.id.in_(list(message_ids)), _messages.c.direction == Direction.OUTBOUND,
               or_(due, abandoned))
        .values(status=MessageStatus.SENDING, claimed_until=lease_until,
                attempt_count=_messages.c.attempt_count + 1, updated_at=now)
        .returning(*CLAIMED_COLUMNS)
    ))


def extend_claims(session: Session, *, claims: Sequence[tuple[uuid.UUID, int]], until: datetime) -> list[uuid.UUID]:
    """A live worker's heartbeat: move the lease of its claims ``(message id, attempt_count)``
    that still stand to ``until``, and their outbox entries with them (the relay
    publishes a message again only once its lease is over). Returns the ids renewed; a
    claim another worker took over (its attempt_count moved on) or settled is left alone."""
    if not claims:
        return []
    renewed = list(session.scalars(
        update(_messages)
        .where(tuple_(_messages.c.id, _messages.c.attempt_count).in_(list(claims)),
               _messages.c.status == MessageStatus.SENDING, _messages.c.claimed_until.is_not(None))
        .values(claimed_until=until)
        .returning(_messages.c.id)
    ))
    if renewed:
        session.execute(update(_outbox).where(_outbox.c.message_id.in_(renewed))
                        .values(available_at=until, published_at=None))
    return renewed


def load_message(session: Session, message_id: uuid.UUID) -> Message | None:
    return session.scalar(select(Message).where(Message.id == message_id).execution_options(populate_existing=True))


def attempts_of_many(session: Session, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row[Any]]]:
    """Each message's attempts, in order: ``(id, message_id, number, outcome, error_code, started_at)``."""
    found: dict[uuid.UUID, list[Row[Any]]] = {}
    for attempt in session.execute(
            select(_attempts.c.id, _attempts.c.message_id, _attempts.c.number, _attempts.c.outcome,
                   _attempts.c.error_code, _attempts.c.started_at)
            .where(_attempts.c.message_id.in_(list(message_ids)))
            .order_by(_attempts.c.number, _attempts.c.started_at)):
        found.setdefault(attempt.message_id, []).append(attempt)
    return found


def open_attempts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert attempt rows (``sending``), in one batched INSERT."""
    if rows:
        session.execute(insert(_attempts), list(rows))


def settle_attempts(session: Session, attempt_ids: Sequence[uuid.UUID], **values: Any) -> None:
    """Give these attempts the same outcome (``values``), in one UPDATE."""
    if attempt_ids:
        session.execute(update(_attempts).where(_attempts.c.id.in_(list(attempt_ids))).values(**values))


def finish_claimed(session: Session, *, outcomes: Sequence[tuple[uuid.UUID, int, dict[str, Any]]]
                   ) -> dict[uuid.UUID, Row[Any]]:
    """Record the outcomes ``(message id, attempt_count, values)`` of our provider calls,
    only where our claim still stands (a worker whose lease ran out and was replaced must
    not overwrite its successor). Returns the messages recorded, by id, as rows of what
    a status event says (``_EVENT_COLUMNS``) taken before the values were written.

    The first UPDATE is the check and takes the rows' locks (PostgreSQL) or the write
    lock (SQLite) at once, so no successor can claim between it and the writes."""
    if not outcomes:
        return {}
    ours = {row.id: row for row in session.execute(
        update(_messages)
        .where(tuple_(_messages.c.id, _messages.c.attempt_count).in_([(mid, count) for mid, count, _ in outcomes]),
               _messages.c.status == MessageStatus.SENDING)
        .values(claimed_until=None)
        .returning(*_EVENT_COLUMNS)
    )}
    _update_by_id(session, _messages, [{"id": mid, **values} for mid, _, values in outcomes if mid in ours])
    return ours


def _update_by_id(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE rows by primary key: one executemany per set of columns."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(sorted(k for k in row if k != "id")), []).append(
            {f"new_{k}": v for k, v in row.items()})
    for columns, params in by_columns.items():
        session.execute(update(table).where(table.c.id == bindparam("new_id"))
                        .values({name: bindparam(f"new_{name}") for name in columns}), params)


def drop_attempts(session: Session, attempt_ids: Sequence[uuid.UUID]) -> None:
    """Remove attempt rows of calls that were never made."""
    if attempt_ids:
        session.execute(delete(_attempts).where(_attempts.c.id.in_(list(attempt_ids))))


def finish_attempts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write attempts' outcomes: ``{"id", "outcome", "finished_at", "error_code", "error_message"}``
    each, and ``started_at`` where the provider call began later than the claim."""
    _update_by_id(session, _attempts, rows)


def arm_outbox(session: Session, *, message_id: uuid.UUID, available_at: datetime) -> None:
    """Ask the relay to publish the message's delivery task at ``available_at``."""
    arm_outboxes(session, message_ids=[message_id], available_at=available_at)


def arm_outboxes(session: Session, *, message_ids: Sequence[uuid.UUID], available_at: datetime) -> None:
    """``arm_outbox`` for many messages at once (one UPDATE while every entry exists)."""
    armed = session.execute(
        update(_outbox).where(_outbox.c.message_id.in_(list(message_ids)))
        .values(available_at=available_at, published_at=None)
    ).rowcount
    if armed != len(message_ids):
        for message_id in message_ids:
            insert_ignore(session, OutboxEntry, {"id": new_id(), "message_id": message_id,
                                                 "available_at": available_at, "created_at": utcnow()},
                          conflict=["message_id"])


def settle_outbox(session: Session, *, message_ids: Sequence[uuid.UUID]) -> None:
    """The messages reached a final state: nothing is left to publish for them."""
    if message_ids:
        session.execute(delete(_outbox).where(_outbox.c.message_id.in_(list(message_ids))))


def due_outbox_entries(session: Session, *, now: datetime, republish_before: datetime,
                       limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``(entry id, message id)`` of entries whose time has come: never published, or
    published before ``republish_before`` without a worker claiming the message since
    (a claim re-arms the entry). On PostgreSQL, rows another relay holds are skipped."""
    stmt = (
        select(OutboxEntry.id, OutboxEntry.message_id)
        .where(OutboxEntry.available_at <= now,
               or_(OutboxEntry.published_at.is_(None), OutboxEntry.published_at <= republish_before))
        .order_by(OutboxEntry.available_at)
        .limit(limit)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return [(row.id, row.message_id) for row in session.execute(stmt)]


def mark_published(session: Session, *, entry_ids: Sequence[uuid.UUID], due_by: datetime, now: datetime) -> int:
    """Mark relayed entries published, unless a worker re-armed one since it was read
    (re-arming always moves ``available_at`` past ``due_by``)."""
    if not entry_ids:
        return 0
    return session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.id.in_(list(entry_ids)), OutboxEntry.available_at <= due_by)
        .values(published_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount or 0


def mark_published_as_written(connection: Connection, *, entries: Sequence[tuple[uuid.UUID, datetime]],
                              now: datetime) -> int:
    """After-commit publishing: mark ``(message id, available_at)`` entries published in
    one UPDATE, only while they are as the request wrote them (a fast worker may have
    re-armed one already; its new ``available_at`` then no longer matches)."""
    if not entries:
        return 0
    match = or_(*(and_(OutboxEntry.message_id == message_id, OutboxEntry.available_at == at)
                  for message_id, at in entries))
    return connection.execute(
        update(OutboxEntry).where(match, OutboxEntry.published_at.is_(None)).values(published_at=now)
    ).rowcount or 0
