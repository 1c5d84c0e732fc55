"""Calendar mappings, appointments with conflict detection, and the sync log.

Booking a slot reads Google's free/busy for the resource's calendar first (a provider
call, made before this transaction writes anything), then takes the resource's
booking lock and checks the tenant's own appointments and the Google-only busy
blocks the sync keeps. A conflict is a 409 listing the busy intervals. The API
answers once the appointment is committed; a worker writes it to Google right after
(``sync_state`` goes ``pending`` → ``synced``), retrying transient failures, so a
slow Google never holds a booking lock or a request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, TransientProviderError
from connectors.google_calendar import EventNotFound, event_id_for
from hub import idempotency
from hub.calendar.models import (
    Appointment,
    AppointmentStatus,
    CalendarResource,
    ChannelStatus,
    ResourceStatus,
    SyncLogEntry,
    SyncState,
)
from hub.calendar.repository import CalendarRepository
from hub.calendar.schemas import AppointmentCreate, AppointmentUpdate, CalendarMappingWrite
from hub.calendar.tokens import GOOGLE_KIND, NeedsReauth, calendar_connector, find_connection, get_connection
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound, ProviderRejected, Unavailable
from hub.messaging.addresses import InvalidAddress, normalize_email, normalize_phone
from hub.pagination import Page
from hub.queue import CALENDAR_STOP_CHANNEL, CALENDAR_SYNC_RESOURCE, PUSH_APPOINTMENT, enqueue_after_commit
from hub.webhooks.routes import release_routes, route_cache
from tenants.models import Integration, IntegrationStatus, Tenant

if TYPE_CHECKING:
    from hub.runtime import Runtime

DEFAULT_REMIND_BEFORE_MINUTES = 24 * 60
MAX_DURATION = timedelta(days=7)
FREEBUSY_PADDING = timedelta(hours=12)


class SlotUnavailable(Conflict):
    code = "slot_unavailable"


@dataclass(frozen=True)
class Busy:
    start: datetime
    end: datetime
    source: str  # "appointment" (the hub's own) or "google"
    appointment_id: uuid.UUID | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"start": self.start.isoformat(), "end": self.end.isoformat(), "source": self.source}
        if self.appointment_id is not None:
            data["appointment_id"] = str(self.appointment_id)
        return data


def tenant_zone(*, session: Session, tenant_id: uuid.UUID) -> str:
    """The tenant's IANA time zone (naive times in requests are read in it)."""
    tenant = session.get(Tenant, tenant_id)
    return tenant.timezone if tenant is not None else "UTC"


def as_utc(value: datetime, zone: str) -> datetime:
    """An aware UTC datetime; a naive ``value`` is a wall-clock time in ``zone``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    # whole seconds, as Google keeps them: a mirrored time must compare equal
    return value.astimezone(ZoneInfo("UTC")).replace(microsecond=0)


# --- mappings -------------------------------------------------------------------------------


def list_resources(*, session: Session, tenant_id: uuid.UUID) -> list[CalendarResource]:
    """Every resource the tenant has mapped (unmapped ones included)."""
    return CalendarRepository(session, tenant_id).resources()


def get_resource(*, session: Session, tenant_id: uuid.UUID, resource_id: str) -> CalendarResource:
    """One resource of the tenant, or NotFound."""
    resource = CalendarRepository(session, tenant_id).resource(resource_id)
    if resource is None:
        raise NotFound(f"no resource {resource_id!r}", code="resource_not_found")
    return resource


def active_integration(*, session: Session, tenant_id: uuid.UUID) -> Integration:
    """The tenant's Google connection, refusing one that needs the tenant to reconnect."""
    integration = get_connection(session=session, tenant_id=tenant_id)
    if integration.status == IntegrationStatus.NEEDS_REAUTH:
        raise NeedsReauth()
    return integration


def _forget_channel(session: Session, runtime: Runtime, resource: CalendarResource,
                    integration: Integration | None) -> None:
    """Release the resource's channel route now (pushes to it 404 at once) and stop the
    channel at Google after commit."""
    if resource.channel_id:
        if integration is not None:
            release_routes(session, integration_id=integration.id, route_keys=[resource.channel_id])
            if resource.channel_resource_id and integration.status == IntegrationStatus.ACTIVE:
                enqueue_after_commit(session, runtime.celery, CALENDAR_STOP_CHANNEL, str(resource.tenant_id),
                                     resource.channel_id, resource.channel_resource_id)
        route_cache(runtime).forget(GOOGLE_KIND, resource.channel_id)
    resource.channel_id = None
    resource.channel_resource_id = None
    resource.channel_expires_at = None
    resource.channel_status = ChannelStatus.NONE
    resource.channel_error = None


