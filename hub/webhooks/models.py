"""The route table and the stored inbound events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, new_id, utcnow


class Route(Base):
    """``(kind, route_key) -> integration``: who owns a number, a phone_number_id, a
    channel id. Unique: one number belongs to one integration, ever at a time."""

    __tablename__ = "routes"
    __table_args__ = (UniqueConstraint("kind", "route_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    route_key: Mapped[str] = mapped_column(String(255))
    integration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


_UNDISPATCHED = text("handled_at IS NULL AND dispatched_at IS NULL")
_UNHANDLED = text("handled_at IS NULL")


class WebhookEvent(Base):
    """One verified provider event, stored before the 200: the durable record.

    Unique per ``(integration_id, provider_event_id)`` so a repeated delivery is a
    no-op. Scoped to the integration whose secret verified it: a tenant signing with
    its own secret can never pre-empt another tenant's event by claiming its id.
    ``dispatched_at`` is set when a batch is handed to a worker, ``handled_at``
    when the worker finished it (a repeat is then skipped).
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("integration_id", "provider_event_id"),
        # The relay's two queues, each read in order with a LIMIT: events never handed
        # out, and handed-out events no worker has finished. Partial, so a pass costs
        # its batch, not the table or the backlog of handled events.
        Index("ix_webhook_events_undispatched", "received_at", postgresql_where=_UNDISPATCHED,
              sqlite_where=_UNDISPATCHED),
        Index("ix_webhook_events_unhandled", "dispatched_at", postgresql_where=_UNHANDLED, sqlite_where=_UNHANDLED),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    provider_event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    integration_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("integrations.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    handled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
