"""The durable per-tenant event log behind the real-time stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, utcnow

# the three types the stream carries (the list)
MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
EVENT_TYPES: tuple[str, ...] = (MESSAGE_RECEIVED, MESSAGE_STATUS, CONVERSATION_UPDATED)


class TenantEvent(Base):
    """One notification of a tenant: its ``id`` is the SSE event id, so it only grows.

    SQLite's AUTOINCREMENT (not plain rowid) never reuses an id, even once the sweep has
    deleted the newest rows; PostgreSQL's identity sequence never does either.
    """

    __tablename__ = "tenant_events"
    __table_args__ = (
        Index("ix_tenant_events_tenant_id_id", "tenant_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
