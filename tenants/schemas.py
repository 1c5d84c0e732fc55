"""API shapes of tenants and integrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from tenants.plans import PLANS


def _known_plan(value: str) -> str:
    if value not in PLANS:
        raise ValueError(f"unknown plan {value!r}; plans: {', '.join(PLANS)}")
    return value


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/Sao_Paulo)") from None
    return value


Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"),
    Field(description="lower-case letters, digits and dashes; unique", examples=["clinica-sorriso"]),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
PlanName = Annotated[str, AfterValidator(_known_plan), Field(description=f"one of {', '.join(PLANS)}")]
Locale = Annotated[
    str, StringConstraints(pattern=r"^[a-z]{2,3}(?:-[A-Z]{2})?$"), Field(examples=["pt-BR", "en"])
]
TimeZone = Annotated[str, AfterValidator(_known_zone), Field(examples=["America/Sao_Paulo"])]
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,63}$")]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    name: Name
    plan: PlanName = "standard"
    locale: Locale = "pt-BR"
    timezone: TimeZone = "America/Sao_Paulo"
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1_000_000, description="overrides the plan")
    messages_per_second: float | None = Field(None, gt=0, le=10_000,
                                              description="overrides the plan's broadcast send rate")


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "suspended"] | None = Field(None, description="suspend or reactivate")
    name: Name | None = None
    plan: PlanName | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1_000_000, description="overrides the plan")
    messages_per_second: float | None = Field(None, gt=0, le=10_000,
                                              description="overrides the plan's broadcast send rate")


class TenantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    name: str
    status: str
    plan: str
    locale: str
    timezone: str
    rate_limit_per_minute: int | None
    messages_per_second: float | None
    created_at: datetime
    updated_at: datetime


class IntegrationWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credentials: dict[str, Any] = Field(default_factory=dict, description="sealed at rest, never shown again")
    config: dict[str, Any] = Field(default_factory=dict, description="non-secret settings")


class IntegrationRead(BaseModel):
    kind: str
    status: str
    config: dict[str, Any]
    credentials: dict[str, str] = Field(description="masked: AC…1234")
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime
    updated_at: datetime
