"""Writing and proving the hash-chained audit log."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.audit.models import GENESIS_HASH, PLATFORM_CHAIN, AuditChainHead, AuditEvent
from hub.db import insert_ignore, utcnow
from hub.logs import redact
from hub.pagination import decode_sequence_cursor


def chain_of(tenant_id: uuid.UUID | None) -> str:
    return str(tenant_id) if tenant_id else PLATFORM_CHAIN


def canonical(event: AuditEvent) -> bytes:
    """The row's content as canonical JSON (sorted keys, no spaces): what the hash covers."""
    return json.dumps(
        {
            "chain": event.chain,
            "seq": event.seq,
            "tenant_id": str(event.tenant_id) if event.tenant_id else None,
            "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
            "actor": event.actor,
            "action": event.action,
            "target": event.target,
            "outcome": event.outcome,
            "ip": event.ip,
            "request_id": event.request_id,
            "details": event.details,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    ).encode()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


def record(
    *,
    session: Session,
    tenant_id: uuid.UUID | None,
    actor: str,
    action: str,
    target: str | None = None,
    outcome: str = "success",
    ip: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the tenant's chain, in the caller's transaction.

    If this fails, the caller's transaction fails with it: an action that cannot be
    audited does not happen.
    """
    chain = chain_of(tenant_id)
    insert_ignore(session, AuditChainHead, {"chain": chain, "last_seq": 0, "last_hash": GENESIS_HASH},
                  conflict=["chain"])
    # The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before
    # we read the tip, so concurrent writers queue instead of forking the chain.
    seq, prev_hash = session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.chain == chain)
        .values(last_seq=AuditChainHead.last_seq + 1)
        .returning(AuditChainHead.last_seq, AuditChainHead.last_hash)
    ).one()
    event = AuditEvent(
        id=uuid.uuid4(),
        chain=chain,
        seq=seq,
        tenant_id=tenant_id,
        occurred_at=utcnow(),
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        ip=ip,
        request_id=request_id,
        details=redact(details or {}),
        prev_hash=prev_hash,
    )
    event.hash = chain_hash(prev_hash, event)
    session.execute(update(AuditChainHead).where(AuditChainHead.chain == chain).values(last_hash=event.hash))
    session.add(event)
    session.flush()
    return event


@dataclass
class ChainVerdict:
    chain: str
    checked: int
    ok: bool
    broken_seq: int | None = None
    reason: str | None = None


def verify_chain(*, session: Session, chain: str, batch: int = 1000) -> ChainVerdict:
    """Walk a chain from its start; name the first row whose link or content is wrong."""
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    while True:
        rows = list(session.scalars(
            select(AuditEvent).where(AuditEvent.chain == chain, AuditEvent.seq >= expected_seq)
            .order_by(AuditEvent.seq).limit(batch)
        ))
        if not rows:
            break
        for event in rows:
            if event.seq != expected_seq:
                return ChainVerdict(chain, checked, False, expected_seq, "row missing")
            if event.prev_hash != prev_hash:
                return ChainVerdict(chain, checked, False, event.seq, "link to the previous row is broken")
            if chain_hash(prev_hash, event) != event.hash:
                return ChainVerdict(chain, checked, False, event.seq, "row content does not match its hash")
            prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    head = session.get(AuditChainHead, chain)
    if head is not None and (head.last_seq != checked or head.last_hash != prev_hash):
        return ChainVerdict(chain, checked, False, checked + 1, "rows after this one were removed")
    return ChainVerdict(chain, checked, True)


def all_chains(*, session: Session) -> list[str]:
    return list(session.scalars(select(AuditChainHead.chain).order_by(AuditChainHead.chain)))


def list_events(
    *,
    session: Session,
    tenant_id: uuid.UUID | None,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[AuditEvent], str | None]:
    """Newest first; ``cursor`` is the ``seq`` to continue below."""
    stmt = select(AuditEvent).where(AuditEvent.chain == chain_of(tenant_id))
    if since:
        stmt = stmt.where(AuditEvent.occurred_at >= since)
    if until:
        stmt = stmt.where(AuditEvent.occurred_at < until)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if cursor:
        stmt = stmt.where(AuditEvent.seq < decode_sequence_cursor(cursor))
    limit = max(1, min(limit, 200))
    rows = list(session.scalars(stmt.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    return rows[:limit], next_cursor
