"""The inbound path: store verified provider events, hand them to workers in
batches, and handle them.

1. ``receive_webhook`` (the hot path: one INSERT per event when the route and the
   secret are cached): the connector names the route keys, the route table names
   the tenant, the tenant's secret verifies the signature, the parsed events are
   stored once per ``(integration_id, provider_event_id)``. No broker and no provider is
   touched before the answer.
2. ``dispatch_pending_events`` (the relay): claims stored events nobody has taken,
   or whose worker died, and publishes one task per chunk of ids.
3. ``handle_events`` (the worker): each event in its own transaction, skipped once
   ``handled_at`` is set; a failure is recorded and retried with backoff.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection, String, bindparam, exists, select, update
from sqlalchemy.orm import Session

from connectors.base import (
    CALENDAR_CHANGED,
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
    Connector,
    InboundEvent,
    WebhookRequest,
)
from connectors.registry import UnknownConnector
from hub.contacts.consent import on_delivery_refused
from hub.contacts.service import on_inbound_message, whatsapp_sender_address
from hub.db import is_postgres, new_id, utcnow
from hub.errors import BadRequest, Forbidden, NotFound
from hub.heartbeat import KeepAlive
from hub.messaging.channels import fall_back_after_callback
from hub.messaging.inbound import PROVIDER_STATUSES, apply_status, record_inbound_message
from hub.metrics import WEBHOOK_DISPATCH_LAG
from hub.queue import HANDLE_EVENTS, publish
from hub.webhooks.models import WebhookEvent
from hub.webhooks.routes import RouteTarget, resolve
from tenants.models import Integration
from tenants.vault import VaultError

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.webhooks")

# long: the insert's guard refuses a cached secret as soon as the stored one changes
SECRET_CACHE_SECONDS = 300.0
DISPATCH_BATCH = 500  # events claimed per relay pass
TASK_CHUNK = 50  # event ids per published task
# a dispatched event still unhandled after this long lost its worker (the worker
# handling a task's events renews their dispatched_at every EVENT_HEARTBEAT meanwhile)
REDISPATCH_AFTER = timedelta(seconds=45)
EVENT_HEARTBEAT = REDISPATCH_AFTER / 3
# a failing event is tried again after 1 s, 2 s, 4 s … at most this long
RETRY_CAP = timedelta(minutes=5)
MAX_ATTEMPTS = 10
LAST_ERROR_CHARS = 1000


@dataclass(frozen=True)
class Receipt:
    """What one webhook delivery stored."""

    tenant_id: uuid.UUID
    stored: int
    duplicates: int


# --- the hot path -------------------------------------------------------------------
#
# A webhook costs one INSERT when the route and the secret are cached: the insert
# itself checks that the integration still holds the sealed secret the signature was
# verified with, so a cached secret is never trusted once the token changed.


@dataclass(frozen=True)
class OpenedSecret:
    sealed: str  # the value in the vault the secret was opened from
    secret: str
    expires: float


class SecretCache:
    """Opened webhook secrets per process, per integration, for a short time, each
    with the sealed value it came from (see ``receive_webhook`` for why that is enough
    to never serve a changed secret)."""

    def __init__(self, ttl: float = SECRET_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[uuid.UUID, OpenedSecret] = {}
        self._lock = threading.Lock()

    def get(self, integration_id: uuid.UUID) -> OpenedSecret | None:
        entry = self._entries.get(integration_id)
        return entry if entry is not None and entry.expires > time.monotonic() else None

    def put(self, integration_id: uuid.UUID, sealed: str, secret: str) -> OpenedSecret:
        entry = OpenedSecret(sealed, secret, time.monotonic() + self.ttl)
        with self._lock:
            if len(self._entries) > 50_000:
                self._entries.clear()
            self._entries[integration_id] = entry
        return entry

    def forget(self, integration_id: uuid.UUID) -> None:
        self._entries.pop(integration_id, None)


def secret_cache(runtime: Runtime) -> SecretCache:
    return runtime.caches.setdefault("webhook_secrets", SecretCache())


def connector_class(runtime: Runtime, kind: str) -> type[Connector]:
    """The connector registered for ``kind``, or NotFound."""
    try:
        return runtime.registry.get(kind)
    except UnknownConnector:
        raise NotFound(f"no webhooks for {kind!r}", code="unknown_kind") from None


def _open_secret(runtime: Runtime, conn: Connection, *, connector: type[Connector],
                 target: RouteTarget) -> OpenedSecret | None:
    """Read the integration's sealed webhook secret, open it and cache it."""
    field = connector.webhook_secret_field
    if not field:
        return None
    credentials = conn.execute(
        select(Integration.credentials).where(
            Integration.id == target.integration_id, Integration.tenant_id == target.tenant_id
        )
    ).scalar()
    sealed = (credentials or {}).get(field)
    if not sealed:
        return None
    try:
        with Session(bind=conn) as session:  # the vault reads the tenant's data key
            secret = runtime.vault.open_field(session, tenant_id=target.tenant_id,
                                              integration_id=target.integration_id, field_name=field, sealed=sealed)
    except VaultError as exc:
        log.warning("webhook secret does not open", kind=connector.kind, tenant_id=str(target.tenant_id),
                    integration_id=str(target.integration_id), reason=type(exc).__name__)
        return None
    return secret_cache(runtime).put(target.integration_id, sealed, secret)


