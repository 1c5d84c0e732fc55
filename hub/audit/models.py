"""The audit log: one hash chain per tenant (and one for the platform)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, new_id

GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = "platform"


class AuditEvent(Base):
    """One audited fact. ``hash = HMAC-SHA256(chain key of key_id, prev_hash + canonical
    JSON of the row)`` (hub.audit.keys); rows written before the chain was keyed have no
    ``key_id`` and ``hash = sha256(prev_hash + canonical JSON)``, and may only come first.

    No foreign key to tenants: the trail outlives what it describes.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_events_chain_occurred_at", "chain", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    chain: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    tenant_id: Mapped[uuid.UUID | None]
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # the master key whose chain key sealed the row; None: plain SHA-256 (before 0021)
    key_id: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The tip of each chain. Writers lock this row (UPDATE … RETURNING) so two
    concurrent writers can never both extend the same tip: a chain cannot fork."""

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    # rows 1..legacy_seq were written before the chain was keyed (plain SHA-256); every
    # later row must be keyed. Fixed by migration 0021 and signed into each checkpoint.
    legacy_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class AuditCheckpoint(Base):
    """The latest signed checkpoint of a chain's head (hub.audit.checkpoints). Copies
    kept outside the database are what prove a cut tail; this one is the newest."""

    __tablename__ = "audit_checkpoints"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    legacy_seq: Mapped[int] = mapped_column(BigInteger)
    signed_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
