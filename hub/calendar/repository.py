"""Every query of the calendar feature; the tenant filter is applied here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from hub.calendar.models import (
    Appointment,
    AppointmentStatus,
    BusyBlock,
    CalendarResource,
    ResourceStatus,
    SyncLogEntry,
)
from hub.db import utcnow
from hub.pagination import Page, decode_cursor, encode_cursor, paginate


class CalendarRepository:
    """Resources, appointments, busy blocks and the sync log of one tenant."""

    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    # --- resources ----------------------------------------------------------------------
    def _resources(self) -> Select[tuple[CalendarResource]]:
        return select(CalendarResource).where(CalendarResource.tenant_id == self.tenant_id)

    def resource(self, resource_id: str, *, for_update: bool = False) -> CalendarResource | None:
        stmt = self._resources().where(CalendarResource.resource_id == resource_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def resource_by_pk(self, resource_pk: uuid.UUID) -> CalendarResource | None:
        return self.session.scalar(self._resources().where(CalendarResource.id == resource_pk))

    def resources(self, *, active_only: bool = False) -> list[CalendarResource]:
        stmt = self._resources()
        if active_only:
            stmt = stmt.where(CalendarResource.status == ResourceStatus.ACTIVE)
        return list(self.session.scalars(stmt.order_by(CalendarResource.resource_id)))

    def resources_by_pk(self, pks: Iterable[uuid.UUID]) -> dict[uuid.UUID, CalendarResource]:
        pks = list(set(pks))
        if not pks:
            return {}
        return {r.id: r for r in self.session.scalars(self._resources().where(CalendarResource.id.in_(pks)))}

    def add_resource(self, resource: CalendarResource) -> CalendarResource:
        resource.tenant_id = self.tenant_id
        self.session.add(resource)
        self.session.flush()
        return resource

    def lock_for_booking(self, resource_pk: uuid.UUID) -> None:
        """Serialize bookings of one resource: the UPDATE takes the row lock (PostgreSQL)
        or the write lock (SQLite) until the transaction ends."""
        self.session.execute(
            update(CalendarResource)
            .where(CalendarResource.id == resource_pk, CalendarResource.tenant_id == self.tenant_id)
            .values(booking_seq=CalendarResource.booking_seq + 1)
            .execution_options(synchronize_session=False)
        )

    # --- appointments -------------------------------------------------------------------
    def _appointments(self) -> Select[tuple[Appointment]]:
        return select(Appointment).where(Appointment.tenant_id == self.tenant_id)

    def appointment(self, appointment_id: uuid.UUID, *, for_update: bool = False) -> Appointment | None:
        stmt = self._appointments().where(Appointment.id == appointment_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def appointments_by_id(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Appointment]:
        ids = list(set(ids))
        if not ids:
            return {}
        return {a.id: a for a in self.session.scalars(self._appointments().where(Appointment.id.in_(ids)))}

    def list_appointments(self, *, resource_pk: uuid.UUID | None, status: str | None, start_from: datetime | None,
                          start_to: datetime | None, limit: int, cursor: str | None) -> Page[Appointment]:
        stmt = self._appointments()
        if resource_pk is not None:
            stmt = stmt.where(Appointment.resource_pk == resource_pk)
        if status:
            stmt = stmt.where(Appointment.status == status)
        if start_from is not None:
            stmt = stmt.where(Appointment.start_at >= start_from)
        if start_to is not None:
            stmt = stmt.where(Appointment.start_at < start_to)
        return paginate(self.session, stmt, Appointment, limit=limit, cursor=cursor)

    def overlapping_appointments(self, resource_pk: uuid.UUID, start: datetime, end: datetime, *,
                                 exclude: uuid.UUID | None = None) -> list[Appointment]:
        stmt = self._appointments().where(
            Appointment.resource_pk == resource_pk,
            Appointment.status == AppointmentStatus.CONFIRMED,
            Appointment.start_at < end,
            Appointment.end_at > start,
        )
        if exclude is not None:
            stmt = stmt.where(Appointment.id != exclude)
        return list(self.session.scalars(stmt.order_by(Appointment.start_at)))

    def upcoming_appointments_count(self, resource_pk: uuid.UUID, now: datetime) -> int:
        return len(list(self.session.scalars(
            select(Appointment.id).where(
                Appointment.tenant_id == self.tenant_id, Appointment.resource_pk == resource_pk,
                Appointment.status == AppointmentStatus.CONFIRMED, Appointment.end_at > now,
            ).limit(1000)
        )))

    def unpushed_appointments(self) -> list[uuid.UUID]:
        return list(self.session.scalars(
            select(Appointment.id).where(Appointment.tenant_id == self.tenant_id,
                                         Appointment.version > Appointment.synced_version)
        ))

    # --- busy blocks --------------------------------------------------------------------
    def overlapping_busy_blocks(self, resource_pk: uuid.UUID, start: datetime, end: datetime) -> list[BusyBlock]:
        return list(self.session.scalars(
            select(BusyBlock).where(
                BusyBlock.tenant_id == self.tenant_id, BusyBlock.resource_pk == resource_pk,
                BusyBlock.start_at < end, BusyBlock.end_at > start,
            ).order_by(BusyBlock.start_at)
        ))

    def busy_rows(self, resource_pk: uuid.UUID, event_ids: Sequence[str]) -> dict[str, Row[Any]]:
        """(id, google_event_id, start_at, end_at, google_updated, generation) by event id."""
        if not event_ids:
            return {}
        # Only the event ids in SQL: during a first full sync the table grows faster than its
        # statistics, and a planner told "few rows per resource" scans the whole resource
        # for every page; the unique index led by the event id stays a probe per id.
        rows = self.session.execute(
            select(BusyBlock.id, BusyBlock.google_event_id, BusyBlock.start_at, BusyBlock.end_at,
                   BusyBlock.google_updated, BusyBlock.generation, BusyBlock.resource_pk, BusyBlock.tenant_id)
            .where(BusyBlock.google_event_id.in_(list(event_ids)))
        )
        return {row.google_event_id: row for row in rows
                if row.resource_pk == resource_pk and row.tenant_id == self.tenant_id}

    def insert_busy(self, values: list[dict[str, Any]]) -> None:
        if values:
            for value in values:
                value["tenant_id"] = self.tenant_id
            self.session.execute(insert(BusyBlock), values)

    def update_busy(self, values: list[dict[str, Any]]) -> None:
        if values:  # ORM bulk UPDATE by primary key
            self.session.execute(update(BusyBlock), values)

    def delete_busy(self, ids: Sequence[uuid.UUID]) -> None:
        if ids:
            self.session.execute(delete(BusyBlock).where(BusyBlock.tenant_id == self.tenant_id,
                                                         BusyBlock.id.in_(list(ids))))

    def delete_busy_before_generation(self, resource_pk: uuid.UUID, generation: int) -> int:
        return self.session.execute(
            delete(BusyBlock).where(BusyBlock.tenant_id == self.tenant_id, BusyBlock.resource_pk == resource_pk,
                                    BusyBlock.generation < generation)
        ).rowcount or 0

    def delete_all_busy(self, resource_pk: uuid.UUID) -> int:
        return self.session.execute(
            delete(BusyBlock).where(BusyBlock.tenant_id == self.tenant_id, BusyBlock.resource_pk == resource_pk)
        ).rowcount or 0

    # --- sync log -----------------------------------------------------------------------
    def log(self, resource_pk: uuid.UUID, action: str, *, appointment_id: uuid.UUID | None = None,
            google_event_id: str | None = None, details: dict[str, Any] | None = None) -> SyncLogEntry:
        entry = SyncLogEntry(tenant_id=self.tenant_id, resource_pk=resource_pk, action=action,
                             appointment_id=appointment_id, google_event_id=google_event_id, details=details or {})
        self.session.add(entry)
        return entry

    def log_many(self, entries: list[dict[str, Any]]) -> None:
        """Several log lines in one statement (``resource_pk``, ``action``, and optionally
        ``appointment_id``, ``google_event_id``, ``details``)."""
        if entries:
            now = utcnow()
            self.session.execute(insert(SyncLogEntry), [
                {"id": uuid.uuid4(), "tenant_id": self.tenant_id, "created_at": now, "details": {}} | entry
                for entry in entries])

    def sync_log(self, resource_pk: uuid.UUID, *, action: str | None, limit: int,
                 cursor: str | None) -> Page[SyncLogEntry]:
        """Newest first; the cursor continues below the last entry of a page."""
        stmt = select(SyncLogEntry).where(SyncLogEntry.tenant_id == self.tenant_id,
                                          SyncLogEntry.resource_pk == resource_pk)
        if action:
            stmt = stmt.where(SyncLogEntry.action == action)
        if cursor:
            created_at, row_id = decode_cursor(cursor)
            stmt = stmt.where(or_(SyncLogEntry.created_at < created_at,
                                  and_(SyncLogEntry.created_at == created_at, SyncLogEntry.id < row_id)))
        rows = list(self.session.scalars(
            stmt.order_by(SyncLogEntry.created_at.desc(), SyncLogEntry.id.desc()).limit(limit + 1)))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
        return Page(rows, next_cursor)
