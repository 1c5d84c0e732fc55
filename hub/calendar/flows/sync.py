"""Sync from Google: a push notification bumps ``sync_wanted`` on the resource and
enqueues ``sync_resource``. One worker at a time holds a resource's lease; it opens the
resource's channel when asked, pulls changes with the stored sync token (410 → a full
resync), page by page, one transaction per page, and stores the new token at the end.
Busy blocks not seen by a full resync are deleted (generation counter). Events the hub
wrote carry the appointment id in ``extendedProperties.private`` and an id derived from
it, and go through the conflict policy (``mirror``); the rest is busy time.

**Recurring events** are read as their instances (``singleEvents``: Google expands the
rule, its EXDATEs and its changed instances), so every occurrence is a busy block of
its own. A full sync reads a window, from a day ago to ``SYNC_WINDOW`` ahead (Google
refuses a window beside a sync token, and expanding an endless series needs an end).
The token keeps the window of the full sync that began it, so a full sync moves the
window on once it is a day old (the nightly reconcile asks for a round); incremental
changes outside the window (a changed series comes back with all its instances) are
not kept. Each busy block an incremental sync adds, moves or removes is one line of the
sync log; a full sync logs its totals.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import update
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError
from connectors.google_calendar import (
    CalendarEvent,
    GoogleCalendarConnector,
    SyncCheckpoint,
    SyncTokenInvalid,
    uuid_for_event_id,
)
from hub.calendar.flows.channels import open_channel
from hub.calendar.flows.mirror import APPOINTMENT_PROPERTY, apply_google_event, instant_of
from hub.calendar.flows.resources import (
    MAX_ROUNDS,
    ResourceView,
    Superseded,
    claim_resource,
    current_resource,
    extend_lease,
    release_resource,
)
from hub.calendar.models import CalendarResource, ChannelStatus, ResourceStatus
from hub.calendar.repository import CalendarRepository
from hub.calendar.tokens import NeedsReauth, calendar_connector, find_connection
from hub.db import transaction, utcnow
from tenants.models import IntegrationStatus

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.calendar")


PAGE_SIZE = 250
# Google-only events that ended before this are not kept as busy time
BUSY_HORIZON = timedelta(days=1)
# how far ahead Google's events are read and kept as busy time (bookings further out
# are still checked against Google's free/busy when they are made)
SYNC_WINDOW = timedelta(days=365)
# a full sync moves the window on once the last one is this old
REANCHOR_AFTER = timedelta(days=1)


def sync_resource(*, runtime: Runtime, resource_pk: uuid.UUID) -> str:
    """Bring one mapped calendar up to date: open its channel if asked, pull Google's
    changes. Returns ``synced``, ``busy`` (another worker holds it and will redo what
    was asked meanwhile), ``needs_reauth``, ``idle`` or ``failed``."""
    outcome = "idle"
    for _ in range(MAX_ROUNDS):
        if not claim_resource(runtime, resource_pk):
            return "busy"
        try:
            outcome = _sync_round(runtime, resource_pk)
        finally:
            release_resource(runtime, resource_pk)
        if outcome != "synced":
            return outcome
        with runtime.session_factory() as session:
            resource = session.get(CalendarResource, resource_pk)
            if resource is None or not (resource.sync_wanted > resource.sync_done
                                        or resource.channel_status == ChannelStatus.STARTING):
                return outcome
    return outcome


def _sync_round(runtime: Runtime, resource_pk: uuid.UUID) -> str:
    with runtime.session_factory() as session:
        resource = session.get(CalendarResource, resource_pk)
        if resource is None or resource.status != ResourceStatus.ACTIVE:
            return "idle"
        integration = find_connection(session=session, tenant_id=resource.tenant_id)
        if integration is None or integration.status != IntegrationStatus.ACTIVE:
            return "needs_reauth" if integration is not None else "idle"
        view = ResourceView(
            pk=resource.id, tenant_id=resource.tenant_id, integration_id=integration.id,
            resource_id=resource.resource_id, calendar_id=resource.calendar_id,
            zone=resource.calendar_time_zone or "UTC", sync_token=resource.sync_token,
            sync_wanted=resource.sync_wanted, open_channel=resource.channel_status == ChannelStatus.STARTING,
            window_end=resource.sync_window_end,
        )
        try:
            connector = calendar_connector(runtime, session=session, integration=integration)
        except NeedsReauth:
            return "needs_reauth"
    try:
        if view.open_channel:
            # a refusal is recorded on the resource (channel error); the sync goes on, renewal retries
            with contextlib.suppress(PermanentProviderError):
                open_channel(runtime, view, connector)
        _pull(runtime, view, connector)
    except NeedsReauth:
        return "needs_reauth"
    except Superseded:
        return "synced"  # the remap asked for another round, which works on the new calendar
    except PermanentProviderError as exc:
        with transaction(runtime.session_factory) as session:
            resource = session.get(CalendarResource, view.pk)
            if resource is not None:
                resource.last_sync_error = f"{exc.code or 'error'}: {exc.message}"[:1000]
                CalendarRepository(session, view.tenant_id).log(view.pk, "sync.failed",
                                                                details={"error": resource.last_sync_error})
        log.warning("calendar sync failed", resource=view.resource_id, error=exc.message)
        return "failed"
    with transaction(runtime.session_factory) as session:
        session.execute(update(CalendarResource)
                        .where(CalendarResource.id == view.pk, CalendarResource.sync_done < view.sync_wanted)
                        .values(sync_done=view.sync_wanted).execution_options(synchronize_session=False))
    return "synced"


@dataclass
class SyncStats:
    events: int = 0
    busy_added: int = 0
    busy_updated: int = 0
    busy_removed: int = 0
    appointments: dict[str, int] = field(default_factory=dict)

    def changed(self) -> bool:
        return bool(self.busy_added or self.busy_removed or self.busy_updated or self.appointments)

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "busy_added": self.busy_added, "busy_updated": self.busy_updated,
                "busy_removed": self.busy_removed, "appointments": dict(self.appointments)}


def _pull(runtime: Runtime, view: ResourceView, connector: GoogleCalendarConnector) -> SyncStats:
    token = view.sync_token
    reason = "incremental" if token else "initial"
    if token and (view.window_end is None or view.window_end < utcnow() + SYNC_WINDOW - REANCHOR_AFTER):
        token, reason = None, "window_moved"
    for _ in range(3):
        try:
            return _stream(runtime, view, connector, token, reason=reason)
        except SyncTokenInvalid:  # 410: the token (or a page token) is no longer valid
            with transaction(runtime.session_factory) as session:
                CalendarRepository(session, view.tenant_id).log(view.pk, "sync.token_invalid",
                                                                details={"next": "full resync"})
            token, reason = None, "token_invalid"
    raise PermanentProviderError("Google keeps invalidating the sync; try later", code="fullSyncRequired")


def _chunks(stream: Iterator[Any], size: int) -> Iterator[tuple[list[CalendarEvent], SyncCheckpoint | None]]:
    """Batches of at most ``size`` events; the checkpoint comes with the last one. A batch
    is handed over before the next page is fetched, so no write is open during a fetch."""
    batch: list[CalendarEvent] = []
    for item in stream:
        if isinstance(item, SyncCheckpoint):
            yield batch, item
            return
        batch.append(item)
        if len(batch) >= size:
            yield batch, None
            batch = []
    raise PermanentProviderError("the change stream ended without a sync token", code="no_sync_token")


@dataclass(frozen=True)
class _Window:
    """The span of Google's calendar the cache keeps: busy blocks end after ``start`` and
    begin before ``end``."""

    start: datetime
    end: datetime

    def holds(self, start: datetime, end: datetime) -> bool:
        return end >= self.start and start < self.end


def _stream(runtime: Runtime, view: ResourceView, connector: GoogleCalendarConnector, token: str | None, *,
            reason: str) -> SyncStats:
    full = token is None
    stats = SyncStats()
    generation: int | None = None
    now = utcnow()
    window = _Window(now - BUSY_HORIZON, now + SYNC_WINDOW if full or view.window_end is None else view.window_end)
    if full:
        with transaction(runtime.session_factory) as session:
            resource = current_resource(session, view)
            resource.sync_generation += 1
            generation = resource.sync_generation
        stream = connector.iter_changes(view.calendar_id, page_size=PAGE_SIZE, include_cancelled=True,
                                        time_min=window.start, time_max=window.end)
    else:
        stream = connector.iter_changes(view.calendar_id, token, page_size=PAGE_SIZE)
    for batch, checkpoint in _chunks(stream, PAGE_SIZE):
        with transaction(runtime.session_factory) as session:
            current_resource(session, view, lock=True)  # a remap waits for this page, or this page stops
            if batch:
                _apply_batch(runtime, session, view, batch, generation, stats, window)
            extend_lease(session, view.pk)
            if checkpoint is not None:
                _finish(session, view, checkpoint, generation, stats, reason, window if full else None)
    return stats


def _finish(session: Session, view: ResourceView, checkpoint: SyncCheckpoint, generation: int | None,
            stats: SyncStats, reason: str, window: _Window | None) -> None:
    repo = CalendarRepository(session, view.tenant_id)
    resource = session.get(CalendarResource, view.pk)
    assert resource is not None
    if generation is not None:
        # gone from Google while we were not listening
        stats.busy_removed += repo.delete_busy_before_generation(view.pk, generation)
    resource.sync_token = checkpoint.next_sync_token
    resource.last_synced_at = utcnow()
    resource.last_sync_error = None
    if window is not None:
        resource.sync_window_end = window.end
        repo.log(view.pk, "sync.full", details={"reason": reason, **stats.as_json(),
                                                "window": {"from": window.start.isoformat(),
                                                           "until": window.end.isoformat()}})
    elif stats.changed():
        repo.log(view.pk, "sync.incremental", details=stats.as_json())


def _appointment_id(event: CalendarEvent) -> uuid.UUID | None:
    if event.recurring_event_id is not None:
        # the hub writes single events; occurrences of a series are busy time, even one
        # made from an appointment's event in Google (they carry its properties)
        return None
    raw = event.private_properties.get(APPOINTMENT_PROPERTY)
    if raw:
        try:
            return uuid.UUID(raw)
        except ValueError:
            return None
    return uuid_for_event_id(event.id)


def _apply_batch(runtime: Runtime, session: Session, view: ResourceView, events: list[CalendarEvent],
                 generation: int | None, stats: SyncStats, window: _Window) -> None:
    repo = CalendarRepository(session, view.tenant_id)
    stats.events += len(events)
    latest: dict[str, CalendarEvent] = {}
    for event in events:
        latest[event.id] = event  # a later version of the same event wins
    own: dict[uuid.UUID, CalendarEvent] = {}
    for event in latest.values():
        appointment_id = _appointment_id(event)
        if appointment_id is not None:
            own[appointment_id] = event
    appointments = repo.appointments_by_id(own) if own else {}
    others: list[CalendarEvent] = []
    for event in latest.values():
        appointment_id = _appointment_id(event)
        appointment = appointments.get(appointment_id) if appointment_id else None
        if appointment is None or appointment.resource_pk != view.pk:
            others.append(event)  # Google-made, or another resource's or tenant's booking: busy time
            continue
        action = apply_google_event(runtime=runtime, session=session, repo=repo, appointment=appointment,
                                    event=event, zone=view.zone)
        if action:
            stats.appointments[action] = stats.appointments.get(action, 0) + 1
    if others:
        resource = session.get(CalendarResource, view.pk)
        assert resource is not None
        _upsert_busy(repo, view, others, generation if generation is not None else resource.sync_generation, stats,
                     window, log_each=generation is None)


def _busy_interval(event: CalendarEvent, zone: str, window: _Window) -> tuple[datetime, datetime] | None:
    if event.cancelled or event.transparency == "transparent":
        return None
    start, end = instant_of(event.start, zone), instant_of(event.end, zone)
    if start is None or end is None or end <= start or not window.holds(start, end):
        return None
    return start, end


def _upsert_busy(repo: CalendarRepository, view: ResourceView, events: list[CalendarEvent], generation: int,
                 stats: SyncStats, window: _Window, *, log_each: bool) -> None:
    rows = repo.busy_rows(view.pk, [e.id for e in events])
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[uuid.UUID] = []
    lines: list[dict[str, Any]] = []

    def line(action: str, event: CalendarEvent, start: datetime, end: datetime) -> None:
        if log_each:
            details = {"start": start.isoformat(), "end": end.isoformat()}
            if event.recurring_event_id:
                details["recurring_event_id"] = event.recurring_event_id
            lines.append({"resource_pk": view.pk, "action": action, "google_event_id": event.id, "details": details})

    for event in events:
        interval = _busy_interval(event, view.zone, window)
        row = rows.get(event.id)
        if interval is None:
            if row is not None:
                deletes.append(row.id)
                line("busy.removed", event, row.start_at, row.end_at)
            continue
        start, end = interval
        if row is None:
            inserts.append({"id": uuid.uuid4(), "resource_pk": view.pk, "google_event_id": event.id,
                            "start_at": start, "end_at": end, "google_updated": event.updated,
                            "generation": generation})
            line("busy.added", event, start, end)
        elif (row.start_at, row.end_at, row.generation) != (start, end, generation):
            updates.append({"id": row.id, "start_at": start, "end_at": end, "google_updated": event.updated,
                            "generation": generation})
            if (row.start_at, row.end_at) != (start, end):
                stats.busy_updated += 1
                line("busy.moved", event, start, end)
    repo.insert_busy(inserts)
    repo.update_busy(updates)
    repo.delete_busy(deletes)
    repo.log_many(lines)
    stats.busy_added += len(inserts)
    stats.busy_removed += len(deletes)
