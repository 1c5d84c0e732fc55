"""Mirroring appointments: the fields the hub keeps equal on both sides, and the
conflict policy when both sides changed an appointment since they last agreed.

The side whose change is newer wins — Google's event ``updated`` against the
appointment's ``changed_at``; a tie goes to the hub. Changes of fields the hub does
not mirror (colour, attendees) are not conflicts. Every resolution, and every Google
change applied to an appointment, is written to the resource's sync log. The hub's
own writes are recognised (same etag, or the mirrored content unchanged) and never
applied back.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from connectors.google_calendar import CalendarEvent
from hub.calendar.models import Appointment, AppointmentStatus, SyncState
from hub.calendar.repository import CalendarRepository
from hub.db import utcnow
from hub.queue import PUSH_APPOINTMENT, enqueue_after_commit

if TYPE_CHECKING:
    from hub.runtime import Runtime


APPOINTMENT_PROPERTY = "hub_appointment_id"


def zone_of(name: str | None) -> ZoneInfo:
    """The named zone, UTC when unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def instant_of(value: datetime | date | None, zone: str) -> datetime | None:
    """An event time as aware UTC; an all-day date is midnight in ``zone``."""
    if value is None:
        return None
    if not isinstance(value, datetime):  # an all-day event: midnight where the calendar is
        value = datetime(value.year, value.month, value.day, tzinfo=zone_of(zone))
    return value.astimezone(ZoneInfo("UTC"))


def google_content(event: CalendarEvent, zone: str) -> dict[str, Any]:
    """The fields the hub mirrors, as Google shows them."""
    if event.cancelled:
        return {"status": AppointmentStatus.CANCELLED.value}
    start, end = instant_of(event.start, zone), instant_of(event.end, zone)
    return {"status": AppointmentStatus.CONFIRMED.value, "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None, "title": event.summary or "",
            "notes": event.description or "", "location": event.location or ""}


def local_content(appointment: Appointment) -> dict[str, Any]:
    """The fields the hub mirrors, as the appointment has them."""
    if appointment.status == AppointmentStatus.CANCELLED:
        return {"status": AppointmentStatus.CANCELLED.value}
    return {"status": AppointmentStatus.CONFIRMED.value, "start": appointment.start_at.isoformat(),
            "end": appointment.end_at.isoformat(), "title": appointment.title, "notes": appointment.notes or "",
            "location": appointment.location or ""}


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def remember_google(appointment: Appointment, event: CalendarEvent, digest: str) -> None:
    appointment.google_etag = event.etag
    appointment.google_updated = event.updated
    appointment.google_content_hash = digest


def _take_google(appointment: Appointment, content: dict[str, Any], event: CalendarEvent) -> str:
    """Make the appointment what Google says; returns the sync log action."""
    now = utcnow()
    if content["status"] == AppointmentStatus.CANCELLED:
        action = "appointment.cancelled_in_google"
        appointment.status = AppointmentStatus.CANCELLED
        appointment.cancelled_at = now
    else:
        action = ("appointment.restored_in_google" if appointment.status == AppointmentStatus.CANCELLED
                  else "appointment.updated_in_google")
        appointment.status = AppointmentStatus.CONFIRMED
        appointment.cancelled_at = None
        start = datetime.fromisoformat(content["start"]) if content.get("start") else appointment.start_at
        end = datetime.fromisoformat(content["end"]) if content.get("end") else appointment.end_at
        if end > start and (start, end) != (appointment.start_at, appointment.end_at):
            shift = start - appointment.start_at
            appointment.start_at, appointment.end_at = start, end
            if appointment.remind_before_minutes is not None:
                at = start - timedelta(minutes=appointment.remind_before_minutes)
                appointment.remind_at = at if at > now else None
            elif appointment.remind_at is not None:
                at = appointment.remind_at + shift
                appointment.remind_at = at if at > now else None
            appointment.reminded_at = None
        appointment.title = (content.get("title") or appointment.title)[:500]
        appointment.notes = content.get("notes") or None
        appointment.location = content["location"][:500] if content.get("location") else None
    appointment.changed_by = "google"
    appointment.changed_at = event.updated or now
    appointment.synced_version = appointment.version  # nothing of ours is left to push
    appointment.sync_state = SyncState.SYNCED
    appointment.last_sync_error = None
    return action


def apply_google_event(*, runtime: Runtime, session: Session, repo: CalendarRepository, appointment: Appointment,
                       event: CalendarEvent, zone: str, enqueue: bool = True) -> str | None:
    """Apply the Google version of an appointment's event under the conflict policy;
    returns the sync log action, or None when there was nothing to apply."""
    if appointment.google_etag is not None and event.etag == appointment.google_etag:
        return None  # a version we wrote or already applied
    theirs = google_content(event, zone)
    digest = content_hash(theirs)
    ours = local_content(appointment)
    if digest == appointment.google_content_hash or theirs == ours:
        # nothing we mirror changed in Google, or Google already shows our version
        remember_google(appointment, event, digest)
        return None
    before = ours
    pending = appointment.version > appointment.synced_version
    if not pending:
        action = _take_google(appointment, theirs, event)
        remember_google(appointment, event, digest)
        repo.log(appointment.resource_pk, action, appointment_id=appointment.id, google_event_id=event.id,
                 details={"before": before, "after": local_content(appointment),
                          "google_updated": iso(event.updated)})
        return action
    google_changed_at = event.updated or utcnow()
    details = {"local_changed_at": iso(appointment.changed_at), "google_updated": iso(event.updated),
               "local": ours, "google": theirs, "policy": "the newer change wins"}
    if google_changed_at > appointment.changed_at:
        _take_google(appointment, theirs, event)
        remember_google(appointment, event, digest)
        repo.log(appointment.resource_pk, "conflict.google_won", appointment_id=appointment.id,
                 google_event_id=event.id, details=details)
        return "conflict.google_won"
    remember_google(appointment, event, digest)  # our next write goes over this version
    repo.log(appointment.resource_pk, "conflict.local_won", appointment_id=appointment.id,
             google_event_id=event.id, details=details)
    if enqueue:
        enqueue_after_commit(session, runtime.celery, PUSH_APPOINTMENT, str(appointment.id))
    return "conflict.local_won"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
