"""Google Calendar orchestration: the connect flow, watch channels, two-way sync, and
reminders.

**Connect.** ``start_connect`` signs a ``state`` (an ES256 JWT from the hub's key ring
with its own audience, carrying the tenant id and a nonce, valid 10 minutes) and
keeps the nonce with the PKCE verifier (sealed) in ``google_connect_states``. The
callback verifies the signature, then consumes the nonce with one conditional UPDATE
committed before the code is exchanged: a replayed, expired, tampered or foreign
state is refused, and a state is burnt even when the exchange then fails.

**Channels.** Each mapped calendar has one watch channel. Its id is a route key of
kind ``google_calendar`` (claimed and committed before ``events.watch``, since Google
notifies at once); its token is the integration's ``channel_token``, sealed in the
vault as the integration's webhook secret (one token per connection, checked by the
generic webhook ingress). Channels are renewed a day before they expire (a new
channel first, then the old one stopped), stopped when a calendar is unmapped.

**Sync from Google.** A push notification bumps ``sync_wanted`` on the resource and
enqueues ``sync_resource``. One worker at a time holds a resource's lease; it pulls
changes with the stored sync token (410 → a full resync), page by page, one
transaction per page, and stores the new token at the end. Busy blocks not seen by a
full resync are deleted (generation counter). Events the hub wrote carry the
appointment id in ``extendedProperties.private`` and an id derived from it.

**Conflict policy** (both sides changed the same appointment since they last agreed):
the side whose change is newer wins — Google's event ``updated`` against the
appointment's ``changed_at``; a tie goes to the hub. Changes of fields the hub does
not mirror (colour, attendees) are not conflicts. Every resolution, and every Google
change applied to an appointment, is written to the resource's sync log. The hub's
own writes are recognised (same etag, or the mirrored content unchanged) and never
applied back.

**Pushing to Google.** ``push_appointment`` writes the appointment's current state
(insert with the derived id — a retried insert finds its own event, never a
duplicate —, patch with ``If-Match``, or delete). A 412 means Google changed the event
meanwhile: the conflict policy decides, and the loser's change is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from jose import JWTError, jwt
from pydantic import SecretStr
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError
from connectors.google_calendar import (
    AuthorizationCodeRejected,
    CalendarEvent,
    EventDetails,
    EventNotFound,
    GoogleCalendarConnector,
    GoogleOAuth,
    StaleEtag,
    SyncCheckpoint,
    SyncTokenInvalid,
    uuid_for_event_id,
)
from hub.audit import service as audit
from hub.auth.keys import ALGORITHM, KeyRing
from hub.calendar.models import (
    Appointment,
    AppointmentStatus,
    CalendarResource,
    ChannelStatus,
    GoogleConnectState,
    ResourceStatus,
    SyncState,
)
from hub.calendar.repository import CalendarRepository
from hub.calendar.tokens import (
    GOOGLE_KIND,
    NeedsReauth,
    calendar_connector,
    find_connection,
    get_connection,
    oauth_client,
    open_credentials,
    seal_credentials,
)
from hub.db import transaction, utcnow
from hub.errors import HubError, Unavailable
from hub.queue import CALENDAR_RESUME, CALENDAR_SYNC_RESOURCE, PUSH_APPOINTMENT, enqueue_after_commit, publish
from hub.webhooks.routes import claim_route, release_routes, route_cache
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus, Tenant, TenantStatus
from tenants.repository import IntegrationRepository

if TYPE_CHECKING:
    from hub.runtime import Runtime
    from hub.webhooks.models import WebhookEvent

log = structlog.get_logger("hub.calendar")

STATE_AUDIENCE = "integrations-hub:google-connect"
STATE_TTL = timedelta(minutes=10)
WEBHOOK_PATH = "/webhooks/google_calendar"
APPOINTMENT_PROPERTY = "hub_appointment_id"
CHANNEL_TTL = timedelta(days=7)
RENEW_BEFORE = timedelta(days=1)
SYNC_LEASE = timedelta(minutes=5)
PUSH_LEASE = timedelta(minutes=2)
PAGE_SIZE = 250
# Google-only events that ended before this are not kept as busy time
BUSY_HORIZON = timedelta(days=1)
MAX_ROUNDS = 20


# --- connect ---------------------------------------------------------------------------------


class BadState(Exception):
    """The callback's ``state`` is not one we issued, or no longer valid."""


