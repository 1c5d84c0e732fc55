"""The calendar capability: provider-neutral shapes and the ``CalendarConnector`` base.

Kept beside its only implementation for now; move it to ``connectors/base.py`` when a
second calendar provider arrives.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from connectors.base import Connector


@dataclass(frozen=True)
class CalendarInfo:
    id: str
    summary: str
    time_zone: str | None
    primary: bool
    access_role: str


@dataclass(frozen=True)
class EventDetails:
    """What the hub writes on an event. ``None`` means "leave as is" (patch) or "unset".

    ``start``/``end`` are aware datetimes, or dates for all-day events (end exclusive).
    ``private_properties`` are invisible to attendees: the hub keeps its own ids there.
    """

    summary: str | None = None
    start: datetime | date | None = None
    end: datetime | date | None = None
    time_zone: str | None = None
    description: str | None = None
    location: str | None = None
    status: str | None = None  # "confirmed" | "tentative"
    transparency: str | None = None  # "opaque" (busy) | "transparent" (free)
    attendees: Sequence[str] | None = None
    private_properties: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CalendarEvent:
    """One event as the provider reports it; ``status == "cancelled"`` means deleted."""

    id: str
    status: str
    summary: str | None
    description: str | None
    location: str | None
    start: datetime | date | None
    end: datetime | date | None
    time_zone: str | None
    transparency: str
    updated: datetime | None
    etag: str | None
    private_properties: Mapping[str, str]
    recurring_event_id: str | None  # an instance of a recurring event: its series
    html_link: str | None
    raw: Mapping[str, Any] = field(repr=False)
    original_start: datetime | date | None = None  # an instance: where the series put it

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def all_day(self) -> bool:
        return isinstance(self.start, date) and not isinstance(self.start, datetime)


class InsertOutcome(NamedTuple):
    event: CalendarEvent
    # False when an event with that id already existed (a retried insert)
    created: bool


@dataclass(frozen=True)
class BusyInterval:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class WatchChannel:
    """A push channel; ``resource_id`` is needed to stop it."""

    id: str
    resource_id: str
    resource_uri: str
    expiration: datetime | None


@dataclass(frozen=True)
class SyncCheckpoint:
    """The last item of a change stream: store it and pass it to the next sync."""

    next_sync_token: str


class CalendarConnector(Connector):
    """A connector that reads and writes one account's calendars and streams their changes."""

    def list_calendars(self) -> list[CalendarInfo]:
        raise NotImplementedError

    def get_event(self, calendar_id: str, event_id: str) -> CalendarEvent | None:
        """The event, ``None`` when the provider does not know it."""
        raise NotImplementedError

    def insert_event(self, calendar_id: str, event_id: str, details: EventDetails) -> InsertOutcome:
        """Create with a caller-chosen id; a retry returns the existing event, ``created=False``."""
        raise NotImplementedError

    def patch_event(
        self, calendar_id: str, event_id: str, details: EventDetails, *, if_match: str | None = None
    ) -> CalendarEvent:
        raise NotImplementedError

    def delete_event(self, calendar_id: str, event_id: str, *, if_match: str | None = None) -> bool:
        """True when deleted now, False when it was already gone."""
        raise NotImplementedError

    def freebusy(self, calendar_id: str, time_min: datetime, time_max: datetime) -> list[BusyInterval]:
        raise NotImplementedError

    def iter_changes(
        self,
        calendar_id: str,
        sync_token: str | None = None,
        *,
        page_size: int = 250,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
    ) -> Iterator[CalendarEvent | SyncCheckpoint]:
        """Events changed since ``sync_token`` (all events of the window when None, recurring
        events as their instances), then one checkpoint."""
        raise NotImplementedError

    def watch(self, calendar_id: str, *, channel_id: str, address: str, token: str, ttl: timedelta) -> WatchChannel:
        raise NotImplementedError

    def stop_channel(self, channel_id: str, resource_id: str) -> bool:
        raise NotImplementedError
