"""WhatsApp Cloud API state the hub keeps beside the integration: the WABA's message
templates as last synced, the hashed webhook verify token, and the template a queued
message is to be sent with."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, TimestampMixin, new_id, utcnow


class WhatsAppTemplate(Base):
    """One message template of the integration's WhatsApp Business account, in one
    language, as Meta last listed it (``GET /{waba_id}/message_templates``)."""

    __tablename__ = "whatsapp_templates"
    __table_args__ = (UniqueConstraint("integration_id", "name", "language"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    integration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))  # APPROVED, PENDING, REJECTED, PAUSED, DISABLED …
    category: Mapped[str] = mapped_column(String(32))
    provider_template_id: Mapped[str | None] = mapped_column(String(64))
    # placeholders a send must fill, per component: {"header": 0, "body": 2, "buttons": 0}
    parameter_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    components: Mapped[list[Any]] = mapped_column(default=list)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class WhatsAppVerifyToken(Base):
    """SHA-256 of an integration's webhook verify token: Meta's GET handshake names no
    phone number, so the token itself has to find the integration (the sealed token
    is then compared in constant time)."""

    __tablename__ = "whatsapp_verify_tokens"

    integration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    token_hash: Mapped[str] = mapped_column(String(64), index=True)


class WhatsAppMessageTemplate(Base):
    """The approved template an outbound WhatsApp message goes out as (outside the
    24-hour window only a template may go)."""

    __tablename__ = "whatsapp_message_templates"

    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str | None] = mapped_column(String(16))  # None: from the tenant's locale
    parameters: Mapped[list[Any]] = mapped_column(default=list)


class WhatsAppTemplateMapping(TimestampMixin, Base):
    """One of the hub's templates (``appointment-reminder``) mapped to a WhatsApp template
    of the tenant's account, and which of the message's ``data`` keys fill its body
    placeholders in order: how a templated message still goes outside the window."""

    __tablename__ = "whatsapp_template_mappings"
    __table_args__ = (UniqueConstraint("tenant_id", "template"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    template: Mapped[str] = mapped_column(String(100))
    whatsapp_name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str | None] = mapped_column(String(16))  # None: from the tenant's locale
    parameters: Mapped[list[Any]] = mapped_column(default=list)  # data keys, dotted for nesting
