"""API shapes of the Google connection, calendar mappings, appointments and the sync log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from hub.calendar.models import ResourceKind
from hub.messaging.addresses import InvalidAddress, normalize_email


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/Sao_Paulo)") from None
    return value


RESOURCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID_PATTERN),
                       Field(description="the tenant's own id of a professional, room or technician",
                             examples=["dr-ana", "room-2"])]
TimeZone = Annotated[str, AfterValidator(_known_zone), Field(examples=["America/Sao_Paulo"])]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Notes = Annotated[str, StringConstraints(max_length=5000)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
ReminderChannel = Literal["sms", "whatsapp", "email"]
WHEN = "ISO 8601; without an offset it is read in `time_zone` (default: the tenant's)"


# --- the Google connection -----------------------------------------------------------------


def _google_account(value: str) -> str:
    try:
        return normalize_email(value).lower()
    except InvalidAddress as exc:
        raise ValueError(str(exc)) from None


class ConnectStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_email: Annotated[str, StringConstraints(max_length=320), AfterValidator(_google_account)] | None = Field(
        None, description="the Google account to connect: Google is asked to sign it in (login_hint), and "
                          "another account approved instead is refused", examples=["agenda@clinica.example"])


class ConnectStarted(BaseModel):
    authorization_url: str = Field(description="the hub's start link: open it in the browser that will approve, "
                                               "within expires_at; it works once, in the first browser that opens "
                                               "it, which it sends on to Google's consent page")
    expires_at: datetime = Field(description="the consent must be completed before this time")


class GoogleOAuthClientWrite(BaseModel):
    """A Google OAuth client of the tenant's own (Google Cloud console → Credentials →
    OAuth client ID, type "Web application"), with the hub's callback as its redirect URI."""

    model_config = ConfigDict(extra="forbid")

    client_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255,
                                                pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\.apps\.googleusercontent\.com$")
                         ] = Field(examples=["1234567890-abc123.apps.googleusercontent.com"])
    client_secret: SecretStr = Field(min_length=8, max_length=256, description="sealed; never shown again")


class GoogleOAuthClientRead(BaseModel):
    client_id: str
    client_secret: str = Field(description="masked")
    redirect_uri: str = Field(description="register exactly this redirect URI on the client")
    created_at: datetime
    updated_at: datetime


class GoogleConnectionRead(BaseModel):
    status: str = Field(description="active, or needs_reauth when Google refused the grant: connect again")
    account_email: str | None
    oauth_client_id: str | None = Field(description="the tenant's own OAuth client the connection was made "
                                                    "with; null for the platform's")
    scopes: list[str]
    connected_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    calendars_mapped: int


class GoogleCalendarRead(BaseModel):
    id: str
    summary: str
    time_zone: str | None
    primary: bool
    access_role: str


# --- mappings ----------------------------------------------------------------------------------


class CalendarMappingWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        examples=["Dra. Ana Souza"])
    kind: ResourceKind = Field(ResourceKind.PROFESSIONAL, description="professional, room or technician")
    calendar_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="an id from GET /v1/google/calendars")


class ChannelRead(BaseModel):
    status: str = Field(description="none, starting, active or error")
    expires_at: datetime | None
    error: str | None


class CalendarMappingRead(BaseModel):
    resource_id: str
    name: str
    kind: str
    status: str = Field(description="active or unmapped")
    calendar_id: str
    calendar_time_zone: str | None
    channel: ChannelRead
    last_synced_at: datetime | None
    last_sync_error: str | None
    created_at: datetime
    updated_at: datetime


class SyncLogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    action: str = Field(description="e.g. appointment.updated_in_google, conflict.local_won, sync.full")
    appointment_id: uuid.UUID | None
    google_event_id: str | None
    details: dict[str, Any]


# --- appointments ----------------------------------------------------------------------------


class ContactIn(BaseModel):
    """Who the appointment is for (contacts proper come later: name, phone, e-mail for now)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="normalized to E.164", examples=["+55 11 98765-4321"])
    email: Annotated[str, StringConstraints(max_length=320)] | None = None


class ContactRead(BaseModel):
    name: str | None
    phone: str | None
    email: str | None


class AppointmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource_id: ResourceId
    start: datetime = Field(description=WHEN)
    end: datetime = Field(description=WHEN)
    time_zone: TimeZone | None = Field(None, description="how naive times are read and how Google shows it")
    title: Title
    notes: Notes | None = None
    location: Location | None = Field(None, description="shown in Google and in the reminder (default: the "
                                                        "resource's name)")
    contact: ContactIn = Field(default_factory=ContactIn)
    remind_before_minutes: int | None = Field(
        24 * 60, ge=0, le=60 * 24 * 30,
        description="send the appointment-reminder this long before start (null: no reminder)")
    remind_at: datetime | None = Field(None, description="an exact reminder time instead of remind_before_minutes")
    reminder_channel: ReminderChannel | None = Field(
        None, description="default: whatsapp when the contact has a phone, else email")


class AppointmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime | None = Field(None, description=WHEN)
    end: datetime | None = Field(None, description=WHEN)
    time_zone: TimeZone | None = None
    title: Title | None = None
    notes: Notes | None = None
    location: Location | None = None
    contact: ContactIn | None = None
    remind_before_minutes: int | None = Field(None, ge=0, le=60 * 24 * 30)
    remind_at: datetime | None = None
    reminder_channel: ReminderChannel | None = None


class GoogleSyncRead(BaseModel):
    event_id: str
    state: str = Field(description="pending (on its way to Google), synced, or failed")
    synced_at: datetime | None
    last_error: str | None


class ReminderRead(BaseModel):
    remind_at: datetime | None
    reminded_at: datetime | None
    channel: str | None
    message_id: uuid.UUID | None
    error: str | None


class AppointmentRead(BaseModel):
    id: uuid.UUID
    resource_id: str
    status: str = Field(description="confirmed or cancelled")
    start: datetime
    end: datetime
    time_zone: str
    title: str
    notes: str | None
    location: str | None
    contact: ContactRead
    reminder: ReminderRead
    google: GoogleSyncRead
    changed_by: str = Field(description="api or google: where the latest change came from")
    cancelled_at: datetime | None
    created_at: datetime
    updated_at: datetime
