"""API shapes of contacts, their LGPD export, auto-reply rules and business hours."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from hub.messaging.schemas import MAX_BODY_CHARS, ConversationRead, MessageRead

Channel = Literal["sms", "whatsapp", "email"]
ConsentValue = Literal["opted_in", "opted_out"]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$", max_length=16)]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


class ContactFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="any spelling; stored as E.164 (national numbers read in the tenant's country)",
        examples=["+55 11 98765-4321"])
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    locale: Locale | None = Field(None, description="e.g. pt-BR or en; none: the tenant's")
    consent: dict[Channel, ConsentValue] = Field(
        default_factory=dict, description="per channel; a change is recorded with source \"api\" and its time")


class ContactCreate(ContactFields):
    """A contact needs a phone or an e-mail."""

    @model_validator(mode="after")
    def _reachable(self) -> ContactCreate:
        if not self.phone and not self.email:
            raise ValueError("a contact needs a phone or an email")
        return self


class ContactUpdate(ContactFields):
    """Only the fields sent change; ``null`` clears one (a contact keeps a phone or an e-mail)."""


class ConsentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    status: str
    source: str = Field(description="api, inbound_keyword, …")
    changed_at: datetime


class ContactSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None
    phone: str | None
    email: str | None
    whatsapp_user_id: str | None = Field(
        default=None, description="Meta's business-scoped id of the person on WhatsApp (set from their messages; "
        "a WhatsApp user who hides the phone number has only this)")
    locale: str | None
    created_at: datetime
    updated_at: datetime


class ContactDetail(ContactSummary):
    consents: list[ConsentRead]


class ContactPage(BaseModel):
    data: list[ContactSummary]
    next_cursor: str | None = None


class ContactExport(BaseModel):
    """Everything the hub holds about the person (LGPD art. 18)."""

    exported_at: datetime
    contact: ContactDetail
    conversations: list[ConversationRead]
    messages: list[MessageRead]
    appointments: list[dict[str, Any]] = Field(description="bookings made for the contact's phone or e-mail")


# --- auto-replies ------------------------------------------------------------------------

Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
ReplyText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_BODY_CHARS)]


class AutoReplyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keywords: list[Keyword] | None = Field(None, min_length=1, max_length=20, description=(
        "words or phrases; one found in an inbound message (any case, accents or not, as whole words) "
        "triggers the reply"))
    reply: ReplyText | None = None
    channel: Channel | None = Field(None, description="only on this channel; none: every channel")
    enabled: bool | None = None


class AutoReplyCreate(AutoReplyFields):
    keywords: list[Keyword] = Field(min_length=1, max_length=20)  # type: ignore[assignment]
    reply: ReplyText  # type: ignore[assignment]
    enabled: bool = True  # type: ignore[assignment]


class AutoReplyUpdate(AutoReplyFields):
    """Only the fields sent change."""


class AutoReplyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    keywords: list[str]
    reply: str
    channel: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class AutoReplyList(BaseModel):
    data: list[AutoReplyRead]


Clock = Annotated[str, StringConstraints(pattern=r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")]
# [opens, closes], "HH:MM" each ("24:00" closes at midnight)
Interval = Annotated[list[Clock], Field(min_length=2, max_length=2)]


class BusinessHoursWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule: dict[Weekday, list[Interval]] = Field(
        description="opening intervals per weekday, in the tenant's time zone; a missing day is closed",
        examples=[{"mon": [["08:00", "12:00"], ["13:00", "18:00"]], "sat": [["09:00", "13:00"]]}])
    holidays: list[date] = Field(default_factory=list, max_length=366, description="closed all day")
    after_hours_reply: ReplyText | None = Field(
        None, description="sent once per conversation per closed period; none: no after-hours reply")
    enabled: bool = True

    @field_validator("schedule")
    @classmethod
    def _intervals(cls, schedule: dict[str, list[Interval]]) -> dict[str, list[Interval]]:
        for day, intervals in schedule.items():
            if len(intervals) > 10:
                raise ValueError(f"{day}: at most 10 intervals")
            previous_end = ""
            for start, end in sorted(intervals):
                if not _CLOCK.match(start) or not _CLOCK.match(end) or start == "24:00":
                    raise ValueError(f"{day}: {start}-{end} is not HH:MM-HH:MM")
                if start >= end:
                    raise ValueError(f"{day}: {start}-{end} ends before it starts")
                if start < previous_end:
                    raise ValueError(f"{day}: intervals overlap")
                previous_end = end
        return {day: sorted(schedule[day]) for day in WEEKDAYS if day in schedule}  # type: ignore


class BusinessHoursRead(BusinessHoursWrite):
    model_config = ConfigDict(from_attributes=True)

    time_zone: str
    open_now: bool
    updated_at: datetime | None
