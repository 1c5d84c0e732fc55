"""Broadcasts, their recipients, and the per-tenant pacing lanes that space their sends."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, TimestampMixin, new_id


class BroadcastStatus(StrEnum):
    """What is stored; ``completed`` is derived on read (everything expanded, nothing left to go)."""

    SCHEDULED = "scheduled"  # send_at in the future: no message exists yet
    SENDING = "sending"  # being expanded into messages and/or delivered
    CANCELED = "canceled"
    COMPLETED = "completed"  # never stored


class Broadcast(TimestampMixin, Base):
    """One template sent to many recipients of a tenant.

    Its recipients become messages in chunks (``next_expand_at`` says when the next chunk
    is due), each message's outbox entry staggered at ``1 / rate`` seconds so the relay
    releases them at the tenant's pace. Everything lives in the database: a restart
    resumes where it stopped.
    """

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    template: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))
    # messages per second this broadcast is paced at (min of the tenant's and the sender's)
    rate: Mapped[float]
    total: Mapped[int]  # recipients after de-duplication
    duplicates: Mapped[int] = mapped_column(default=0)
    expanded: Mapped[int] = mapped_column(default=0)  # recipients turned into messages so far
    send_at: Mapped[datetime | None]
    # when the next chunk of recipients is to become messages; None: nothing left to expand
    next_expand_at: Mapped[datetime | None] = mapped_column(index=True)
    # when an expansion task was last published for the current next_expand_at (the relay
    # publishes again only when this is old: the broker lost it)
    expand_published_at: Mapped[datetime | None]
    # the end of the last send slot reserved for this broadcast
    slots_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(255))


class BroadcastRecipient(Base):
    """One recipient of a broadcast: a normalized address, its own data, and the message it became."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "position"),
        # de-duplication by normalized address, enforced by the database too
        UniqueConstraint("broadcast_id", "address"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    broadcast_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    position: Mapped[int]
    address: Mapped[str] = mapped_column(String(320))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    locale: Mapped[str | None] = mapped_column(String(16))
    data: Mapped[dict[str, Any] | None]
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))


class SendLane(Base):
    """The next free send slot of one tenant on one channel.

    Broadcasts reserve their slots here, a chunk at a time under a row lock, so two
    broadcasts of one tenant on one channel share its rate instead of doubling it.
    """

    __tablename__ = "send_lanes"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_slot_at: Mapped[datetime]
