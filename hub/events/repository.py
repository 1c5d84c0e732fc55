"""Every query of the event log; the tenant filter is applied in one place."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from hub.events.models import TenantEvent


class EventRepository:
    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def latest_id(self) -> int:
        """The tenant's newest event id (0 when it has none)."""
        return self.session.scalar(
            select(func.coalesce(func.max(TenantEvent.id), 0)).where(TenantEvent.tenant_id == self.tenant_id)
        ) or 0

    def newer(self, *, after: int, also: Collection[int] = (), types: Collection[str] | None = None,
              limit: int) -> list[TenantEvent]:
        """The tenant's events with an id above ``after`` (plus those named in ``also``,
        which may commit below it), oldest first."""
        where = TenantEvent.id > after
        if also:
            where = or_(where, TenantEvent.id.in_(list(also)))
        stmt = select(TenantEvent).where(TenantEvent.tenant_id == self.tenant_id, where)
        if types:
            stmt = stmt.where(TenantEvent.type.in_(list(types)))
        return list(self.session.scalars(stmt.order_by(TenantEvent.id).limit(limit)))


def delete_older_than(session: Session, *, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` events of any tenant created before ``cutoff``."""
    ids = select(TenantEvent.id).where(TenantEvent.created_at < cutoff).order_by(TenantEvent.id).limit(batch)
    return session.execute(
        delete(TenantEvent).where(TenantEvent.id.in_(ids.scalar_subquery())).execution_options(
            synchronize_session=False, preserve_rowcount=True)
    ).rowcount
