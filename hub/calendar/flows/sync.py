"""Sync from Google: a push notification bumps ``sync_wanted`` on the resource and
enqueues ``sync_resource``. One worker at a time holds a resource's lease; it opens the
resource's channel when asked, pulls changes with the stored sync token (410 → a full
resync), page by page, one transaction per page, and stores the new token at the end.
Busy blocks not seen by a full resync are deleted (generation counter). Events the hub
wrote carry the appointment id in ``extendedProperties.private`` and an id derived from
it, and go through the conflict policy (``mirror``); the rest is busy time.
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


def _stream(runtime: Runtime, view: ResourceView, connector: GoogleCalendarConnector, token: str | None, *,
            reason: str) -> SyncStats:
    full = token is None
    stats = SyncStats()
    generation: int | None = None
    if full:
        with transaction(runtime.session_factory) as session:
            resource = current_resource(session, view)
            resource.sync_generation += 1
            generation = resource.sync_generation
    stream = connector.iter_changes(view.calendar_id, token, page_size=PAGE_SIZE, include_cancelled=full)
    for batch, checkpoint in _chunks(stream, PAGE_SIZE):
        with transaction(runtime.session_factory) as session:
            current_resource(session, view, lock=True)  # a remap waits for this page, or this page stops
            if batch:
                _apply_batch(runtime, session, view, batch, generation, stats)
            extend_lease(session, view.pk)
            if checkpoint is not None:
                _finish(session, view, checkpoint, generation, stats, reason, full)
    return stats


def _finish(session: Session, view: ResourceView, checkpoint: SyncCheckpoint, generation: int | None,
            stats: SyncStats, reason: str, full: bool) -> None:
    repo = CalendarRepository(session, view.tenant_id)
    resource = session.get(CalendarResource, view.pk)
    assert resource is not None
    if generation is not None:
        # gone from Google while we were not listening
        stats.busy_removed += repo.delete_busy_before_generation(view.pk, generation)
    resource.sync_token = checkpoint.next_sync_token
    resource.last_synced_at = utcnow()
    resource.last_sync_error = None
    if full:
        repo.log(view.pk, "sync.full", details={"reason": reason, **stats.as_json()})
    elif stats.changed():
        repo.log(view.pk, "sync.incremental", details=stats.as_json())


def _appointment_id(event: CalendarEvent) -> uuid.UUID | None:
    raw = event.private_properties.get(APPOINTMENT_PROPERTY)
    if raw:
        try:
            return uuid.UUID(raw)
        except ValueError:
            return None
    return uuid_for_event_id(event.id)


def _apply_batch(runtime: Runtime, session: Session, view: ResourceView, events: list[CalendarEvent],
                 generation: int | None, stats: SyncStats) -> None:
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
        _upsert_busy(repo, view, others, generation if generation is not None else resource.sync_generation, stats)


def _busy_interval(event: CalendarEvent, zone: str, horizon: datetime) -> tuple[datetime, datetime] | None:
    if event.cancelled or event.transparency == "transparent":
        return None
    start, end = instant_of(event.start, zone), instant_of(event.end, zone)
    if start is None or end is None or end <= start or end < horizon:
        return None
    return start, end


def _upsert_busy(repo: CalendarRepository, view: ResourceView, events: list[CalendarEvent], generation: int,
                 stats: SyncStats) -> None:
    rows = repo.busy_rows(view.pk, [e.id for e in events])
    horizon = utcnow() - BUSY_HORIZON
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[uuid.UUID] = []
    for event in events:
        interval = _busy_interval(event, view.zone, horizon)
        row = rows.get(event.id)
        if interval is None:
            if row is not None:
                deletes.append(row.id)
            continue
        start, end = interval
        if row is None:
            inserts.append({"id": uuid.uuid4(), "resource_pk": view.pk, "google_event_id": event.id,
                            "start_at": start, "end_at": end, "google_updated": event.updated,
                            "generation": generation})
        elif (row.start_at, row.end_at, row.generation) != (start, end, generation):
            updates.append({"id": row.id, "start_at": start, "end_at": end, "google_updated": event.updated,
                            "generation": generation})
            if (row.start_at, row.end_at) != (start, end):
                stats.busy_updated += 1
    repo.insert_busy(inserts)
    repo.update_busy(updates)
    repo.delete_busy(deletes)
    stats.busy_added += len(inserts)
    stats.busy_removed += len(deletes)