def sign_state(*, session: Session, keyring: KeyRing, issuer: str, tenant_id: uuid.UUID, nonce: str,
               expires_at: datetime) -> str:
    """The signed ``state`` of one connect flow."""
    key = keyring.signing_key(session)
    now = utcnow()
    claims = {"iss": issuer, "aud": STATE_AUDIENCE, "tid": str(tenant_id), "nonce": nonce,
              "iat": int(now.timestamp()), "exp": int(expires_at.timestamp())}
    return jwt.encode(claims, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})


def read_state(*, session: Session, keyring: KeyRing, issuer: str, state: str) -> tuple[uuid.UUID, str]:
    """(tenant id, nonce) of a state we signed that has not expired; BadState otherwise."""
    try:
        header = jwt.get_unverified_header(state)
    except JWTError:
        raise BadState("malformed state") from None
    if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
        raise BadState("state not signed by this hub")
    key = keyring.verification_key(session, header["kid"])
    if key is None:
        raise BadState("state signed by an unknown key")
    try:
        claims = jwt.decode(state, key, algorithms=[ALGORITHM], audience=STATE_AUDIENCE, issuer=issuer,
                            options={"require_exp": True, "require_iat": True, "require_aud": True,
                                     "require_iss": True})
    except jwt.ExpiredSignatureError:
        raise BadState("state expired") from None
    except JWTError:
        raise BadState("state signature or claims invalid") from None
    if claims["exp"] - claims["iat"] > STATE_TTL.total_seconds() + 5:
        raise BadState("state lives longer than allowed")
    try:
        return uuid.UUID(str(claims["tid"])), str(claims["nonce"])
    except (KeyError, ValueError):
        raise BadState("state lacks its tenant or nonce") from None


def start_connect(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID) -> tuple[str, datetime]:
    """Google's consent URL for the tenant (PKCE S256, single-use signed state) and its deadline."""
    client = oauth_client(runtime)
    now = utcnow()
    expires_at = now + STATE_TTL
    nonce = secrets.token_urlsafe(24)
    state = sign_state(session=session, keyring=runtime.keyring, issuer=runtime.settings.effective_public_url,
                       tenant_id=tenant_id, nonce=nonce, expires_at=expires_at)
    existing = find_connection(session=session, tenant_id=tenant_id)
    hint = existing.config.get("account_email") if existing is not None else None
    url, verifier = GoogleOAuth(client).authorization_url(state, login_hint=hint or None)
    session.execute(GoogleConnectState.__table__.delete().where(
        GoogleConnectState.expires_at < now - timedelta(days=1)))
    session.add(GoogleConnectState(
        nonce=nonce, tenant_id=tenant_id, created_at=now, expires_at=expires_at,
        code_verifier_sealed=runtime.vault.seal(session, tenant_id=tenant_id, context=f"google-connect:{nonce}",
                                                plaintext=verifier),
    ))
    session.flush()
    return url, expires_at


def _consume_state(runtime: Runtime, *, tenant_id: uuid.UUID, nonce: str) -> str | None:
    """The PKCE verifier of an unused, unexpired state, marking it used (committed at once)."""
    now = utcnow()
    with transaction(runtime.session_factory) as session:
        sealed = session.scalar(
            update(GoogleConnectState)
            .where(GoogleConnectState.nonce == nonce, GoogleConnectState.tenant_id == tenant_id,
                   GoogleConnectState.consumed_at.is_(None), GoogleConnectState.expires_at > now)
            .values(consumed_at=now)
            .returning(GoogleConnectState.code_verifier_sealed)
        )
        if sealed is None:
            return None
        return runtime.vault.open_secret(session, tenant_id=tenant_id, context=f"google-connect:{nonce}",
                                         sealed=sealed).decode()


@dataclass(frozen=True)
class ConnectOutcome:
    ok: bool
    status_code: int
    message: str
    account_email: str | None = None


