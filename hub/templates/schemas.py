"""API shapes of templates and previews."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.messaging.rendering import MAX_TEMPLATE_CHARS

TemplateName = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case letters, digits, - and _",
                     examples=["order-created"])
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
Channel = Literal["sms", "whatsapp", "email"]


class TextVariant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)


class EmailVariant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=998)
    html: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    body: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS, description="the plain-text part")


class LocaleVariants(BaseModel):
    """The template's text in one locale, per channel (at least one channel)."""

    model_config = ConfigDict(extra="forbid")

    sms: TextVariant | None = None
    whatsapp: TextVariant | None = None
    email: EmailVariant | None = None

    @model_validator(mode="after")
    def _some_channel(self) -> LocaleVariants:
        if self.sms is None and self.whatsapp is None and self.email is None:
            raise ValueError("a locale needs at least one of sms, whatsapp, email")
        return self


class WhatsAppTemplateRef(BaseModel):
    """The template approved by Meta that stands in for this one outside the 24 h window."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str = Field("pt_BR", min_length=2, max_length=15)
    parameters: list[str] = Field(default_factory=list, max_length=20,
                                  description="one template text per {{n}} placeholder, e.g. '{{ customer_name }}'")


class TemplateWrite(BaseModel):
    """A tenant's template (PUT replaces the override of ``name`` whole)."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=500)
    required: list[str] | None = Field(
        None, max_length=50, description="variables the data must hold; an override of a default keeps the "
                                         "default's when omitted")
    optional: list[str] = Field(default_factory=list, max_length=50,
                                description="variables the template may read when given (with |default)")
    locales: dict[str, LocaleVariants] = Field(min_length=1, max_length=20)
    whatsapp_template: WhatsAppTemplateRef | None = None

    @field_validator("locales")
    @classmethod
    def _locale_keys(cls, value: dict[str, LocaleVariants]) -> dict[str, LocaleVariants]:
        for key in value:
            if not re.fullmatch(LOCALE_PATTERN, key):
                raise ValueError(f"{key!r} is not a locale such as pt-BR")
        return value


class TemplateCreate(TemplateWrite):
    name: str = TemplateName


class TemplateRead(BaseModel):
    name: str
    source: Literal["default", "override", "custom"] = Field(
        description="default: shipped, not changed; override: the tenant's version of a default; custom: the "
                    "tenant's own")
    description: str | None = None
    required: list[str]
    optional: list[str]
    locales: dict[str, LocaleVariants]
    whatsapp_template: WhatsAppTemplateRef | None = None
    updated_at: datetime | None = None


class TemplateList(BaseModel):
    data: list[TemplateRead]


class TemplatePreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] | None = Field(None, description="sample data; a default template has its own sample")
    locale: str | None = Field(None, pattern=LOCALE_PATTERN, examples=["pt-BR"], description="default: the tenant's")
    channel: Channel | None = Field(None, description="one channel; every channel the template has when omitted")


class RenderedPart(BaseModel):
    channel: Channel
    locale: str | None
    body: str
    subject: str | None = None
    html: str | None = None
    segments: int | None = Field(None, description="SMS only")
    encoding: str | None = Field(None, description="SMS only: GSM-7 or UCS-2")
    whatsapp_template: dict[str, Any] | None = Field(None, description="WhatsApp: the approved template and its "
                                                                       "rendered parameters, when mapped")


class TemplatePreview(BaseModel):
    name: str
    rendered: list[RenderedPart]
