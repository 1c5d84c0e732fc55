"""What every calendar job shares: a resource's sync lease (one worker at a time per
calendar, claimed with a conditional UPDATE, never held across a Google call as a
database lock), the read-once view of a resource, and the check that a job still works
on the calendar the resource maps."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hub.calendar.models import CalendarResource, ResourceStatus
from hub.calendar.tokens import GOOGLE_KIND
from hub.db import transaction, utcnow
from tenants.models import Integration, IntegrationStatus

if TYPE_CHECKING:
    from hub.runtime import Runtime


SYNC_LEASE = timedelta(minutes=5)
MAX_ROUNDS = 20


def claim_resource(runtime: Runtime, resource_pk: uuid.UUID) -> bool:
    now = utcnow()
    with transaction(runtime.session_factory) as session:
        return session.execute(
            update(CalendarResource)
            .where(CalendarResource.id == resource_pk,
                   or_(CalendarResource.sync_lease_until.is_(None), CalendarResource.sync_lease_until < now))
            .values(sync_lease_until=now + SYNC_LEASE)
            .execution_options(synchronize_session=False)
        ).rowcount == 1


def extend_lease(session: Session, resource_pk: uuid.UUID) -> None:
    session.execute(update(CalendarResource).where(CalendarResource.id == resource_pk)
                    .values(sync_lease_until=utcnow() + SYNC_LEASE).execution_options(synchronize_session=False))


def release_resource(runtime: Runtime, resource_pk: uuid.UUID) -> None:
    with transaction(runtime.session_factory) as session:
        session.execute(update(CalendarResource).where(CalendarResource.id == resource_pk)
                        .values(sync_lease_until=None).execution_options(synchronize_session=False))


@dataclass(frozen=True)
class ResourceView:
    """What a job needs of a resource, read once, so no session stays open across Google calls."""

    pk: uuid.UUID
    tenant_id: uuid.UUID
    integration_id: uuid.UUID
    resource_id: str
    calendar_id: str
    zone: str
    sync_token: str | None
    sync_wanted: int
    open_channel: bool
    window_end: datetime | None = None  # the end of the window the last full sync read


class Superseded(Exception):
    """The resource was remapped or unmapped while a job worked on its old calendar."""


def current_resource(session: Session, view: ResourceView, *, lock: bool = False) -> CalendarResource:
    """The resource, if it still maps the calendar the job started with; Superseded otherwise."""
    resource = session.get(CalendarResource, view.pk, with_for_update=lock)
    if resource is None or resource.status != ResourceStatus.ACTIVE or resource.calendar_id != view.calendar_id:
        raise Superseded()
    return resource


def active_resources(session: Session) -> Any:
    return (select(CalendarResource)
            .join(Integration, (Integration.tenant_id == CalendarResource.tenant_id)
                  & (Integration.kind == GOOGLE_KIND))
            .where(CalendarResource.status == ResourceStatus.ACTIVE, Integration.status == IntegrationStatus.ACTIVE))