def complete_connect(*, runtime: Runtime, session: Session, state: str | None, code: str | None,
                     error: str | None, ip: str | None = None, request_id: str | None = None) -> ConnectOutcome:
    """Google's redirect back: verify and burn the state, exchange the code, store the tokens."""

    def refused(status: int, message: str, reason: str, tenant_id: uuid.UUID | None = None) -> ConnectOutcome:
        audit.record(session=session, tenant_id=tenant_id, actor="oauth:google", action="integration.connect_refused",
                     target=GOOGLE_KIND, outcome="failure", ip=ip, request_id=request_id, details={"reason": reason})
        log.warning("google connect refused", reason=reason)
        return ConnectOutcome(False, status, message)

    if not state:
        return refused(400, "The link has no state. Start the connection again from your account.", "no state")
    try:
        tenant_id, nonce = read_state(session=session, keyring=runtime.keyring,
                                      issuer=runtime.settings.effective_public_url, state=state)
    except BadState as exc:
        return refused(400, "This link is not valid. Start the connection again from your account.", str(exc))
    verifier = _consume_state(runtime, tenant_id=tenant_id, nonce=nonce)
    if verifier is None:
        return refused(400, "This link was already used or has expired. Start the connection again.",
                       "state already used, expired or unknown", tenant_id)
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or tenant.status != TenantStatus.ACTIVE:
        return refused(400, "This account is not active.", "tenant not active")
    if error:
        return refused(400, f"Google access was not granted ({error[:64]}).", f"google answered {error[:64]}",
                       tenant_id)
    if not code:
        return refused(400, "Google sent no authorization code.", "no code", tenant_id)
    try:
        credentials = GoogleOAuth(oauth_client(runtime)).exchange_code(code, verifier)
    except AuthorizationCodeRejected as exc:
        return refused(400, "Google refused the authorization code. Start the connection again.",
                       f"code rejected: {exc.code}", tenant_id)
    except TransientProviderError as exc:
        return refused(502, "Google is unavailable right now. Start the connection again in a moment.",
                       f"google unavailable: {exc.code or exc.status}", tenant_id)
    except PermanentProviderError as exc:
        return refused(400, f"Google refused the connection: {exc.message}", f"refused: {exc.code}", tenant_id)

    repo = IntegrationRepository(session, tenant_id)
    integration = repo.get(GOOGLE_KIND, for_update=True)
    if integration is None:
        integration = repo.add(Integration(id=uuid.uuid4(), kind=GOOGLE_KIND, config={}, credentials={},
                                           status=IntegrationStatus.PENDING))
    elif integration.credentials.get("channel_token"):
        # keep the channel token: channels opened before still deliver with it
        kept = tenants.open_credentials(session=session, vault=runtime.vault, integration=integration)
        if kept.get("channel_token"):
            credentials = credentials.model_copy(update={"channel_token": SecretStr(kept["channel_token"])})
    seal_credentials(session=session, vault=runtime.vault, integration=integration, credentials=credentials)
    integration.config = {**integration.config, "connected_at": utcnow().isoformat()}
    integration.status = IntegrationStatus.ACTIVE
    integration.last_error = None
    integration.last_error_at = None
    audit.record(session=session, tenant_id=tenant_id, actor="oauth:google", action="integration.google_connected",
                 target=GOOGLE_KIND, ip=ip, request_id=request_id,
                 details={"account_email": credentials.account_email, "scopes": list(credentials.scopes)})
    session.flush()
    enqueue_after_commit(session, runtime.celery, CALENDAR_RESUME, str(tenant_id))
    return ConnectOutcome(True, 200, f"Google Calendar is connected ({credentials.account_email}). "
                                     "You can close this page.", credentials.account_email)


def result_page(outcome: ConnectOutcome) -> str:
    """The plain HTML page the browser lands on."""
    title = "Google Calendar connected" if outcome.ok else "Google Calendar was not connected"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(outcome.message)}</p></body></html>")


@dataclass
class Disconnected:
    revoked: bool
    channels_stopped: int


