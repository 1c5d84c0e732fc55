"""Conversations, messages, delivery attempts and the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, TimestampMixin, new_id, utcnow


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageStatus(StrEnum):
    RECEIVED = "received"  # inbound
    QUEUED = "queued"  # committed, waiting for a worker
    SENDING = "sending"  # claimed by a worker; the provider is being called
    RETRYING = "retrying"  # a transient failure; next_attempt_at says when
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"  # permanent failure
    DEAD = "dead"  # retries exhausted: the dead-letter queue
    SCHEDULED = "scheduled"  # waits for send_at; the outbox entry is due then
    CANCELED = "canceled"  # canceled by the tenant (or its broadcast) before a worker took it
    SUPPRESSED = "suppressed"  # the contact opted out of the channel (and no other channel took over)


# Provider callbacks only ever move a message forward along this order.
STATUS_RANK: dict[str, int] = {
    MessageStatus.SCHEDULED: 0,
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.RETRYING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.UNDELIVERED: 3,
    MessageStatus.FAILED: 3,
    MessageStatus.SUPPRESSED: 3,
    MessageStatus.CANCELED: 3,
    MessageStatus.READ: 4,
}
# a worker may claim a message in these states (once next_attempt_at has come)
CLAIMABLE = (MessageStatus.QUEUED, MessageStatus.RETRYING, MessageStatus.SCHEDULED)
# the tenant may cancel a message no worker has taken yet
CANCELABLE = (MessageStatus.SCHEDULED, MessageStatus.QUEUED, MessageStatus.RETRYING)
# the tenant may ask for another try in these states
RETRYABLE = (MessageStatus.DEAD, MessageStatus.FAILED, MessageStatus.UNDELIVERED)


class ConversationStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Conversation(TimestampMixin, Base):
    """A thread with one contact on one channel of a tenant."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "contact_address"),
        Index("ix_conversations_tenant_last_message", "tenant_id", "last_message_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    integration_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("integrations.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(16))
    contact_address: Mapped[str] = mapped_column(String(320))  # E.164 for phones
    hub_address: Mapped[str | None] = mapped_column(String(320))  # our number on this thread
    status: Mapped[str] = mapped_column(String(16), default=ConversationStatus.OPEN)
    last_message_at: Mapped[datetime | None]


class Message(TimestampMixin, Base):
    """One inbound or outbound message and its delivery state."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_tenant_created", "tenant_id", "created_at"),
        Index("ix_messages_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_messages_provider_message_id", "provider_message_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    integration_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("integrations.id", ondelete="SET NULL"))
    direction: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str] = mapped_column(String(320))
    from_address: Mapped[str | None] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text, default="")
    media: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    segments: Mapped[int | None]
    attempt_count: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    next_attempt_at: Mapped[datetime | None]
    # a claim expires: a worker that died mid-delivery does not hold it forever
    claimed_until: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    # the broadcast this message is one of (its counts group by it)
    broadcast_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("broadcasts.id", ondelete="SET NULL"),
                                                           index=True)
    # --- what fallback needs to move the message to another channel ---
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    # the template and data it was rendered from (re-rendered per channel on a hop)
    template: Mapped[str | None] = mapped_column(String(64))
    template_data: Mapped[dict[str, Any] | None]
    locale: Mapped[str | None] = mapped_column(String(16))
    # e-mail parts; body is the text part
    subject: Mapped[str | None] = mapped_column(String(998))
    html: Mapped[str | None] = mapped_column(Text)
    # a provider-approved template ({name, language, parameters}) for WhatsApp outside the window
    provider_template: Mapped[dict[str, Any] | None]
    # channels still to try, in order, when the current one fails or is not possible
    channel_plan: Mapped[list[Any]] = mapped_column(default=list)
    # every channel left behind: {channel, to, outcome, error_code, error_message, at}
    hops: Mapped[list[Any]] = mapped_column(default=list)
    send_at: Mapped[datetime | None]
    # the hub's own opt-out/opt-in confirmation: goes even to a contact who opted out
    consent_exempt: Mapped[bool] = mapped_column(default=False)


class MessageAttempt(Base):
    """One call to the provider for one message."""

    __tablename__ = "message_attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    channel: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))  # sent | retry | failed | dead
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)


class OutboxEntry(Base):
    """Written in the message's transaction; the relay publishes what was committed
    but never reached the broker (Redis down), so nothing committed is lost."""

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    available_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(index=True)


DEFAULT_CHANNEL_ORDER: tuple[str, ...] = ("whatsapp", "sms", "email")


class MessagingSettings(TimestampMixin, Base):
    """A tenant's outbound preferences: the fallback order and e-mail headers."""

    __tablename__ = "messaging_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    channel_order: Mapped[list[Any]] = mapped_column(default=lambda: list(DEFAULT_CHANNEL_ORDER))
    email_reply_to: Mapped[str | None] = mapped_column(String(320))
    # List-Unsubscribe targets; the reply-to (or sender) mailbox is used when neither is set
    email_unsubscribe_url: Mapped[str | None] = mapped_column(String(2000))
    email_unsubscribe_mailto: Mapped[str | None] = mapped_column(String(320))
