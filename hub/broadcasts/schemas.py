"""API shapes of broadcasts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_RECIPIENTS = 10_000


def _no_nul(value: Any) -> Any:
    """PostgreSQL cannot store NUL in JSON text, and no message needs one."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text may not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item)
    return value


TemplateData = Annotated[dict[str, Any], AfterValidator(_no_nul)]


class BroadcastRecipientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=320, description="a phone number (any spelling) or an e-mail address",
                    examples=["+55 11 98765-4321"])
    data: TemplateData | None = Field(None, description="merged over the broadcast's data for this recipient")


class BroadcastCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(min_length=1, max_length=100, examples=["payment-overdue"])
    data: TemplateData = Field(default_factory=dict, description="template data common to every recipient")
    channel: Literal["sms", "whatsapp", "email"] = "sms"
    contact_ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=MAX_RECIPIENTS,
                                                description="the tenant's contacts to reach (or recipients)")
    recipients: list[BroadcastRecipientIn] | None = Field(
        None, min_length=1, max_length=MAX_RECIPIENTS, description="addresses with optional data (or contact_ids)")
    send_at: datetime | None = Field(None, description="when to start; without an offset, the tenant's time zone; "
                                                       "omitted: now")

    @model_validator(mode="after")
    def _one_audience(self) -> BroadcastCreate:
        if (self.contact_ids is None) == (self.recipients is None):
            raise ValueError("give either contact_ids or recipients")
        return self


class BroadcastRead(BaseModel):
    id: uuid.UUID
    status: str = Field(description="scheduled, sending, completed (nothing left to go) or canceled")
    template: str
    channel: str
    rate: float = Field(description="messages per second: the lower of the tenant's rate and the sender's")
    total: int = Field(description="recipients, duplicates removed")
    duplicates: int = Field(description="recipients dropped because their normalized address repeated")
    counts: dict[str, int] = Field(
        description="recipients by state: pending (not yet a message), then the messages by status "
                    "(queued, sending, retrying, sent, delivered, read, undelivered, failed, dead, canceled …)")
    send_at: datetime | None
    started_at: datetime | None
    canceled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class BroadcastPage(BaseModel):
    data: list[BroadcastRead]
    next_cursor: str | None = None
