"""Watch channels and the notifications they bring.

Each mapped calendar has one watch channel. Its id is a route key of kind
``google_calendar`` (claimed and committed before ``events.watch``, since Google
notifies at once); its token is the integration's ``channel_token``, sealed in the
vault as the integration's webhook secret (one token per connection, checked by the
generic webhook ingress). Channels are renewed a day before they expire (a new channel
first, then the old one stopped), stopped when a calendar is unmapped. A notification
(``on_calendar_changed``) asks for an incremental sync of the channel's calendar.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError
from connectors.google_calendar import GoogleCalendarConnector
from hub.calendar.flows.mirror import iso
from hub.calendar.flows.resources import ResourceView, Superseded, active_resources, current_resource
from hub.calendar.models import Appointment, CalendarResource, ChannelStatus, GoogleConnectState, ResourceStatus
from hub.calendar.repository import CalendarRepository
from hub.calendar.tokens import GOOGLE_KIND, NeedsReauth, calendar_connector, find_connection
from hub.db import transaction, utcnow
from hub.queue import CALENDAR_SYNC_RESOURCE, PUSH_APPOINTMENT, enqueue_after_commit, publish
from hub.webhooks.routes import claim_route, release_routes, route_cache
from tenants.models import Integration, IntegrationStatus

if TYPE_CHECKING:
    from hub.runtime import Runtime
    from hub.webhooks.models import WebhookEvent

log = structlog.get_logger("hub.calendar")


WEBHOOK_PATH = "/webhooks/google_calendar"
CHANNEL_TTL = timedelta(days=7)
RENEW_BEFORE = timedelta(days=1)


def webhook_address(runtime: Runtime) -> str:
    """Where Google delivers push notifications."""
    return runtime.settings.effective_public_url + WEBHOOK_PATH


class PushAddressRefused(PermanentProviderError):
    """The hub's public URL is not one Google pushes to (production needs HTTPS)."""


def push_address_problem(runtime: Runtime) -> str | None:
    """Why the hub must not ask Google for a watch channel, or None.

    Google delivers notifications only to an HTTPS receiver
    (https://developers.google.com/workspace/calendar/api/guides/push, and it refuses
    another address with ``push.webhookUrlNotHttps``); in production the hub does not ask
    with a plain-http ``HUB_PUBLIC_URL``. Outside production the local sandbox accepts
    the hub it was started beside."""
    settings = runtime.settings
    if settings.is_production and not settings.public_url_is_https:
        return ("HUB_PUBLIC_URL must be an https:// URL: Google delivers push notifications only to HTTPS "
                "addresses, so no watch channel was started (changes arrive with the nightly sync until it is)")
    return None


def open_channel(runtime: Runtime, view: ResourceView, connector: GoogleCalendarConnector) -> None:
    """Open a new channel (route first: Google notifies at once), then retire the old one."""
    problem = push_address_problem(runtime)
    if problem is not None:
        with transaction(runtime.session_factory) as session:
            resource = session.get(CalendarResource, view.pk)
            if resource is not None and resource.channel_error != problem:
                resource.channel_status = ChannelStatus.ERROR
                resource.channel_error = problem
                CalendarRepository(session, view.tenant_id).log(view.pk, "channel.refused",
                                                                details={"error": problem})
            elif resource is not None:
                resource.channel_status = ChannelStatus.ERROR
        log.warning("watch channel not started: HUB_PUBLIC_URL is not https", resource=view.resource_id)
        raise PushAddressRefused(problem, code="push_address_not_https")
    channel_id = str(uuid.uuid4())
    with transaction(runtime.session_factory) as session:
        integration = session.get(Integration, view.integration_id)
        assert integration is not None
        claim_route(session, kind=GOOGLE_KIND, route_key=channel_id, integration=integration)
    try:
        channel = connector.watch(view.calendar_id, channel_id=channel_id, address=webhook_address(runtime),
                                  token=connector.credentials.channel_token.get_secret_value(), ttl=CHANNEL_TTL)
    except ProviderError as exc:
        with transaction(runtime.session_factory) as session:
            release_routes(session, integration_id=view.integration_id, route_keys=[channel_id])
            resource = session.get(CalendarResource, view.pk)
            if resource is not None and not isinstance(exc, TransientProviderError):
                resource.channel_status = ChannelStatus.ERROR
                resource.channel_error = f"{exc.code or 'error'}: {exc.message}"[:1000]
                CalendarRepository(session, view.tenant_id).log(view.pk, "channel.failed",
                                                                details={"error": resource.channel_error})
        raise
    try:
        with transaction(runtime.session_factory) as session:
            resource = current_resource(session, view, lock=True)
            old = (resource.channel_id, resource.channel_resource_id)
            renewed = resource.channel_id is not None
            resource.channel_id = channel.id
            resource.channel_resource_id = channel.resource_id
            resource.channel_expires_at = channel.expiration
            resource.channel_status = ChannelStatus.ACTIVE
            resource.channel_error = None
            if old[0]:
                release_routes(session, integration_id=view.integration_id, route_keys=[old[0]])
            CalendarRepository(session, view.tenant_id).log(
                view.pk, "channel.renewed" if renewed else "channel.opened",
                details={"expires_at": iso(channel.expiration)})
    except Superseded:
        # remapped or unmapped meanwhile: this channel watches a calendar nobody wants
        with transaction(runtime.session_factory) as session:
            release_routes(session, integration_id=view.integration_id, route_keys=[channel_id])
        with contextlib.suppress(ProviderError):
            connector.stop_channel(channel.id, channel.resource_id)
        raise
    if old[0]:
        route_cache(runtime).forget(GOOGLE_KIND, old[0])
        if old[1]:
            try:
                connector.stop_channel(old[0], old[1])
            except ProviderError as exc:  # it expires by itself
                log.warning("old channel not stopped", channel=old[0], error=exc.message)