def verified_secret(runtime: Runtime, conn: Connection, *, connector: type[Connector], target: RouteTarget,
                     request: WebhookRequest, refresh: bool = False) -> OpenedSecret | None:
    """The secret that verifies ``request``; a cached one that does not is re-read once
    (the token may just have changed)."""
    cached = None if refresh else secret_cache(runtime).get(target.integration_id)
    if cached is not None and connector.verify(request, cached.secret):
        return cached
    opened = _open_secret(runtime, conn, connector=connector, target=target)
    if opened is not None and (cached is None or opened.sealed != cached.sealed) \
            and connector.verify(request, opened.secret):
        return opened
    return None


_EVENT_COLUMNS = ("id", "kind", "provider_event_id", "type", "tenant_id", "integration_id", "payload",
                  "received_at", "attempts")
_insert_statements: dict[tuple[str, str], Any] = {}


def _parsed(connector: Any, request: WebhookRequest, kind: str) -> list[InboundEvent]:
    """The webhook's normalized events; a body the connector cannot read is a 400."""
    try:
        return connector.parse(request)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"unreadable {kind} webhook: {type(exc).__name__}", code="malformed_webhook") from None


def _guarded_insert(dialect: str, field: str) -> Any:
    """INSERT … SELECT … WHERE the integration still holds the sealed secret, ON CONFLICT
    (integration_id, provider_event_id) DO NOTHING RETURNING id: built once per backend and field."""
    key = (dialect, field)
    if key not in _insert_statements:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        columns = WebhookEvent.__table__.c
        integrations = Integration.__table__.c
        values = select(*[bindparam(name, type_=columns[name].type).label(name) for name in _EVENT_COLUMNS]).where(
            exists().where(
                integrations.id == bindparam("guard_integration_id", type_=integrations.id.type),
                integrations.tenant_id == bindparam("guard_tenant_id", type_=integrations.tenant_id.type),
                integrations.credentials[field].as_string() == bindparam("guard_sealed", type_=String()),
            )
        )
        _insert_statements[key] = (
            insert(WebhookEvent).from_select(list(_EVENT_COLUMNS), values)
            .on_conflict_do_nothing(index_elements=["integration_id", "provider_event_id"])
            .returning(WebhookEvent.id)
        )
    return _insert_statements[key]


def _stored_already(conn: Connection, integration_id: uuid.UUID, provider_event_id: str) -> bool:
    return conn.execute(
        select(WebhookEvent.id).where(WebhookEvent.integration_id == integration_id,
                                      WebhookEvent.provider_event_id == provider_event_id)
    ).first() is not None


def _masked(key: str) -> str:
    # route keys are our own numbers and account ids: enough shows to find them
    return key if len(key) <= 8 else f"{key[:4]}…{key[-4:]}"


def route_keys_of(connector: type[Connector], request: WebhookRequest) -> list[str]:
    """The connector's route keys; an unreadable request names no route."""
    try:
        return connector.route_keys(request)
    except (ValueError, KeyError, TypeError):
        return []


def log_unknown_route(kind: str, route_keys: list[str]) -> None:
    log.warning("webhook for an unknown route", kind=kind, route_keys=[_masked(k) for k in route_keys])