def map_calendar(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID, resource_id: str,
                 mapping_in: CalendarMappingWrite) -> CalendarResource:
    """Map a resource to one of the account's calendars and (re)start its watch and sync."""
    integration = active_integration(session=session, tenant_id=tenant_id)
    # Google first, before this transaction writes (see hub.calendar.tokens)
    connector = calendar_connector(runtime, session=session, integration=integration)
    try:
        calendars = connector.list_calendars()
    except TransientProviderError as exc:
        raise Unavailable(f"Google is unavailable: {exc.message}", code="google_unavailable") from exc
    except PermanentProviderError as exc:
        raise ProviderRejected(f"Google refused to list calendars: {exc.message}") from exc
    info = next((c for c in calendars if c.id == mapping_in.calendar_id), None)
    if info is None:
        raise Invalid(f"calendar {mapping_in.calendar_id!r} is not in the connected Google account "
                      "(see GET /v1/google/calendars)", code="calendar_not_found")
    repo = CalendarRepository(session, tenant_id)
    resource = repo.resource(resource_id, for_update=True)
    restart = True
    if resource is None:
        resource = repo.add_resource(CalendarResource(
            id=uuid.uuid4(), resource_id=resource_id, name=mapping_in.name, kind=mapping_in.kind,
            calendar_id=info.id, calendar_time_zone=info.time_zone, status=ResourceStatus.ACTIVE,
            channel_status=ChannelStatus.NONE, sync_wanted=0, sync_done=0, sync_generation=0, booking_seq=0,
        ))
    else:
        moved = resource.calendar_id != info.id
        if moved and resource.status == ResourceStatus.ACTIVE and repo.upcoming_appointments_count(resource.id,
                                                                                                   utcnow()):
            raise Conflict(f"{resource_id!r} has upcoming appointments on its current calendar; cancel or "
                           "finish them before mapping it to another calendar", code="resource_has_appointments")
        restart = moved or resource.status != ResourceStatus.ACTIVE or resource.channel_status in (
            ChannelStatus.NONE, ChannelStatus.ERROR)
        resource.name = mapping_in.name
        resource.kind = mapping_in.kind
        if restart:
            _forget_channel(session, runtime, resource, integration)
            if moved or resource.status != ResourceStatus.ACTIVE:
                repo.delete_all_busy(resource.id)
                resource.sync_token = None
        resource.calendar_id = info.id
        resource.calendar_time_zone = info.time_zone
        resource.status = ResourceStatus.ACTIVE
    if restart:
        resource.channel_status = ChannelStatus.STARTING
        resource.sync_wanted += 1
        resource.last_sync_error = None
        repo.log(resource.id, "calendar.mapped", details={"calendar_id": info.id, "summary": info.summary})
        enqueue_after_commit(session, runtime.celery, CALENDAR_SYNC_RESOURCE, str(resource.id))
    session.flush()
    return resource


def unmap_calendar(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID, resource_id: str) -> None:
    """Stop syncing a resource's calendar: its channel stops, its Google-only busy time is dropped."""
    repo = CalendarRepository(session, tenant_id)
    resource = repo.resource(resource_id, for_update=True)
    if resource is None or resource.status != ResourceStatus.ACTIVE:
        raise NotFound(f"no resource {resource_id!r}", code="resource_not_found")
    if repo.upcoming_appointments_count(resource.id, utcnow()):
        raise Conflict(f"{resource_id!r} has upcoming appointments; cancel them first",
                       code="resource_has_appointments")
    integration = find_connection(session=session, tenant_id=tenant_id)
    _forget_channel(session, runtime, resource, integration)
    resource.status = ResourceStatus.UNMAPPED
    resource.sync_token = None
    repo.delete_all_busy(resource.id)
    repo.log(resource.id, "calendar.unmapped", details={"calendar_id": resource.calendar_id})
    session.flush()


def sync_log(*, session: Session, tenant_id: uuid.UUID, resource_id: str, action: str | None = None,
             limit: int = 50, cursor: str | None = None) -> Page[SyncLogEntry]:
    """The resource's sync log, newest first."""
    resource = get_resource(session=session, tenant_id=tenant_id, resource_id=resource_id)
    return CalendarRepository(session, tenant_id).sync_log(resource.id, action=action, limit=limit, cursor=cursor)


