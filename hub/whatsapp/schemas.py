"""API shapes of the WhatsApp Cloud API feature."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class WhatsAppTemplateIn(BaseModel):
    """An approved WhatsApp template to send instead of free text (the only thing that may
    go outside the 24-hour customer-service window)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512, description="the template's name in WhatsApp Manager",
                      examples=["appointment_reminder"])
    language: str | None = Field(None, max_length=16, pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$",
                                 description="Meta's language code (pt_BR, en_US …); default: from the tenant's "
                                             "locale (pt-BR → pt_BR, en → en_US or en)")
    parameters: list[str] = Field(default_factory=list, max_length=64,
                                  description="the body's {{1}}, {{2}} … in order")


class WhatsAppTemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    language: str
    status: str = Field(description="Meta's status: APPROVED, PENDING, REJECTED, PAUSED, DISABLED …")
    category: str
    provider_template_id: str | None
    parameter_counts: dict[str, int] = Field(description="placeholders to fill per component: header, body, buttons")
    components: list[dict]
    synced_at: datetime


class WhatsAppTemplateList(BaseModel):
    data: list[WhatsAppTemplateRead]


class TemplateSyncRead(BaseModel):
    synced: int = Field(description="templates (name × language) the account holds now")
    added: int
    updated: int
    removed: int = Field(description="templates the account no longer holds, forgotten")
    synced_at: datetime


class TemplateMappingWrite(BaseModel):
    """Which WhatsApp template one of the hub's templates goes out as, outside the window."""

    model_config = ConfigDict(extra="forbid")

    whatsapp_name: str = Field(min_length=1, max_length=512, examples=["appointment_reminder"])
    language: str | None = Field(None, max_length=16, pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$",
                                 description="default: from the tenant's locale")
    parameters: list[str] = Field(default_factory=list, max_length=64,
                                  description="the message data keys (dotted for nesting) that fill {{1}}, {{2}} …",
                                  examples=[["customer.name", "appointment.when"]])


class TemplateMappingRead(TemplateMappingWrite):
    model_config = ConfigDict(from_attributes=True)

    template: str
    created_at: datetime
    updated_at: datetime


class TemplateMappingList(BaseModel):
    data: list[TemplateMappingRead]