def log_rejected(kind: str, target: RouteTarget, reason: str = "signature") -> None:
    log.warning("webhook signature rejected", kind=kind, tenant_id=str(target.tenant_id),
                route_key=_masked(target.route_key), reason=reason)


def receive_webhook(*, runtime: Runtime, kind: str, request: WebhookRequest) -> Receipt:
    """Route, verify and store one provider webhook; NotFound / Forbidden otherwise.

    Each event is one insert-or-ignore statement (its own short transaction: events
    are independent, and a repeat of a half-stored delivery stores the rest).
    """
    connector = connector_class(runtime, kind)
    route_keys = route_keys_of(connector, request)
    if connector.routes_per_event and len(route_keys) > 1:
        return receive_batched_webhook(runtime=runtime, kind=kind, connector=connector, request=request,
                                       route_keys=route_keys)
    with runtime.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        target = resolve(runtime, conn, kind=kind, route_keys=route_keys) if route_keys else None
        if target is None:
            log_unknown_route(kind, route_keys)
            raise NotFound("no integration receives this webhook", code="unknown_route")
        opened = verified_secret(runtime, conn, connector=connector, target=target, request=request)
        if opened is None:
            log_rejected(kind, target)
            raise Forbidden("the webhook's signature does not verify", code="invalid_signature")
        events = _parsed(connector, request, kind)
        statement = _guarded_insert(conn.dialect.name, connector.webhook_secret_field or "")
        now = utcnow()
        stored = duplicates = 0
        for event in events:
            values = {
                "id": new_id(), "kind": kind, "provider_event_id": event.provider_event_id[:255], "type": event.type,
                "tenant_id": target.tenant_id, "integration_id": target.integration_id, "payload": event.data,
                "received_at": now, "attempts": 0, "guard_integration_id": target.integration_id,
                "guard_tenant_id": target.tenant_id,
            }
            for attempt in (1, 2):
                if conn.execute(statement, {**values, "guard_sealed": opened.sealed}).first() is not None:
                    stored += 1
                    break
                if _stored_already(conn, target.integration_id, values["provider_event_id"]):
                    duplicates += 1
                    break
                # the integration's secret changed since it was verified: verify again with the new one
                secret_cache(runtime).forget(target.integration_id)
                opened = verified_secret(runtime, conn, connector=connector, target=target, request=request,
                                          refresh=True) if attempt == 1 else None
                if opened is None:
                    log_rejected(kind, target, reason="secret changed")
                    raise Forbidden("the webhook's signature does not verify", code="invalid_signature")
    return Receipt(tenant_id=target.tenant_id, stored=stored, duplicates=duplicates)


def receive_batched_webhook(*, runtime: Runtime, kind: str, connector: type[Connector], request: WebhookRequest,
                            route_keys: list[str]) -> Receipt:
    """One POST batching events of several route keys (Meta: several phone numbers, maybe
    of several tenants): each event is stored for the tenant its own key names.

    The body must verify with the secret of EVERY tenant it names, or nothing is stored:
    a tenant's secret must never carry events into another tenant's inbox (Meta signs a
    whole delivery with one app's secret, so a genuine batch verifies for all of them).
    Events of numbers no integration owns are dropped (logged), never given to another.
    The rare path: it reads through the synchronous connection on both backends.
    """
    with runtime.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        targets: dict[str, RouteTarget] = {}
        for key in route_keys:
            target = resolve(runtime, conn, kind=kind, route_keys=[key])
            if target is not None:
                targets[key] = target
        unknown = [key for key in route_keys if key not in targets]
        if unknown:
            log_unknown_route(kind, unknown)
        if not targets:
            raise NotFound("no integration receives this webhook", code="unknown_route")
        opened: dict[uuid.UUID, OpenedSecret] = {}
        for target in targets.values():
            if target.integration_id in opened:
                continue
            secret = verified_secret(runtime, conn, connector=connector, target=target, request=request)
            if secret is None:
                log_rejected(kind, target)
                raise Forbidden("the webhook's signature does not verify", code="invalid_signature")
            opened[target.integration_id] = secret
        events = _parsed(connector, request, kind)
        statement = _guarded_insert(conn.dialect.name, connector.webhook_secret_field or "")
        now = utcnow()
        stored = duplicates = 0
        for event in events:
            key = connector.event_route_key(event)
            target = targets.get(key) if key else None
            if target is None:
                continue  # its number has no route (logged above): dropped, never mis-routed
            values = {
                "id": new_id(), "kind": kind, "provider_event_id": event.provider_event_id[:255], "type": event.type,
                "tenant_id": target.tenant_id, "integration_id": target.integration_id, "payload": event.data,
                "received_at": now, "attempts": 0, "guard_integration_id": target.integration_id,
                "guard_tenant_id": target.tenant_id, "guard_sealed": opened[target.integration_id].sealed,
            }
            if conn.execute(statement, values).first() is not None:
                stored += 1
            elif _stored_already(conn, target.integration_id, values["provider_event_id"]):
                duplicates += 1
            else:
                # the secret changed since it was verified: Meta retries, and the retry verifies afresh
                secret_cache(runtime).forget(target.integration_id)
                log_rejected(kind, target, reason="secret changed")
                raise Forbidden("the webhook's signature does not verify", code="invalid_signature")
    first = next(iter(targets.values()))
    return Receipt(tenant_id=first.tenant_id, stored=stored, duplicates=duplicates)