# --- conflicts ------------------------------------------------------------------------------


def _without(intervals: list[Busy], start: datetime, end: datetime) -> list[Busy]:
    """``intervals`` with [start, end) cut out (an appointment's own slot when it moves)."""
    kept: list[Busy] = []
    for busy in intervals:
        if busy.end <= start or busy.start >= end:
            kept.append(busy)
            continue
        if busy.start < start:
            kept.append(Busy(busy.start, start, busy.source))
        if busy.end > end:
            kept.append(Busy(end, busy.end, busy.source))
    return kept


def google_busy(*, runtime: Runtime, session: Session, integration: Integration, resource: CalendarResource,
                start: datetime, end: datetime) -> list[Busy]:
    """Google's busy intervals that overlap [start, end), whole (not cut at the edges)."""
    connector = calendar_connector(runtime, session=session, integration=integration)
    try:
        # Google cuts intervals at the query's window: ask wider to report them whole
        intervals = connector.freebusy(resource.calendar_id, start - FREEBUSY_PADDING, end + FREEBUSY_PADDING)
    except EventNotFound as exc:
        raise Conflict(f"calendar {resource.calendar_id!r} of {resource.resource_id!r} is no longer in the "
                       "Google account; map the resource again", code="calendar_not_found") from exc
    except TransientProviderError as exc:
        raise Unavailable(f"Google free/busy is unavailable ({exc.message}); retry", code="google_unavailable",
                          headers={"Retry-After": "5"}) from exc
    except PermanentProviderError as exc:
        raise ProviderRejected(f"Google refused the free/busy query: {exc.message}") from exc
    return [Busy(i.start, i.end, "google") for i in intervals if i.start < end and i.end > start]


def local_busy(*, repo: CalendarRepository, resource: CalendarResource, start: datetime, end: datetime,
               exclude: uuid.UUID | None = None) -> list[Busy]:
    """The tenant's own appointments and the Google-only busy blocks over [start, end)."""
    found = [Busy(a.start_at, a.end_at, "appointment", a.id)
             for a in repo.overlapping_appointments(resource.id, start, end, exclude=exclude)]
    found += [Busy(b.start_at, b.end_at, "google") for b in repo.overlapping_busy_blocks(resource.id, start, end)]
    return found


def _refuse_conflicts(busy: list[Busy], start: datetime, end: datetime, resource: CalendarResource,
                      zone: str) -> None:
    overlapping = [b for b in busy if b.start < end and b.end > start]
    if not overlapping:
        return
    unique: dict[tuple[datetime, datetime], Busy] = {}
    for item in sorted(overlapping, key=lambda b: (b.start, b.end, b.source != "appointment")):
        unique.setdefault((item.start, item.end), item)
    first, *others = unique.values()
    # the busy time, in the zone the booking was made in: what the caller must avoid
    local = ZoneInfo(zone)
    more = f" (and {len(others)} more busy interval{'s' if len(others) > 1 else ''})" if others else ""
    raise SlotUnavailable(
        f"{resource.resource_id!r} is busy from {first.start.astimezone(local).isoformat()} to "
        f"{first.end.astimezone(local).isoformat()}{more}; details.busy lists every busy interval",
        details={"busy": [b.as_json() for b in unique.values()]},
    )


# --- appointments ---------------------------------------------------------------------------


def _reminder_at(*, start: datetime, before_minutes: int | None, explicit: datetime | None, zone: str,
                 now: datetime) -> datetime | None:
    if explicit is not None:
        at = as_utc(explicit, zone)
        if at >= start:
            raise Invalid("remind_at must be before the appointment starts", code="invalid_reminder")
        if at <= now:
            raise Invalid("remind_at is in the past", code="invalid_reminder")
        return at
    if before_minutes is None:
        return None
    at = start - timedelta(minutes=before_minutes)
    # booked closer than the reminder lead time: the contact has just booked, no reminder
    return at if at > now else None


def _contact(name: str | None, phone: str | None, email: str | None) -> tuple[str | None, str | None, str | None]:
    try:
        return (name, normalize_phone(phone) if phone else None, normalize_email(email) if email else None)
    except InvalidAddress as exc:
        raise Invalid(f"contact: {exc}", code="invalid_contact") from exc


def _check_times(start: datetime, end: datetime) -> None:
    if end <= start:
        raise Invalid("end must be after start", code="invalid_times")
    if end - start > MAX_DURATION:
        raise Invalid("an appointment lasts at most 7 days", code="invalid_times")


