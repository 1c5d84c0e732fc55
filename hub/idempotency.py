"""``Idempotency-Key`` for POSTs that create things: the same key and body replay
the first answer; the same key while the first is still running is a 409; the same
key with another body is a 422."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, insert_ignore, utcnow
from hub.errors import Conflict, Invalid

KEY_TTL = timedelta(hours=24)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_flight | completed
    resource_id: Mapped[uuid.UUID | None]
    response_status: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class Replay:
    """A completed earlier request with the same key and body."""

    resource_id: uuid.UUID | None
    status_code: int


def request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def claim(*, session: Session, tenant_id: uuid.UUID, scope: str, key: str, body: Any) -> IdempotencyKey | Replay:
    """Claim ``key`` for this request, or return the earlier request's result.

    The claim lives in the caller's transaction: a concurrent request with the same
    key waits on the unique index until this one commits, then replays it.
    """
    digest = request_hash(body)
    now = utcnow()
    row = session.get(IdempotencyKey, (tenant_id, scope, key))
    if row is not None and row.created_at < now - KEY_TTL:
        session.delete(row)
        session.flush()
        row = None
    if row is None:
        inserted = insert_ignore(session, IdempotencyKey, {
            "tenant_id": tenant_id, "scope": scope, "key": key, "request_hash": digest,
            "state": "in_flight", "created_at": now,
        }, conflict=["tenant_id", "scope", "key"])
        row = session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.scope == scope, IdempotencyKey.key == key
        ).execution_options(populate_existing=True))
        assert row is not None
        if inserted:
            return row
    if row.request_hash != digest:
        raise Invalid("this Idempotency-Key was used with a different request body", code="idempotency_key_reused")
    if row.state != "completed":
        raise Conflict("a request with this Idempotency-Key is still in progress; retry shortly",
                       code="idempotency_key_in_flight", headers={"Retry-After": "1"})
    return Replay(row.resource_id, row.response_status or 200)


def complete(*, session: Session, claim_row: IdempotencyKey, resource_id: uuid.UUID | None, status_code: int) -> None:
    """Record the result a replay will answer with."""
    claim_row.state = "completed"
    claim_row.resource_id = resource_id
    claim_row.response_status = status_code
    session.flush()