# --- the relay: hand stored events to workers ------------------------------------------


def dispatch_pending_events(*, runtime: Runtime, limit: int = DISPATCH_BATCH) -> int:
    """Publish stored events nobody has taken (or whose worker died); returns how many."""
    now = utcnow()
    # two queues, each an index range scan (see the model's partial indexes): events
    # never handed out, oldest first; then those whose worker has not finished them
    # within REDISPATCH_AFTER (it died, or its retry backoff is over)
    fresh = (select(WebhookEvent.id)
             .where(WebhookEvent.handled_at.is_(None), WebhookEvent.dispatched_at.is_(None),
                    WebhookEvent.attempts < MAX_ATTEMPTS)
             .order_by(WebhookEvent.received_at))
    stale = (select(WebhookEvent.id)
             .where(WebhookEvent.handled_at.is_(None), WebhookEvent.dispatched_at < now - REDISPATCH_AFTER,
                    WebhookEvent.attempts < MAX_ATTEMPTS)
             .order_by(WebhookEvent.dispatched_at))
    with runtime.session_factory() as session:
        ids: list[uuid.UUID] = []
        for pending in (fresh, stale):
            if len(ids) >= limit:
                break
            pending = pending.limit(limit - len(ids))
            if is_postgres(session):
                # concurrent relays (every API process runs one) claim disjoint batches
                pending = pending.with_for_update(skip_locked=True)
            # One UPDATE … RETURNING claims the batch: on SQLite it runs under the write lock.
            claimed = session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id.in_(pending.scalar_subquery()))
                .values(dispatched_at=now)
                .returning(WebhookEvent.id, WebhookEvent.received_at)
                .execution_options(synchronize_session=False)
            ).all()
            ids += [row.id for row in claimed]
            for row in claimed:
                received = row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC)
                WEBHOOK_DISPATCH_LAG.observe(max(0.0, (now - received).total_seconds()))
        session.commit()
        if not ids:
            return 0
        handed = 0
        for start in range(0, len(ids), TASK_CHUNK):
            chunk = ids[start:start + TASK_CHUNK]
            if not publish(runtime.celery, HANDLE_EVENTS, [str(i) for i in chunk]):
                # broker down: release what was not sent so the next pass retries it
                unsent = ids[start:]
                session.execute(
                    update(WebhookEvent)
                    .where(WebhookEvent.id.in_(unsent), WebhookEvent.dispatched_at == now,
                           WebhookEvent.handled_at.is_(None))
                    .values(dispatched_at=None)
                    .execution_options(synchronize_session=False)
                )
                session.commit()
                break
            handed += len(chunk)
    return handed


# --- the worker: handle events ----------------------------------------------------------

Handler = Callable[["Runtime", Session, WebhookEvent], None]


def _twilio_message_received(runtime: Runtime, session: Session, event: WebhookEvent) -> None:
    data = event.payload
    message = record_inbound_message(
        session=session, tenant_id=event.tenant_id, integration_id=event.integration_id,
        channel=data["channel"], from_address=data["from"], to_address=data.get("to") or "",
        body=data.get("body") or "", media=data.get("media") or [],
        provider_message_id=data.get("message_sid") or event.provider_event_id, received_at=event.received_at,
    )
    on_inbound_message(session=session, runtime=runtime, tenant_id=event.tenant_id, message=message)