def create_appointment(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID, appointment_in: AppointmentCreate,
                       idempotency_key: str | None = None) -> tuple[Appointment, bool]:
    """Book a resource after checking Google free/busy and the local calendar;
    returns (appointment, replayed)."""
    repo = CalendarRepository(session, tenant_id)
    zone = appointment_in.time_zone or tenant_zone(session=session, tenant_id=tenant_id)
    start, end = as_utc(appointment_in.start, zone), as_utc(appointment_in.end, zone)
    _check_times(start, end)
    resource = repo.resource(appointment_in.resource_id)
    if resource is None or resource.status != ResourceStatus.ACTIVE:
        raise Invalid(f"no mapped resource {appointment_in.resource_id!r} (map it with PUT /v1/calendars/...)",
                      code="resource_not_found")
    contact = appointment_in.contact
    name, phone, email = _contact(contact.name, contact.phone, contact.email)
    now = utcnow()
    remind_at = _reminder_at(start=start, before_minutes=appointment_in.remind_before_minutes,
                             explicit=appointment_in.remind_at, zone=zone, now=now)
    integration = active_integration(session=session, tenant_id=tenant_id)
    remote = google_busy(runtime=runtime, session=session, integration=integration, resource=resource,
                         start=start, end=end)
    claim = None
    if idempotency_key:
        claim = idempotency.claim(session=session, tenant_id=tenant_id, scope="appointments.create",
                                  key=idempotency_key, body=appointment_in.model_dump(mode="json"))
        if isinstance(claim, idempotency.Replay):
            replayed = repo.appointment(claim.resource_id) if claim.resource_id else None
            if replayed is None:
                raise NotFound("the appointment created with this Idempotency-Key no longer exists")
            return replayed, True
    repo.lock_for_booking(resource.id)
    _refuse_conflicts(remote + local_busy(repo=repo, resource=resource, start=start, end=end), start, end, resource,
                      zone)
    appointment_id = uuid.uuid4()
    appointment = Appointment(
        id=appointment_id, tenant_id=tenant_id, resource_pk=resource.id, status=AppointmentStatus.CONFIRMED,
        start_at=start, end_at=end, time_zone=zone, title=appointment_in.title, notes=appointment_in.notes,
        location=appointment_in.location,
        contact_name=name, contact_phone=phone, contact_email=email,
        remind_before_minutes=appointment_in.remind_before_minutes if appointment_in.remind_at is None else None,
        remind_at=remind_at, reminder_channel=appointment_in.reminder_channel,
        changed_by="api", changed_at=now, calendar_id=resource.calendar_id,
        google_event_id=event_id_for(appointment_id), version=1, synced_version=0, sync_state=SyncState.PENDING,
    )
    session.add(appointment)
    session.flush()
    if claim is not None:
        idempotency.complete(session=session, claim_row=claim, resource_id=appointment.id, status_code=201)
    enqueue_after_commit(session, runtime.celery, PUSH_APPOINTMENT, str(appointment.id))
    return appointment, False


def get_appointment(*, session: Session, tenant_id: uuid.UUID, appointment_id: uuid.UUID) -> Appointment:
    """One appointment of the tenant, or NotFound."""
    appointment = CalendarRepository(session, tenant_id).appointment(appointment_id)
    if appointment is None:
        raise NotFound("appointment not found", code="appointment_not_found")
    return appointment


def list_appointments(*, session: Session, tenant_id: uuid.UUID, resource_id: str | None = None,
                      status: str | None = None, start_from: datetime | None = None,
                      start_to: datetime | None = None, limit: int = 50, cursor: str | None = None
                      ) -> Page[Appointment]:
    """One page of the tenant's appointments, oldest booking first."""
    repo = CalendarRepository(session, tenant_id)
    resource_pk = None
    if resource_id is not None:
        resource = repo.resource(resource_id)
        if resource is None:
            return Page([], None)
        resource_pk = resource.id
    return repo.list_appointments(resource_pk=resource_pk, status=status, start_from=start_from,
                                  start_to=start_to, limit=limit, cursor=cursor)


def resources_of(*, session: Session, tenant_id: uuid.UUID,
                 appointments: list[Appointment]) -> dict[uuid.UUID, CalendarResource]:
    """The resources the appointments book, by primary key."""
    return CalendarRepository(session, tenant_id).resources_by_pk(a.resource_pk for a in appointments)


