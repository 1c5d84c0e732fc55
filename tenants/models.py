"""Tenants, their integrations (installations of a connector) and data keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, TimestampMixin, new_id, utcnow


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ERASING = "erasing"  # being uninstalled at its providers; its clients no longer work
    ERASED = "erased"


class IntegrationStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"
    NEEDS_REAUTH = "needs_reauth"


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in enum)})"


class Tenant(TimestampMixin, Base):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint(_in("status", TenantStatus), name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.ACTIVE)
    plan: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16), default="pt-BR")
    timezone: Mapped[str] = mapped_column(String(64), default="America/Sao_Paulo")
    # overrides the plan's requests per minute when set
    rate_limit_per_minute: Mapped[int | None]
    # overrides the plan's messages per second (broadcast pacing) when set
    messages_per_second: Mapped[float | None]
    deleted_at: Mapped[datetime | None]


class Integration(TimestampMixin, Base):
    """One tenant's installation of a connector kind: status, config, sealed credentials."""

    __tablename__ = "integrations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind"),
        CheckConstraint(_in("status", IntegrationStatus), name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=IntegrationStatus.PENDING)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # field name -> sealed value (see tenants.vault); never plaintext
    credentials: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]


class DataKey(Base):
    """A data key wrapped by a master key. ``owner`` is a tenant id or ``platform``.

    Erasing a tenant nulls ``wrapped_key`` (crypto-shredding): its secrets can never
    be opened again, whatever copies of the ciphertexts survive in backups.
    """

    __tablename__ = "data_keys"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"), unique=True)
    master_key_id: Mapped[str] = mapped_column(String(64), index=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]
    destroyed_at: Mapped[datetime | None]