class MessageNotYetKnown(Exception):
    """A status callback that arrived before the sender recorded the provider's id."""


# A provider may call back before the delivery worker has committed the message's
# provider id; such a callback is retried (with the usual backoff) for this long
# before it is taken as one for a message the hub never sent.
STATUS_GRACE = timedelta(minutes=2)


def _apply_status_event(session: Session, event: WebhookEvent, *, provider_message_id: str, status: str,
                        error_code: str | None, error_message: str | None, runtime: Runtime | None = None) -> None:
    message = apply_status(session=session, tenant_id=event.tenant_id, integration_id=event.integration_id,
                           provider_message_id=provider_message_id,
                           status=status, error_code=error_code, error_message=error_message, at=event.received_at)
    if message is None and status in PROVIDER_STATUSES and utcnow() - event.received_at < STATUS_GRACE:
        raise MessageNotYetKnown(f"no outbound message {provider_message_id} yet")
    if message is not None and runtime is not None:
        on_delivery_refused(session=session, tenant_id=event.tenant_id, channel=message.channel,
                            to=message.to_address, error_code=message.error_code)  # 21610: carrier STOP
        # failed or undelivered after the provider accepted it: the next channel takes over
        fall_back_after_callback(session, runtime, message)


def _twilio_message_status(runtime: Runtime, session: Session, event: WebhookEvent) -> None:
    data = event.payload
    _apply_status_event(session, event, provider_message_id=data["message_sid"], status=data["status"],
                        error_code=data.get("error_code"), error_message=data.get("error_message"),
                        runtime=runtime)


def _whatsapp_cloud_message_received(runtime: Runtime, session: Session, event: WebhookEvent) -> None:
    data = event.payload
    media = data.get("media")
    user_id = data.get("from_user_id")  # the BSUID; "from" (the phone) is absent for a username user
    sender = whatsapp_sender_address(session, event.tenant_id, data.get("from"), user_id)
    message = record_inbound_message(
        session=session, tenant_id=event.tenant_id, integration_id=event.integration_id,
        # the business number the customer wrote to. ``phone_number_id`` is Meta's id for
        # it, digits that may well parse as somebody's phone number: never an address
        channel="whatsapp", from_address=sender, to_address=data.get("display_phone_number") or "",
        body=data.get("body") or "",
        media=[{"url": None, "content_type": media.get("mime_type"), "id": media.get("id")}] if media else [],
        provider_message_id=data.get("message_id") or event.provider_event_id, received_at=event.received_at,
    )
    on_inbound_message(session=session, runtime=runtime, tenant_id=event.tenant_id, message=message,
                       whatsapp_user_id=user_id)


def _whatsapp_cloud_message_status(runtime: Runtime, session: Session, event: WebhookEvent) -> None:
    data = event.payload
    # Meta's title is terse ("Re-engagement message"); its details say what to do
    first = (data.get("errors") or [{}])[0]
    details = first.get("details") or first.get("message")
    title = data.get("error_title")
    error_message = f"{title}: {details}" if title and details and details != title else (title or details)
    _apply_status_event(session, event, provider_message_id=data["message_id"], status=data["status"],
                        error_code=data.get("error_code"), error_message=error_message, runtime=runtime)


# (kind, event type) -> handler. A type a connector declares without a handler here is
# acknowledged and ignored on purpose; one it does not declare is a bug (see below).
def _google_calendar_changed(runtime: Runtime, session: Session, event: WebhookEvent) -> None:
    from hub.calendar.flows import on_calendar_changed  # the calendar feature builds on this one

    on_calendar_changed(runtime=runtime, session=session, event=event)


EVENT_HANDLERS: dict[tuple[str, str], Handler] = {
    ("google_calendar", CALENDAR_CHANGED): _google_calendar_changed,
    ("twilio", MESSAGE_RECEIVED): _twilio_message_received,
    ("twilio", MESSAGE_STATUS): _twilio_message_status,
    ("whatsapp_cloud", MESSAGE_RECEIVED): _whatsapp_cloud_message_received,
    ("whatsapp_cloud", MESSAGE_STATUS): _whatsapp_cloud_message_status,
}


