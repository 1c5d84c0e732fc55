"""Google connect states, calendar mappings, appointments, Google-only busy time and
the sync log.

Leases (``sync_lease_until``, ``push_lease_until``) are claimed with a conditional
UPDATE so one worker at a time syncs a calendar or pushes an appointment, without
holding a database lock across provider calls. Counters say whether work is left:
a push notification bumps ``sync_wanted``; a sync that started after that bump sets
``sync_done`` to it; an API edit bumps ``version``; a push that sent it sets
``synced_version``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, TimestampMixin, new_id, utcnow


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in enum)})"


class ResourceKind(StrEnum):
    PROFESSIONAL = "professional"
    ROOM = "room"
    TECHNICIAN = "technician"


class ResourceStatus(StrEnum):
    ACTIVE = "active"
    UNMAPPED = "unmapped"


class ChannelStatus(StrEnum):
    NONE = "none"  # no channel (unmapped, disconnected, or not opened yet)
    STARTING = "starting"  # a worker is opening it
    ACTIVE = "active"
    ERROR = "error"  # Google refused; last_error says why; renewal retries


class AppointmentStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class SyncState(StrEnum):
    PENDING = "pending"  # a change is waiting to reach Google
    SYNCED = "synced"
    FAILED = "failed"  # Google refused it for good; last_sync_error says why


class GoogleConnectState(Base):
    """One started connect flow: the nonce of its signed ``state``, its PKCE verifier
    (sealed), and the browser it is bound to. Opened once (the browser that opens the
    hub's start link gets a cookie whose digest is kept here) and consumed once, both
    atomically; the callback needs the state, the code and that cookie."""

    __tablename__ = "google_connect_states"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    code_verifier_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]
    # Google's consent URL, handed to the browser that opens the start link
    authorization_url: Mapped[str | None] = mapped_column(Text)
    # the account the tenant named (sent as login_hint; another account is refused)
    account_hint: Mapped[str | None] = mapped_column(String(320))
    # the tenant's own OAuth client the flow started with (None: the platform's)
    oauth_client_id: Mapped[str | None] = mapped_column(String(255))
    opened_at: Mapped[datetime | None]
    # SHA-256 of the secret in the cookie of the browser that opened the start link
    browser_digest: Mapped[str | None] = mapped_column(String(64))


class TenantGoogleClient(TimestampMixin, Base):
    """A clinic's own Google OAuth client, used instead of the platform's (secret sealed)."""

    __tablename__ = "google_oauth_clients"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_sealed: Mapped[str] = mapped_column(Text)


class CalendarResource(TimestampMixin, Base):
    """A professional, room or technician of a tenant, mapped to one Google calendar."""

    __tablename__ = "calendar_resources"
    __table_args__ = (
        UniqueConstraint("tenant_id", "resource_id"),
        CheckConstraint(_in("kind", ResourceKind), name="kind"),
        CheckConstraint(_in("status", ResourceStatus), name="status"),
        CheckConstraint(_in("channel_status", ChannelStatus), name="channel_status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    # the tenant's own id for the resource, e.g. "dr-ana" or "room-2"
    resource_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default=ResourceKind.PROFESSIONAL)
    status: Mapped[str] = mapped_column(String(16), default=ResourceStatus.ACTIVE)
    calendar_id: Mapped[str] = mapped_column(String(255))
    calendar_time_zone: Mapped[str | None] = mapped_column(String(64))
    # Google's watch channel: its id is our route key (kind google_calendar)
    channel_status: Mapped[str] = mapped_column(String(16), default=ChannelStatus.NONE)
    channel_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    channel_resource_id: Mapped[str | None] = mapped_column(String(255))
    channel_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    channel_error: Mapped[str | None] = mapped_column(Text)
    # incremental sync
    sync_token: Mapped[str | None] = mapped_column(Text)
    sync_wanted: Mapped[int] = mapped_column(BigInteger, default=0)
    sync_done: Mapped[int] = mapped_column(BigInteger, default=0)
    sync_lease_until: Mapped[datetime | None]
    # bumped by every full sync; busy blocks not seen by the latest one are gone in Google
    sync_generation: Mapped[int] = mapped_column(default=0)
    # the end of the window the latest full sync read (its sync token keeps that window)
    sync_window_end: Mapped[datetime | None]
    last_synced_at: Mapped[datetime | None]
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    # serializes bookings of this resource (an UPDATE of this row takes its lock)
    booking_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class Appointment(TimestampMixin, Base):
    """A booking of a resource, mirrored as one Google event whose id derives from ours."""

    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint(_in("status", AppointmentStatus), name="status"),
        CheckConstraint(_in("sync_state", SyncState), name="sync_state"),
        CheckConstraint("end_at > start_at", name="ends_after_start"),
        Index("ix_appointments_resource_start", "resource_pk", "start_at"),
        Index("ix_appointments_due_reminders", "reminded_at", "remind_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    resource_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("calendar_resources.id"))
    status: Mapped[str] = mapped_column(String(16), default=AppointmentStatus.CONFIRMED)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    time_zone: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(500))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    # reminder: sent once, when remind_at has passed (claimed by setting reminded_at)
    remind_before_minutes: Mapped[int | None]
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    reminder_channel: Mapped[str | None] = mapped_column(String(16))
    reminder_message_id: Mapped[uuid.UUID | None]
    reminder_error: Mapped[str | None] = mapped_column(Text)
    cancelled_at: Mapped[datetime | None]
    # who made the latest change ("api" or "google") and when: the conflict policy
    # compares changed_at with the Google event's `updated`
    changed_by: Mapped[str] = mapped_column(String(16), default="api")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Google mirror
    calendar_id: Mapped[str] = mapped_column(String(255))
    google_event_id: Mapped[str] = mapped_column(String(64))
    google_etag: Mapped[str | None] = mapped_column(String(128))
    google_updated: Mapped[datetime | None]
    # hash of the fields we mirror as Google last showed them: tells a Google-side
    # change from a change of fields we do not track (colour, attendees …)
    google_content_hash: Mapped[str | None] = mapped_column(String(64))
    google_synced_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    synced_version: Mapped[int] = mapped_column(default=0)
    sync_state: Mapped[str] = mapped_column(String(16), default=SyncState.PENDING)
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    push_lease_until: Mapped[datetime | None]


class BusyBlock(Base):
    """An event made in Google (not by the hub) that occupies a resource's calendar."""

    __tablename__ = "calendar_busy_blocks"
    __table_args__ = (
        # event id first: a page's lookup stays an index probe even before the table is analyzed
        UniqueConstraint("google_event_id", "resource_pk"),
        Index("ix_calendar_busy_blocks_resource_start", "resource_pk", "start_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    resource_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("calendar_resources.id", ondelete="CASCADE"))
    google_event_id: Mapped[str] = mapped_column(String(1024))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    google_updated: Mapped[datetime | None]
    generation: Mapped[int] = mapped_column(default=0)


class SyncLogEntry(Base):
    """One thing the two-way sync decided, as the tenant reads it."""

    __tablename__ = "calendar_sync_log"
    __table_args__ = (Index("ix_calendar_sync_log_resource_created", "resource_pk", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    resource_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("calendar_resources.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(64))
    appointment_id: Mapped[uuid.UUID | None]
    google_event_id: Mapped[str | None] = mapped_column(String(1024))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
