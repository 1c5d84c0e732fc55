"""Writing and proving the hash-chained audit log.

Each row's hash is keyed (HMAC with a key derived from the master keys, see
hub.audit.keys), so someone who can write to the database cannot edit a row and
recompute the hashes after it; signed checkpoints of each chain's head
(hub.audit.checkpoints) show a cut tail. ``verify_chain`` checks both.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.audit.keys import AuditKeys, audit_keys
from hub.audit.models import GENESIS_HASH, PLATFORM_CHAIN, AuditChainHead, AuditCheckpoint, AuditEvent
from hub.db import insert_ignore, utcnow
from hub.logs import redact
from hub.pagination import decode_sequence_cursor

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hub.audit.checkpoints import Checkpoint


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


def legacy_hash(prev_hash: str, event: AuditEvent) -> str:
    """The unkeyed hash of rows written before the chain was keyed (migration 0021)."""
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


def chain_hash(keys: AuditKeys, prev_hash: str, event: AuditEvent) -> str:
    """The row's keyed hash, with the chain key of ``event.key_id``."""
    return keys.seal(event.key_id, prev_hash, canonical(event))


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
    keys = audit_keys(session)
    event.key_id = keys.active_id
    event.hash = chain_hash(keys, prev_hash, event)
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
    # the highest checkpoint the chain was checked against (None: none known)
    checkpoint_seq: int | None = None


def row_problem(keys: AuditKeys, event: AuditEvent, prev_hash: str, legacy_seq: int) -> str | None:
    """Why this row is not what its writer sealed, or None."""
    if event.key_id is None:
        if event.seq > legacy_seq:
            return "row is not keyed (only rows written before the chain was keyed may be)"
        return None if legacy_hash(prev_hash, event) == event.hash else "row content does not match its hash"
    if not keys.knows(event.key_id):
        return f"row sealed with master key {event.key_id!r}, which is not in HUB_MASTER_KEYS"
    return None if chain_hash(keys, prev_hash, event) == event.hash else "row content does not match its hash"


def verify_chain(*, session: Session, chain: str, checkpoints: Iterable[Checkpoint] = (),
                 batch: int = 1000) -> ChainVerdict:
    """Walk a chain from its start; name the first row whose link or content is wrong,
    or the first checkpoint (the database's and ``checkpoints``) the chain does not reach."""
    from hub.audit.checkpoints import Checkpoint

    keys = audit_keys(session)
    stored = session.get(AuditCheckpoint, chain)  # before the head: never newer than it
    head = session.get(AuditChainHead, chain)
    known = [cp for cp in checkpoints if cp.chain == chain]
    if stored is not None:
        known.append(Checkpoint.of(stored))
    legacy_seq = head.legacy_seq if head is not None else 0
    for cp in sorted(known, key=lambda c: c.seq):
        if (problem := cp.problem(keys)) is not None:
            return ChainVerdict(chain, 0, False, cp.seq, f"checkpoint at seq={cp.seq}: {problem}")
        if cp.legacy_seq != legacy_seq:
            return ChainVerdict(chain, 0, False, min(cp.legacy_seq, legacy_seq) + 1,
                                f"the chain's unkeyed prefix was moved from seq {cp.legacy_seq} to {legacy_seq} "
                                f"since the checkpoint at seq={cp.seq}")
    expected: dict[int, Checkpoint] = {}
    for cp in known:
        if (other := expected.setdefault(cp.seq, cp)).hash != cp.hash:
            return ChainVerdict(chain, 0, False, cp.seq, f"checkpoints signed at {other.signed_at} and "
                                f"{cp.signed_at} disagree about row seq={cp.seq}")
    reach = max(expected, default=None)
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    while True:  # walk, then read the head; rows appended meanwhile are walked too
        walked = checked
        while rows := list(session.scalars(
            select(AuditEvent).where(AuditEvent.chain == chain, AuditEvent.seq >= expected_seq)
            .order_by(AuditEvent.seq).limit(batch)
        )):
            for event in rows:
                if event.seq != expected_seq:
                    return ChainVerdict(chain, checked, False, expected_seq, "row missing", reach)
                if event.prev_hash != prev_hash:
                    return ChainVerdict(chain, checked, False, event.seq, "link to the previous row is broken",
                                        reach)
                if (problem := row_problem(keys, event, prev_hash, legacy_seq)) is not None:
                    return ChainVerdict(chain, checked, False, event.seq, problem, reach)
                cp = expected.get(event.seq)
                if cp is not None and cp.hash != event.hash:
                    return ChainVerdict(chain, checked, False, event.seq,
                                        f"row differs from the checkpoint signed at {cp.signed_at}", reach)
                prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
        head = session.scalars(select(AuditChainHead).where(AuditChainHead.chain == chain)
                               .execution_options(populate_existing=True)).one_or_none()
        if head is None or head.last_seq <= checked or checked == walked:
            break
    if reach is not None and reach > checked:
        return ChainVerdict(chain, checked, False, checked + 1,
                            f"rows after this one were removed: a checkpoint signed at {expected[reach].signed_at} "
                            f"saw the chain at seq={reach}", reach)
    if head is None and checked:
        return ChainVerdict(chain, checked, False, checked, "the chain's head is missing", reach)
    if head is not None and head.last_seq > checked:
        return ChainVerdict(chain, checked, False, checked + 1, "rows after this one were removed", reach)
    if head is not None and (head.last_seq != checked or head.last_hash != prev_hash):
        return ChainVerdict(chain, checked, False, checked, "the chain's head does not match its last row", reach)
    return ChainVerdict(chain, checked, True, checkpoint_seq=reach)


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