class UndeclaredEventType(Exception):
    """A stored event whose type its connector does not declare (STYLE.md rule 8)."""


def _retry_delay(attempts: int) -> timedelta:
    """Backoff before an event that failed ``attempts`` times is dispatched again."""
    return min(timedelta(seconds=2 ** (attempts - 1)), RETRY_CAP)


def handle_events(*, runtime: Runtime, event_ids: list[uuid.UUID],
                  heartbeat: timedelta = EVENT_HEARTBEAT) -> None:
    """Handle each event in its own transaction (a failure spoils none of the others),
    renewing the dispatch of those still waiting their turn meanwhile, so a long task is
    not handed out again while a killed worker's events are, after REDISPATCH_AFTER."""
    waiting = list(event_ids)

    def renew() -> None:
        with runtime.session_factory() as session:
            renew_dispatch(session, event_ids=list(waiting), now=utcnow())
            session.commit()

    with KeepAlive(renew, every=heartbeat.total_seconds(), name="hub-events"):
        while waiting:
            # the event in hand is not renewed: on PostgreSQL its row is locked, and a
            # failure's backoff must stand
            handle_event(runtime=runtime, event_id=waiting.pop(0))


def renew_dispatch(session: Session, *, event_ids: list[uuid.UUID], now: datetime) -> int:
    """A live worker's heartbeat: these dispatched, unhandled events are still in hand."""
    if not event_ids:
        return 0
    return session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_(event_ids), WebhookEvent.handled_at.is_(None),
               WebhookEvent.dispatched_at.is_not(None))
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount or 0


def handle_event(*, runtime: Runtime, event_id: uuid.UUID) -> str:
    """Handle one stored event once: ``handled``, ``ignored``, ``skipped`` or ``failed``."""
    with runtime.session_factory() as session:
        query = select(WebhookEvent).where(WebhookEvent.id == event_id)
        if is_postgres(session):
            # a slow worker and a re-dispatched one never handle the same event together
            query = query.with_for_update(skip_locked=True)
        event = session.scalar(query)
        if event is None or event.handled_at is not None or event.attempts >= MAX_ATTEMPTS:
            return "skipped"
        kind, event_type = event.kind, event.type
        try:
            outcome = _run_handler(runtime, session, event)
            event.handled_at = utcnow()
            session.commit()
            return outcome
        except Exception as exc:  # any handler failure is recorded on the event and retried
            session.rollback()
            _record_failure(session, event_id=event_id, kind=kind, event_type=event_type, error=exc)
            return "failed"


def _run_handler(runtime: Runtime, session: Session, event: WebhookEvent) -> str:
    declared = runtime.registry.get(event.kind).event_types if event.kind in runtime.registry else frozenset()
    if event.type not in declared:
        raise UndeclaredEventType(f"connector {event.kind!r} does not declare event type {event.type!r}")
    handler = EVENT_HANDLERS.get((event.kind, event.type))
    if handler is None:
        log.info("webhook event ignored on purpose", kind=event.kind, type=event.type, event_id=str(event.id))
        return "ignored"
    handler(runtime, session, event)
    return "handled"


def _record_failure(session: Session, *, event_id: uuid.UUID, kind: str, event_type: str,
                    error: Exception) -> None:
    event = session.get(WebhookEvent, event_id, populate_existing=True)
    if event is None or event.handled_at is not None:
        return
    event.attempts += 1
    event.last_error = f"{type(error).__name__}: {error}"[:LAST_ERROR_CHARS]
    # dispatched_at is set back so the relay's "worker died" rule re-dispatches the
    # event after a backoff (1 s, 2 s, 4 s … up to RETRY_CAP) instead of at once
    event.dispatched_at = utcnow() - REDISPATCH_AFTER + _retry_delay(event.attempts)
    attempts = event.attempts
    session.commit()
    if attempts >= MAX_ATTEMPTS:
        log.error("webhook event abandoned after repeated failures", kind=kind, type=event_type,
                  event_id=str(event_id), attempts=attempts, error=type(error).__name__)
    else:
        log.warning("webhook event failed; it will be retried", kind=kind, type=event_type,
                    event_id=str(event_id), attempts=attempts, error=type(error).__name__)