def update_appointment(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID, appointment_id: uuid.UUID,
                       appointment_in: AppointmentUpdate) -> Appointment:
    """Change an appointment; a new time is checked for conflicts like a new booking."""
    repo = CalendarRepository(session, tenant_id)
    appointment = get_appointment(session=session, tenant_id=tenant_id, appointment_id=appointment_id)
    if appointment.status != AppointmentStatus.CONFIRMED:
        raise Conflict("a cancelled appointment cannot be changed; book a new one", code="appointment_cancelled")
    changes = appointment_in.model_dump(exclude_unset=True)
    for key in ("start", "end", "title"):
        if key in changes and changes[key] is None:
            raise Invalid(f"{key} cannot be null", code="invalid_field")
    zone = changes.get("time_zone") or appointment.time_zone
    start = as_utc(changes["start"], zone) if "start" in changes else appointment.start_at
    end = as_utc(changes["end"], zone) if "end" in changes else appointment.end_at
    _check_times(start, end)
    moved = (start, end) != (appointment.start_at, appointment.end_at)
    contact = appointment_in.contact
    name, phone, email = appointment.contact_name, appointment.contact_phone, appointment.contact_email
    if contact is not None:
        given = contact.model_dump(exclude_unset=True)
        name, phone, email = _contact(given.get("name", name), given.get("phone", phone), given.get("email", email))
    now = utcnow()
    resource = repo.resource_by_pk(appointment.resource_pk)
    assert resource is not None
    remote: list[Busy] = []
    if moved:
        integration = active_integration(session=session, tenant_id=tenant_id)
        remote = google_busy(runtime=runtime, session=session, integration=integration, resource=resource,
                             start=start, end=end)
        if appointment.google_etag is not None:  # its own event is part of Google's busy time
            remote = _without(remote, appointment.start_at, appointment.end_at)
    repo.lock_for_booking(resource.id)
    if moved:
        _refuse_conflicts(remote + local_busy(repo=repo, resource=resource, start=start, end=end,
                                              exclude=appointment.id), start, end, resource, zone)
    if moved or "remind_at" in changes or "remind_before_minutes" in changes:
        explicit: datetime | None
        before: int | None
        if changes.get("remind_at") is not None:
            explicit, before = changes["remind_at"], None
        elif "remind_before_minutes" in changes:
            explicit, before = None, changes["remind_before_minutes"]
        elif "remind_at" in changes:  # null: no reminder
            explicit, before = None, None
        elif appointment.remind_before_minutes is not None:
            explicit, before = None, appointment.remind_before_minutes
        elif appointment.remind_at is not None:  # an explicit time moves with the appointment
            shifted = appointment.remind_at + (start - appointment.start_at)
            explicit, before = (shifted if shifted > now else None), None
        else:
            explicit, before = None, None
        appointment.remind_at = _reminder_at(start=start, before_minutes=before, explicit=explicit, zone=zone,
                                             now=now)
        appointment.remind_before_minutes = before
        appointment.reminded_at = None  # a new time (or lead) earns a new reminder
    appointment.start_at, appointment.end_at = start, end
    appointment.time_zone = zone
    for key in ("title", "notes", "location", "reminder_channel"):
        if key in changes:
            setattr(appointment, key, changes[key])
    appointment.contact_name, appointment.contact_phone, appointment.contact_email = name, phone, email
    _record_local_change(appointment, now)
    session.flush()
    enqueue_after_commit(session, runtime.celery, PUSH_APPOINTMENT, str(appointment.id))
    return appointment


def cancel_appointment(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID,
                       appointment_id: uuid.UUID) -> Appointment:
    """Cancel an appointment (its Google event is deleted); cancelling twice is a no-op."""
    appointment = get_appointment(session=session, tenant_id=tenant_id, appointment_id=appointment_id)
    if appointment.status == AppointmentStatus.CANCELLED:
        return appointment
    now = utcnow()
    appointment.status = AppointmentStatus.CANCELLED
    appointment.cancelled_at = now
    _record_local_change(appointment, now)
    session.flush()
    enqueue_after_commit(session, runtime.celery, PUSH_APPOINTMENT, str(appointment.id))
    return appointment


def _record_local_change(appointment: Appointment, now: datetime) -> None:
    appointment.version += 1
    appointment.changed_by = "api"
    appointment.changed_at = now
    appointment.sync_state = SyncState.PENDING
    appointment.last_sync_error = None
