"""The event log: publish a tenant's event in the caller's transaction, notify the
live streams once it commits, read events back for a stream, sweep old ones.

Events carry ids, channel, direction and status, never message bodies, addresses or
secrets: the log is kept for days and read by anything holding ``messages:read``, so
it holds nothing personal an LGPD erasure would have to find (the client reads a
message's content from ``GET /v1/messages/{id}``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import event as sa_event
from sqlalchemy import insert
from sqlalchemy.orm import Session

from hub.db import transaction, utcnow
from hub.events.bus import Notice, bus_for_engine
from hub.events.models import CONVERSATION_UPDATED, EVENT_TYPES, MESSAGE_RECEIVED, MESSAGE_STATUS, TenantEvent
from hub.events.repository import EventRepository, delete_older_than
from hub.queue import outermost_commit

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.events")

_PENDING = "hub_events_after_commit"
SWEEP_BATCH = 5000


def publish_event(*, session: Session, tenant_id: uuid.UUID, type: str, data: dict[str, Any]) -> TenantEvent:
    """Write the tenant's event in the caller's transaction; live streams hear of it
    once that commits (and never, if it rolls back). ``type`` must be one of
    ``EVENT_TYPES`` (add a new one there: the stream's ``types=`` filter checks that list)."""
    _check_type(type)
    row = TenantEvent(tenant_id=tenant_id, type=type, data=data, created_at=utcnow())
    session.add(row)
    session.flush()  # the id is the stream's event id
    session.info.setdefault(_PENDING, []).append(Notice(tenant_id, row.id, type))
    return row


def publish_events(*, session: Session, events: list[tuple[uuid.UUID, str, dict[str, Any]]]) -> None:
    """``publish_event`` for ``(tenant_id, type, data)`` each, in one batched INSERT
    (the ids come back with their tenant and type, so no row order is relied on)."""
    if not events:
        return
    for _, type, _ in events:
        _check_type(type)
    now = utcnow()
    written = session.execute(
        insert(TenantEvent).returning(TenantEvent.id, TenantEvent.tenant_id, TenantEvent.type),
        [{"tenant_id": tenant_id, "type": type, "data": data, "created_at": now} for tenant_id, type, data in events])
    session.info.setdefault(_PENDING, []).extend(Notice(tenant_id, event_id, type)
                                                 for event_id, tenant_id, type in written)


def _check_type(type: str) -> None:
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; add it to hub.events.models.EVENT_TYPES")


@sa_event.listens_for(Session, "after_commit")
def _notify_committed(session: Session) -> None:
    if not outermost_commit(session):
        return
    notices = session.info.pop(_PENDING, None)
    if not notices:
        return
    bind = session.get_bind()
    bus = bus_for_engine(getattr(bind, "engine", bind))
    if bus is None:  # a process without a runtime (a script): the rows are there for replay
        return
    bus.notify(notices)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_uncommitted(session: Session, previous_transaction: Any) -> None:
    # a rolled-back savepoint keeps the outer notices; one naming a row that was rolled
    # back with it finds nothing when the stream reads it, so it is harmless
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)


# --- what the hooks in messaging and webhooks call (one line each) ---------------------


def message_data(message: Any) -> dict[str, Any]:
    """What an event says about a message: ids and state, nothing the person wrote."""
    data = {"message_id": str(message.id), "conversation_id": str(message.conversation_id)
            if message.conversation_id else None, "channel": message.channel, "direction": message.direction,
            "status": message.status}
    if message.error_code:
        data["error_code"] = message.error_code
    return data


def publish_message_received(*, session: Session, message: Any) -> TenantEvent:
    """``message.received`` for an inbound message just recorded."""
    return publish_event(session=session, tenant_id=message.tenant_id, type=MESSAGE_RECEIVED,
                         data=message_data(message))


def publish_message_status(*, session: Session, message: Any) -> TenantEvent:
    """``message.status`` for an outbound message whose status just moved (``message``
    as it now stands in the database)."""
    return publish_event(session=session, tenant_id=message.tenant_id, type=MESSAGE_STATUS,
                         data=message_data(message))


def publish_message_statuses(*, session: Session, messages: list[Any]) -> None:
    """``publish_message_status`` for many messages, in one INSERT."""
    publish_events(session=session, events=[(m.tenant_id, MESSAGE_STATUS, message_data(m)) for m in messages])


def publish_conversation_updated(*, session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                                 change: str) -> TenantEvent | None:
    """``conversation.updated``: ``change`` is created, advanced, reopened or closed."""
    from hub.messaging.models import Conversation

    # populate_existing: the thread was moved by a bulk UPDATE the identity map has not seen
    conversation = session.get(Conversation, conversation_id, populate_existing=True)
    if conversation is None or conversation.tenant_id != tenant_id:
        return None
    return publish_event(session=session, tenant_id=tenant_id, type=CONVERSATION_UPDATED, data={
        "conversation_id": str(conversation.id), "channel": conversation.channel, "status": conversation.status,
        "change": change,
        "last_message_at": conversation.last_message_at.isoformat() if conversation.last_message_at else None,
    })


# --- reading, for the stream --------------------------------------------------------------


def latest_event_id(*, session: Session, tenant_id: uuid.UUID) -> int:
    """Where a stream without ``Last-Event-ID`` starts: after the tenant's newest event."""
    return EventRepository(session, tenant_id).latest_id()


def events_since(*, session: Session, tenant_id: uuid.UUID, after: int, also: Collection[int] = (),
                 types: Collection[str] | None = None, limit: int = 500) -> list[TenantEvent]:
    """The tenant's events after ``after`` (and the ids in ``also``), oldest first."""
    return EventRepository(session, tenant_id).newer(after=after, also=also, types=types, limit=limit)


def event_envelope(row: TenantEvent, public_id: str) -> dict[str, Any]:
    """The JSON an event is sent as (live and on replay alike); ``public_id`` is its
    id as the tenant sees it (hub.events.ids)."""
    return {"id": public_id, "type": row.type, "created_at": row.created_at.isoformat(), "data": row.data}


# --- retention ---------------------------------------------------------------------------


def sweep_events(*, session: Session, retention_days: int, limit: int = SWEEP_BATCH) -> int:
    """Delete up to ``limit`` of every tenant's events older than ``retention_days``."""
    return delete_older_than(session, cutoff=utcnow() - timedelta(days=retention_days), batch=limit)


def sweep_old_events(*, runtime: Runtime) -> int:
    """The retention sweep (beat): batch after batch, each its own short transaction."""
    removed = 0
    while True:
        with transaction(runtime.session_factory) as session:
            n = sweep_events(session=session, retention_days=runtime.settings.events_retention_days)
        removed += n
        if n < SWEEP_BATCH:
            break
    if removed:
        log.info("old events swept", removed=removed, retention_days=runtime.settings.events_retention_days)
    return removed
