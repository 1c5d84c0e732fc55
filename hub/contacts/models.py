"""A tenant's contacts and their consent per channel."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, TimestampMixin, new_id, utcnow


class ConsentStatus(StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class Contact(TimestampMixin, Base):
    """A person the tenant reaches: by phone (SMS, WhatsApp) and/or e-mail.

    ``phone`` is E.164 and ``email`` normalized, each unique per tenant, so an inbound
    message and an API call that name the same person find the same contact.
    ``erased_at`` marks an LGPD erasure: the row stays (counts, foreign keys), the
    personal data is gone.
    """

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "phone"),
        UniqueConstraint("tenant_id", "email"),
        UniqueConstraint("tenant_id", "whatsapp_user_id"),
        Index("ix_contacts_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
    # Meta's business-scoped user id (connectors.whatsapp_cloud.users): how WhatsApp
    # names the person, with or without a phone number (a username user has none)
    whatsapp_user_id: Mapped[str | None] = mapped_column(String(160))
    locale: Mapped[str | None] = mapped_column(String(16))  # None: the tenant's
    erased_at: Mapped[datetime | None]


class ContactConsent(Base):
    """The contact's latest consent on one channel; no row means not asked (allowed)."""

    __tablename__ = "contact_consents"
    __table_args__ = (UniqueConstraint("contact_id", "channel"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # where it came from: "api", "inbound_keyword", "import" …
    source: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime]


class AutoReplyRule(TimestampMixin, Base):
    """A keyword rule: an inbound message containing one of ``keywords`` is answered with ``reply``."""

    __tablename__ = "auto_reply_rules"
    __table_args__ = (Index("ix_auto_reply_rules_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    keywords: Mapped[list[Any]] = mapped_column(default=list)
    reply: Mapped[str] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(16))  # None: every channel
    enabled: Mapped[bool] = mapped_column(default=True)


class BusinessHours(Base):
    """The tenant's weekly opening hours (in its time zone) and holidays; outside them
    ``after_hours_reply`` answers, when set."""

    __tablename__ = "business_hours"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    # {"mon": [["08:00", "18:00"]], …}; a missing day is closed
    schedule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    holidays: Mapped[list[Any]] = mapped_column(default=list)  # ISO dates, closed all day
    after_hours_reply: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AutoReplySent(Base):
    """One auto-reply given: unique per (conversation, rule, window), so concurrent
    workers and repeated messages answer once per window."""

    __tablename__ = "auto_replies_sent"
    __table_args__ = (
        UniqueConstraint("conversation_id", "rule_key", "window_key"),
        Index("ix_auto_replies_sent_latest", "conversation_id", "rule_key", "sent_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    rule_key: Mapped[str] = mapped_column(String(64))  # a rule's id, or "after_hours"
    window_key: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime]
    message_id: Mapped[uuid.UUID | None]
