"""Pushing appointments to Google: ``push_appointment`` writes the appointment's current
state (insert with the derived id — a retried insert finds its own event, never a
duplicate —, patch with ``If-Match``, or delete). A 412 means Google changed the event
meanwhile: the conflict policy (``mirror``) decides, and the loser's change is dropped.
One worker at a time pushes an appointment (a lease claimed with a conditional UPDATE).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError
from connectors.google_calendar import CalendarEvent, EventDetails, EventNotFound, GoogleCalendarConnector, StaleEtag
from hub.calendar.flows.mirror import (
    APPOINTMENT_PROPERTY,
    apply_google_event,
    content_hash,
    google_content,
    local_content,
    remember_google,
    zone_of,
)
from hub.calendar.flows.resources import MAX_ROUNDS
from hub.calendar.models import Appointment, AppointmentStatus, CalendarResource, SyncState
from hub.calendar.repository import CalendarRepository
from hub.calendar.tokens import NeedsReauth, calendar_connector, find_connection
from hub.db import transaction, utcnow
from tenants.models import IntegrationStatus

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.calendar")


PUSH_LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class _PushView:
    id: uuid.UUID
    tenant_id: uuid.UUID
    version: int
    cancelled: bool
    calendar_id: str
    event_id: str
    etag: str | None
    zone: str
    content: dict[str, Any]
    details: EventDetails


def _claim_push(runtime: Runtime, appointment_id: uuid.UUID) -> bool:
    now = utcnow()
    with transaction(runtime.session_factory) as session:
        return session.execute(
            update(Appointment)
            .where(Appointment.id == appointment_id, Appointment.version > Appointment.synced_version,
                   or_(Appointment.push_lease_until.is_(None), Appointment.push_lease_until < now))
            .values(push_lease_until=now + PUSH_LEASE)
            .execution_options(synchronize_session=False)
        ).rowcount == 1


def _release_push(runtime: Runtime, appointment_id: uuid.UUID) -> None:
    with transaction(runtime.session_factory) as session:
        session.execute(update(Appointment).where(Appointment.id == appointment_id)
                        .values(push_lease_until=None).execution_options(synchronize_session=False))


def push_appointment(*, runtime: Runtime, appointment_id: uuid.UUID) -> str:
    """Write the appointment's latest version to Google; returns ``synced``, ``idle``
    (nothing to push, or another worker is pushing and will push what is left),
    ``waiting`` (Google not connected), ``google_won`` or ``failed``."""
    outcome = "idle"
    for _ in range(MAX_ROUNDS):
        if not _claim_push(runtime, appointment_id):
            return outcome
        try:
            outcome = _push_once(runtime, appointment_id)
        finally:
            _release_push(runtime, appointment_id)
        if outcome in ("waiting", "failed"):
            return outcome
    return outcome


def _push_view(session: Session, appointment: Appointment, resource: CalendarResource) -> _PushView:
    details = EventDetails(
        summary=appointment.title, start=appointment.start_at.astimezone(zone_of(appointment.time_zone)),
        end=appointment.end_at.astimezone(zone_of(appointment.time_zone)), time_zone=appointment.time_zone,
        description=appointment.notes or "", location=appointment.location or "", status="confirmed",
        private_properties={APPOINTMENT_PROPERTY: str(appointment.id), "hub_resource_id": resource.resource_id},
    )
    content = local_content(appointment)
    return _PushView(
        id=appointment.id, tenant_id=appointment.tenant_id, version=appointment.version,
        cancelled=appointment.status == AppointmentStatus.CANCELLED, calendar_id=appointment.calendar_id,
        event_id=appointment.google_event_id, etag=appointment.google_etag,
        zone=resource.calendar_time_zone or appointment.time_zone, content=content, details=details,
    )


def _push_once(runtime: Runtime, appointment_id: uuid.UUID) -> str:
    with runtime.session_factory() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.version <= appointment.synced_version:
            return "idle"
        resource = session.get(CalendarResource, appointment.resource_pk)
        integration = find_connection(session=session, tenant_id=appointment.tenant_id)
        if resource is None or integration is None or integration.status != IntegrationStatus.ACTIVE:
            return "waiting"  # resumed when the tenant connects again
        view = _push_view(session, appointment, resource)
        try:
            connector = calendar_connector(runtime, session=session, integration=integration)
        except NeedsReauth:
            return "waiting"
    try:
        event, conflict = _write_to_google(connector, view)
    except NeedsReauth:
        return "waiting"
    except PermanentProviderError as exc:
        _record_push_failure(runtime, view, exc)
        return "failed"
    if conflict is not None:
        # Google changed the event since we last saw it: the conflict policy decides
        with transaction(runtime.session_factory) as session:
            appointment = session.get(Appointment, appointment_id, with_for_update=True)
            if appointment is None:
                return "idle"
            apply_google_event(runtime=runtime, session=session, repo=CalendarRepository(session, view.tenant_id),
                               appointment=appointment, event=conflict, zone=view.zone, enqueue=False)
            still_ours = appointment.version > appointment.synced_version
        return "synced" if still_ours else "google_won"
    with transaction(runtime.session_factory) as session:
        appointment = session.get(Appointment, appointment_id, with_for_update=True)
        if appointment is None:
            return "idle"
        if event is not None:
            remember_google(appointment, event, content_hash(google_content(event, view.zone)))
        else:  # deleted: the next sync shows it cancelled, which is what we wrote
            appointment.google_etag = None
            appointment.google_content_hash = content_hash({"status": AppointmentStatus.CANCELLED.value})
        appointment.google_synced_at = utcnow()
        if appointment.synced_version < view.version:
            appointment.synced_version = view.version
        appointment.sync_state = (SyncState.SYNCED if appointment.version == appointment.synced_version
                                  else SyncState.PENDING)
        appointment.last_sync_error = None
    return "synced"


def _write_to_google(connector: GoogleCalendarConnector,
                     view: _PushView) -> tuple[CalendarEvent | None, CalendarEvent | None]:
    """(the event as written or None when deleted, Google's current event when it
    changed behind our back)."""
    try:
        if view.cancelled:
            connector.delete_event(view.calendar_id, view.event_id, if_match=view.etag)
            return None, None
        if view.etag is None:
            outcome = connector.insert_event(view.calendar_id, view.event_id, view.details)
            existing = outcome.event
            if outcome.created or google_content(existing, view.zone) == view.content:
                return existing, None
            if not existing.cancelled and existing.raw.get("created") == existing.raw.get("updated"):
                # our own earlier insert whose answer was lost, untouched since: bring it up to date
                return connector.patch_event(view.calendar_id, view.event_id, view.details,
                                             if_match=existing.etag), None
            return None, existing  # edited or deleted in Google since: the conflict policy decides
        return connector.patch_event(view.calendar_id, view.event_id, view.details, if_match=view.etag), None
    except StaleEtag:
        current = connector.get_event(view.calendar_id, view.event_id)
        if current is None:
            raise PermanentProviderError("the event vanished while being updated", code="gone") from None
        return None, current
    except EventNotFound:
        if view.cancelled:
            return None, None
        # patched an event Google does not know (deleted for good): write it again
        return connector.insert_event(view.calendar_id, view.event_id, view.details).event, None


def _record_push_failure(runtime: Runtime, view: _PushView, exc: ProviderError) -> None:
    with transaction(runtime.session_factory) as session:
        appointment = session.get(Appointment, view.id, with_for_update=True)
        if appointment is None:
            return
        appointment.sync_state = SyncState.FAILED
        appointment.last_sync_error = f"{exc.code or 'error'}: {exc.message}"[:1000]
        # given up for this version; the next change tries again
        appointment.synced_version = max(appointment.synced_version, view.version)
        CalendarRepository(session, view.tenant_id).log(
            appointment.resource_pk, "push.failed", appointment_id=appointment.id,
            google_event_id=appointment.google_event_id, details={"error": appointment.last_sync_error})
    log.warning("appointment not written to Google", appointment_id=str(view.id), error=exc.message)