def disconnect(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID, actor: str, ip: str | None = None,
               request_id: str | None = None) -> Disconnected:
    """Stop every channel, revoke the grant at Google, and forget the tokens.

    Google first (before this transaction writes): a revoke that fails transiently is a
    503 and nothing changes; an already-revoked grant is fine.
    """
    integration = get_connection(session=session, tenant_id=tenant_id)
    repo = CalendarRepository(session, tenant_id)
    resources = [r for r in repo.resources() if r.channel_id]
    stopped, revoked = 0, False
    if integration.status != IntegrationStatus.NEEDS_REAUTH:
        try:
            connector = calendar_connector(runtime, session=session, integration=integration)
            for resource in resources:
                if resource.channel_resource_id:
                    try:
                        stopped += connector.stop_channel(resource.channel_id, resource.channel_resource_id)
                    except ProviderError as exc:  # it expires by itself within a week
                        log.warning("channel not stopped", channel=resource.channel_id, error=exc.message)
        except NeedsReauth:
            pass
    credentials = open_credentials(session=session, vault=runtime.vault, integration=integration)
    try:
        revoked = GoogleOAuth(oauth_client(runtime)).revoke(credentials.refresh_token.get_secret_value())
    except TransientProviderError as exc:
        raise Unavailable("Google could not revoke access right now; retry", code="google_unavailable") from exc
    except PermanentProviderError as exc:
        log.warning("google revoke refused", error=exc.message)
    release_routes(session, integration_id=integration.id)
    for resource in repo.resources():
        if resource.channel_id:
            route_cache(runtime).forget(GOOGLE_KIND, resource.channel_id)
        resource.channel_id = None
        resource.channel_resource_id = None
        resource.channel_expires_at = None
        resource.channel_status = ChannelStatus.NONE
        resource.sync_token = None
        repo.delete_all_busy(resource.id)
    tenants.delete_integration(session=session, tenant_id=tenant_id, kind=GOOGLE_KIND)
    audit.record(session=session, tenant_id=tenant_id, actor=actor, action="integration.google_disconnected",
                 target=GOOGLE_KIND, ip=ip, request_id=request_id,
                 details={"revoked": revoked, "channels_stopped": stopped})
    return Disconnected(revoked, stopped)


# --- resource leases -------------------------------------------------------------------------


def _claim_resource(runtime: Runtime, resource_pk: uuid.UUID) -> bool:
    now = utcnow()
    with transaction(runtime.session_factory) as session:
        return session.execute(
            update(CalendarResource)
            .where(CalendarResource.id == resource_pk,
                   or_(CalendarResource.sync_lease_until.is_(None), CalendarResource.sync_lease_until < now))
            .values(sync_lease_until=now + SYNC_LEASE)
            .execution_options(synchronize_session=False)
        ).rowcount == 1


def _extend_lease(session: Session, resource_pk: uuid.UUID) -> None:
    session.execute(update(CalendarResource).where(CalendarResource.id == resource_pk)
                    .values(sync_lease_until=utcnow() + SYNC_LEASE).execution_options(synchronize_session=False))


def _release_resource(runtime: Runtime, resource_pk: uuid.UUID) -> None:
    with transaction(runtime.session_factory) as session:
        session.execute(update(CalendarResource).where(CalendarResource.id == resource_pk)
                        .values(sync_lease_until=None).execution_options(synchronize_session=False))


@dataclass(frozen=True)
class _ResourceView:
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


# --- sync from Google --------------------------------------------------------------------------