def stop_channel(*, runtime: Runtime, tenant_id: uuid.UUID, channel_id: str, channel_resource_id: str) -> bool:
    """Stop one channel at Google (its route was released already)."""
    with runtime.session_factory() as session:
        integration = find_connection(session=session, tenant_id=tenant_id)
        if integration is None or integration.status != IntegrationStatus.ACTIVE:
            return False
        try:
            connector = calendar_connector(runtime, session=session, integration=integration)
        except NeedsReauth:
            return False
    try:
        return connector.stop_channel(channel_id, channel_resource_id)
    except NeedsReauth:
        return False
    except PermanentProviderError as exc:
        log.warning("channel not stopped", channel=channel_id, error=exc.message)
        return False


def renew_channels(*, runtime: Runtime, within: timedelta = RENEW_BEFORE, limit: int = 500) -> int:
    """Beat: ask for a new channel where the current one expires within ``within``, is
    missing, or failed; returns how many resources were queued."""
    now = utcnow()
    with transaction(runtime.session_factory) as session:
        resources = list(session.scalars(active_resources(session).where(or_(
            CalendarResource.channel_status.in_([ChannelStatus.NONE, ChannelStatus.ERROR, ChannelStatus.STARTING]),
            CalendarResource.channel_expires_at.is_(None),
            CalendarResource.channel_expires_at < now + within,
        )).limit(limit)))
        for resource in resources:
            resource.channel_status = ChannelStatus.STARTING
        ids = [str(r.id) for r in resources]
    for resource_pk in ids:
        publish(runtime.celery, CALENDAR_SYNC_RESOURCE, resource_pk)
    return len(ids)


def reconcile(*, runtime: Runtime) -> int:
    """Nightly: a sync round for every mapped calendar (incremental, which catches pushes
    Google never sent, or a full one that moves the sync window on once it is a day old)
    and another try for appointments still waiting to reach Google."""
    with transaction(runtime.session_factory) as session:
        resources = list(session.scalars(active_resources(session)))
        for resource in resources:
            resource.sync_wanted += 1
        ids = [str(r.id) for r in resources]
        pending = [str(i) for i in session.scalars(
            select(Appointment.id).where(Appointment.version > Appointment.synced_version))]
        session.execute(GoogleConnectState.__table__.delete().where(
            GoogleConnectState.expires_at < utcnow() - timedelta(days=1)))
    for resource_pk in ids:
        publish(runtime.celery, CALENDAR_SYNC_RESOURCE, resource_pk)
    for appointment_id in pending:
        publish(runtime.celery, PUSH_APPOINTMENT, appointment_id)
    return len(ids)


def resume_tenant(*, runtime: Runtime, tenant_id: uuid.UUID) -> int:
    """After a (re)connect: a new channel and a sync for every mapped calendar, and the
    appointments that waited for Google."""
    with transaction(runtime.session_factory) as session:
        repo = CalendarRepository(session, tenant_id)
        resources = repo.resources(active_only=True)
        for resource in resources:
            resource.channel_status = ChannelStatus.STARTING
            resource.sync_wanted += 1
        ids = [str(r.id) for r in resources]
        pending = [str(i) for i in repo.unpushed_appointments()]
    for resource_pk in ids:
        publish(runtime.celery, CALENDAR_SYNC_RESOURCE, resource_pk)
    for appointment_id in pending:
        publish(runtime.celery, PUSH_APPOINTMENT, appointment_id)
    return len(ids)


# --- push notifications --------------------------------------------------------------------------


def on_calendar_changed(*, runtime: Runtime, session: Session, event: WebhookEvent) -> None:
    """A ``calendar.changed`` push: ask for an incremental sync of the channel's calendar.

    The channel's first message (``sync``) only announces it; a channel we no longer
    use, or a connection that needs reauthorization, is acknowledged and ignored.
    """
    data = event.payload
    if data.get("handshake") or not data.get("channel_id"):
        return
    resource_pk = session.scalar(
        select(CalendarResource.id)
        .join(Integration, (Integration.tenant_id == CalendarResource.tenant_id) & (Integration.kind == GOOGLE_KIND))
        .where(CalendarResource.tenant_id == event.tenant_id, CalendarResource.channel_id == data["channel_id"],
               CalendarResource.status == ResourceStatus.ACTIVE, Integration.status == IntegrationStatus.ACTIVE)
    )
    if resource_pk is None:
        log.info("push for a channel no longer in use", channel=data["channel_id"])
        return
    session.execute(update(CalendarResource).where(CalendarResource.id == resource_pk)
                    .values(sync_wanted=CalendarResource.sync_wanted + 1)
                    .execution_options(synchronize_session=False))
    enqueue_after_commit(session, runtime.celery, CALENDAR_SYNC_RESOURCE, str(resource_pk))
