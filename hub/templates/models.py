"""A tenant's template: an override of a shipped default, or one of its own."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, TimestampMixin, new_id


class MessageTemplate(TimestampMixin, Base):
    """One named template of a tenant, all its locales and channel variants in one row.

    ``locales`` maps a locale to its variants:
    ``{"pt-BR": {"sms": {"body"}, "whatsapp": {"body"}, "email": {"subject", "html", "body"}}}``.
    A row whose name is a shipped default overrides it; a channel the override leaves
    out is still served by the default.
    """

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(500))
    required: Mapped[list[Any]] = mapped_column(default=list)
    optional: Mapped[list[Any]] = mapped_column(default=list)
    locales: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # the approved WhatsApp template it maps to: {name, language, parameters: [jinja text, …]}
    whatsapp_template: Mapped[dict[str, Any] | None]