def sync_resource(*, runtime: Runtime, resource_pk: uuid.UUID) -> str:
    """Bring one mapped calendar up to date: open its channel if asked, pull Google's
    changes. Returns ``synced``, ``busy`` (another worker holds it and will redo what
    was asked meanwhile), ``needs_reauth``, ``idle`` or ``failed``."""
    outcome = "idle"
    for _ in range(MAX_ROUNDS):
        if not _claim_resource(runtime, resource_pk):
            return "busy"
        try:
            outcome = _sync_round(runtime, resource_pk)
        finally:
            _release_resource(runtime, resource_pk)
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
        view = _ResourceView(
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
                _open_channel(runtime, view, connector)
        _pull(runtime, view, connector)
    except NeedsReauth:
        return "needs_reauth"
    except _Superseded:
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


class _Superseded(Exception):
    """The resource was remapped or unmapped while a job worked on its old calendar."""


def _current(session: Session, view: _ResourceView, *, lock: bool = False) -> CalendarResource:
    """The resource, if it still maps the calendar the job started with; _Superseded otherwise."""
    resource = session.get(CalendarResource, view.pk, with_for_update=lock)
    if resource is None or resource.status != ResourceStatus.ACTIVE or resource.calendar_id != view.calendar_id:
        raise _Superseded()
    return resource


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


def _pull(runtime: Runtime, view: _ResourceView, connector: GoogleCalendarConnector) -> SyncStats:
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


def _stream(runtime: Runtime, view: _ResourceView, connector: GoogleCalendarConnector, token: str | None, *,
            reason: str) -> SyncStats:
    full = token is None
    stats = SyncStats()
    generation: int | None = None
    if full:
        with transaction(runtime.session_factory) as session:
            resource = _current(session, view)
            resource.sync_generation += 1
            generation = resource.sync_generation
    stream = connector.iter_changes(view.calendar_id, token, page_size=PAGE_SIZE, include_cancelled=full)
    for batch, checkpoint in _chunks(stream, PAGE_SIZE):
        with transaction(runtime.session_factory) as session:
            _current(session, view, lock=True)  # a remap waits for this page, or this page stops
            if batch:
                _apply_batch(runtime, session, view, batch, generation, stats)
            _extend_lease(session, view.pk)
            if checkpoint is not None:
                _finish(session, view, checkpoint, generation, stats, reason, full)
    return stats


def _finish(session: Session, view: _ResourceView, checkpoint: SyncCheckpoint, generation: int | None,
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


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _instant(value: datetime | date | None, zone: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):  # an all-day event: midnight where the calendar is
        value = datetime(value.year, value.month, value.day, tzinfo=_zone(zone))
    return value.astimezone(ZoneInfo("UTC"))


def _apply_batch(runtime: Runtime, session: Session, view: _ResourceView, events: list[CalendarEvent],
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
    start, end = _instant(event.start, zone), _instant(event.end, zone)
    if start is None or end is None or end <= start or end < horizon:
        return None
    return start, end


def _upsert_busy(repo: CalendarRepository, view: _ResourceView, events: list[CalendarEvent], generation: int,
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


# --- mirroring appointments --------------------------------------------------------------------


def google_content(event: CalendarEvent, zone: str) -> dict[str, Any]:
    """The fields the hub mirrors, as Google shows them."""
    if event.cancelled:
        return {"status": AppointmentStatus.CANCELLED.value}
    start, end = _instant(event.start, zone), _instant(event.end, zone)
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


def _remember_google(appointment: Appointment, event: CalendarEvent, digest: str) -> None:
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
        _remember_google(appointment, event, digest)
        return None
    before = ours
    pending = appointment.version > appointment.synced_version
    if not pending:
        action = _take_google(appointment, theirs, event)
        _remember_google(appointment, event, digest)
        repo.log(appointment.resource_pk, action, appointment_id=appointment.id, google_event_id=event.id,
                 details={"before": before, "after": local_content(appointment),
                          "google_updated": _iso(event.updated)})
        return action
    google_changed_at = event.updated or utcnow()
    details = {"local_changed_at": _iso(appointment.changed_at), "google_updated": _iso(event.updated),
               "local": ours, "google": theirs, "policy": "the newer change wins"}
    if google_changed_at > appointment.changed_at:
        _take_google(appointment, theirs, event)
        _remember_google(appointment, event, digest)
        repo.log(appointment.resource_pk, "conflict.google_won", appointment_id=appointment.id,
                 google_event_id=event.id, details=details)
        return "conflict.google_won"
    _remember_google(appointment, event, digest)  # our next write goes over this version
    repo.log(appointment.resource_pk, "conflict.local_won", appointment_id=appointment.id,
             google_event_id=event.id, details=details)
    if enqueue:
        enqueue_after_commit(session, runtime.celery, PUSH_APPOINTMENT, str(appointment.id))
    return "conflict.local_won"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- pushing appointments to Google -----------------------------------------------------------


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
        summary=appointment.title, start=appointment.start_at.astimezone(_zone(appointment.time_zone)),
        end=appointment.end_at.astimezone(_zone(appointment.time_zone)), time_zone=appointment.time_zone,
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
            _remember_google(appointment, event, content_hash(google_content(event, view.zone)))
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


# --- channels --------------------------------------------------------------------------------


def webhook_address(runtime: Runtime) -> str:
    """Where Google delivers push notifications."""
    return runtime.settings.effective_public_url + WEBHOOK_PATH


def _open_channel(runtime: Runtime, view: _ResourceView, connector: GoogleCalendarConnector) -> None:
    """Open a new channel (route first: Google notifies at once), then retire the old one."""
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
            resource = _current(session, view, lock=True)
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
                details={"expires_at": _iso(channel.expiration)})
    except _Superseded:
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


def _active_resources(session: Session) -> Any:
    return (select(CalendarResource)
            .join(Integration, (Integration.tenant_id == CalendarResource.tenant_id)
                  & (Integration.kind == GOOGLE_KIND))
            .where(CalendarResource.status == ResourceStatus.ACTIVE, Integration.status == IntegrationStatus.ACTIVE))


def renew_channels(*, runtime: Runtime, within: timedelta = RENEW_BEFORE, limit: int = 500) -> int:
    """Beat: ask for a new channel where the current one expires within ``within``, is
    missing, or failed; returns how many resources were queued."""
    now = utcnow()
    with transaction(runtime.session_factory) as session:
        resources = list(session.scalars(_active_resources(session).where(or_(
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
    """Nightly: an incremental sync of every mapped calendar (catches pushes Google never
    sent) and another try for appointments still waiting to reach Google."""
    with transaction(runtime.session_factory) as session:
        resources = list(session.scalars(_active_resources(session)))
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


# --- reminders ----------------------------------------------------------------------------------

REMINDER_TEMPLATE = "appointment-reminder"


class ReminderNotSent(Exception):
    """The reminder cannot be sent (no address, template data missing …); recorded, not retried."""


def send_due_reminders(*, runtime: Runtime, limit: int = 100) -> int:
    """Beat: send each due reminder at most once; returns how many were claimed.

    A reminder is claimed (``reminded_at`` set by a conditional UPDATE) and committed
    before it is handed to messaging, so concurrent beats never both send it; a worker
    dying between the two loses that reminder rather than sending it twice. A send the
    messaging pipeline refuses (no Twilio integration, bad number …) is recorded in
    ``reminder_error``, not retried.
    """
    now = utcnow()
    with runtime.session_factory() as session:
        due = list(session.scalars(
            select(Appointment.id).where(
                Appointment.status == AppointmentStatus.CONFIRMED, Appointment.reminded_at.is_(None),
                Appointment.remind_at <= now, Appointment.start_at > now,
            ).order_by(Appointment.remind_at).limit(limit)
        ))
    claimed = 0
    for appointment_id in due:
        with transaction(runtime.session_factory) as session:
            won = session.execute(
                update(Appointment)
                .where(Appointment.id == appointment_id, Appointment.reminded_at.is_(None),
                       Appointment.status == AppointmentStatus.CONFIRMED, Appointment.remind_at <= now)
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount == 1
        if not won:
            continue
        claimed += 1
        error: str | None = None
        sent: tuple[uuid.UUID, str] | None = None
        try:
            with transaction(runtime.session_factory) as session:
                appointment = session.get(Appointment, appointment_id)
                assert appointment is not None
                sent = _send_reminder(runtime, session, appointment)
                appointment.reminder_message_id, appointment.reminder_channel = sent
                appointment.reminder_error = None
        except (ReminderNotSent, HubError, ValueError) as exc:
            error = str(getattr(exc, "message", exc))[:1000]
            log.warning("appointment reminder not sent", appointment_id=str(appointment_id),
                        error=type(exc).__name__)
        if error is not None:
            with transaction(runtime.session_factory) as session:
                session.execute(update(Appointment).where(Appointment.id == appointment_id)
                                .values(reminder_error=error).execution_options(synchronize_session=False))
    return claimed


def _send_reminder(runtime: Runtime, session: Session, appointment: Appointment) -> tuple[uuid.UUID, str]:
    from hub.messaging.schemas import MessageCreate
    from hub.messaging.service import send_message

    channel = appointment.reminder_channel or ("whatsapp" if appointment.contact_phone else "email")
    if channel == "email":
        raise ReminderNotSent("e-mail reminders are not available yet; give the contact a phone number")
    if not appointment.contact_phone:
        raise ReminderNotSent(f"the contact has no phone number for a {channel} reminder")
    resource = session.get(CalendarResource, appointment.resource_pk)
    assert resource is not None
    data = {"customer_name": appointment.contact_name, "service_name": appointment.title,
            "appointment_at": appointment.start_at.isoformat(), "location": appointment.location or resource.name}
    # by template, like every notification: the tenant's own text, its WhatsApp template
    # outside the 24-hour window, and the next channel when this one cannot take it
    queued = send_message(
        session=session, runtime=runtime, tenant_id=appointment.tenant_id,
        message_in=MessageCreate(channel=channel, to=appointment.contact_phone, template=REMINDER_TEMPLATE,
                                 data=data, fallback=True),
        idempotency_key=f"{REMINDER_TEMPLATE}:{appointment.id}:{appointment.remind_at.isoformat()}"
        if appointment.remind_at else None,
    )
    return queued.message.id, channel
