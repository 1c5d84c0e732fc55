"""A tenant's Google connection: the sealed tokens, and access tokens refreshed by one
worker or request at a time per connection, through the OAuth client the connection
was made with (``hub.calendar.clients``).

Refreshing takes a lock on the connection: on PostgreSQL ``SELECT … FOR UPDATE`` of
the integration row (with ``lock_timeout``, so a stuck holder fails the waiters
instead of blocking them forever; a holder that dies loses its lock with its
connection), on SQLite an in-process lock per integration (the embedded default is one
process). Whoever waited re-reads the stored token and uses it when it is not the one
that failed and has enough life left, so 20 callers with one expired token make one
refresh call. ``invalid_grant`` marks the integration ``needs_reauth``, records
``last_error`` and an audit event, and every later call fails fast until the tenant
connects again.

Tokens are refreshed when less than ``REFRESH_MARGIN`` (60 s) of life is left. The
connector is handed the token without its expiry so that google-auth does not refresh
on its own schedule (3 min 45 s before expiry); a 401 still goes through our lock.

Refreshing reads and writes on connections of its own, outside the pool: the callers
waiting for it hold pooled connections. SQLite caveat for callers: a caller must not
hold a write transaction of its own while it calls Google (the refresh would wait for
it). Services here call Google first and write afterwards.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from connectors.google_calendar import (
    AccessToken,
    GoogleCalendarConnector,
    GoogleCalendarCredentials,
    GoogleOAuth,
    GrantRevoked,
)
from hub.audit import service as audit
from hub.calendar.clients import GOOGLE_KIND, connection_client
from hub.db import is_postgres, make_engine, make_session_factory, utcnow
from hub.errors import Conflict, NotFound, Unavailable
from hub.metrics import TOKEN_REFRESH, observe_provider_call
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus
from tenants.repository import IntegrationRepository
from tenants.vault import Vault

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.calendar.tokens")

ACCOUNT_ROUTE_KIND = "google_account"  # route key: the account e-mail; one tenant per Google account
REFRESH_MARGIN = timedelta(seconds=60)
# google-auth refuses a token handed back by a refresh handler with less than 3 min 45 s left
GOOGLE_AUTH_MARGIN = timedelta(minutes=4)
LOCK_TIMEOUT_SECONDS = 10.0
PROVIDER_TIMEOUT_SECONDS = 10.0
# sealed in the vault, one field each; account and scopes are not secret and live in config
SECRET_FIELDS = ("refresh_token", "access_token", "expiry", "channel_token")


class NeedsReauth(Conflict):
    """Google refused the stored grant: the tenant must connect Google again."""

    code = "google_needs_reauth"

    def __init__(self, message: str = "Google access was revoked or expired; connect again with "
                                      "POST /v1/integrations/google/connect") -> None:
        super().__init__(message)


class NotConnected(NotFound):
    code = "google_not_connected"

    def __init__(self) -> None:
        super().__init__("Google Calendar is not connected; start with POST /v1/integrations/google/connect")


# --- what the vault keeps -----------------------------------------------------------------


def get_connection(*, session: Session, tenant_id: uuid.UUID, for_update: bool = False) -> Integration:
    """The tenant's google_calendar integration, or NotConnected."""
    integration = IntegrationRepository(session, tenant_id).get(GOOGLE_KIND, for_update=for_update)
    if integration is None:
        raise NotConnected()
    return integration


def find_connection(*, session: Session, tenant_id: uuid.UUID) -> Integration | None:
    """The tenant's google_calendar integration, if any."""
    return IntegrationRepository(session, tenant_id).get(GOOGLE_KIND)


def seal_credentials(*, session: Session, vault: Vault, integration: Integration,
                     credentials: GoogleCalendarCredentials) -> None:
    """Store ``credentials`` on the integration: tokens sealed, account and scopes in config."""
    values = {
        "refresh_token": credentials.refresh_token.get_secret_value(),
        "access_token": credentials.access_token.get_secret_value() if credentials.access_token else "",
        "expiry": credentials.expiry.isoformat() if credentials.expiry else "",
        "channel_token": credentials.channel_token.get_secret_value(),
    }
    integration.credentials = {
        name: vault.seal_field(session, tenant_id=integration.tenant_id, integration_id=integration.id,
                               field_name=name, value=value)
        for name, value in values.items()
    }
    integration.config = {**integration.config, "account_email": credentials.account_email,
                          "scopes": list(credentials.scopes)}


def open_credentials(*, session: Session, vault: Vault, integration: Integration) -> GoogleCalendarCredentials:
    """The connection's credentials in clear. Never log or return them."""
    values = tenants.open_credentials(session=session, vault=vault, integration=integration)
    if not values.get("refresh_token"):
        raise NotConnected()
    scopes: Any = integration.config.get("scopes") or []
    if isinstance(scopes, str):
        scopes = json.loads(scopes)
    return GoogleCalendarCredentials(
        account_email=integration.config.get("account_email") or "",
        refresh_token=SecretStr(values["refresh_token"]),
        access_token=SecretStr(values["access_token"]) if values.get("access_token") else None,
        expiry=datetime.fromisoformat(values["expiry"]) if values.get("expiry") else None,
        scopes=list(scopes),
        channel_token=SecretStr(values.get("channel_token") or ""),
    )


def _life_left(credentials: GoogleCalendarCredentials) -> timedelta:
    if credentials.access_token is None or credentials.expiry is None:
        return timedelta(0)
    return credentials.expiry - utcnow()


# --- refreshing, one at a time ----------------------------------------------------------

_locks_guard = threading.Lock()


def _token_sessions(runtime: Runtime) -> sessionmaker[Session]:
    """Sessions on connections of their own (no pool): callers wait for a refresh while
    holding pooled connections, so the refresh must never wait for one of those."""
    with _locks_guard:
        factory = runtime.caches.get("google_token_sessions")
        if factory is None:
            engine = make_engine(runtime.settings.effective_database_url, poolclass=NullPool)
            factory = runtime.caches["google_token_sessions"] = make_session_factory(
                engine, info=runtime.session_factory.kw.get("info"))
        return factory


def _process_lock(runtime: Runtime, integration_id: uuid.UUID) -> threading.Lock:
    with _locks_guard:
        locks: dict[uuid.UUID, threading.Lock] = runtime.caches.setdefault("google_token_locks", {})
        return locks.setdefault(integration_id, threading.Lock())


def mark_needs_reauth(*, session: Session, integration: Integration, reason: str) -> None:
    """The grant is gone: flag the integration, say why, and audit it (caller commits)."""
    if integration.status == IntegrationStatus.NEEDS_REAUTH:
        return
    tenants.mark_integration_error(session=session, integration=integration,
                                   error=f"Google refused the grant ({reason}); connect Google again",
                                   status=IntegrationStatus.NEEDS_REAUTH)
    audit.record(session=session, tenant_id=integration.tenant_id, actor="system:google",
                 action="integration.needs_reauth", target=GOOGLE_KIND, outcome="failure",
                 details={"reason": reason[:200]})
    log.warning("google grant refused; integration needs reauth", tenant_id=str(integration.tenant_id))


def access_token(runtime: Runtime, *, integration_id: uuid.UUID, stale: str | None = None,
                 min_life: timedelta = REFRESH_MARGIN, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> AccessToken:
    """A stored access token with at least ``min_life`` left that is not ``stale``,
    refreshing it under the connection's lock when needed."""
    process_lock = None if is_postgres(runtime.engine) else _process_lock(runtime, integration_id)
    if process_lock is not None and not process_lock.acquire(timeout=lock_timeout):
        raise Unavailable("another worker is refreshing this Google connection; retry", code="google_token_busy")
    try:
        with _token_sessions(runtime)() as session:
            try:
                token = _fresh_token(runtime, session, integration_id, stale, min_life, lock_timeout)
                session.commit()
                return token
            except NeedsReauth:
                session.commit()  # keeps the needs_reauth mark and its audit row
                raise
            except BaseException:
                session.rollback()
                raise
    finally:
        if process_lock is not None:
            process_lock.release()


def _fresh_token(runtime: Runtime, session: Session, integration_id: uuid.UUID, stale: str | None,
                 min_life: timedelta, lock_timeout: float) -> AccessToken:
    query = select(Integration).where(Integration.id == integration_id, Integration.kind == GOOGLE_KIND)
    if is_postgres(session):
        session.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'"))
        query = query.with_for_update()
    try:
        integration = session.scalar(query.execution_options(populate_existing=True))
    except OperationalError as exc:  # lock_timeout: the holder is stuck
        raise Unavailable("timed out waiting for another refresh of this Google connection; retry",
                          code="google_token_busy") from exc
    if integration is None:
        raise NotConnected()
    if integration.status == IntegrationStatus.NEEDS_REAUTH:
        raise NeedsReauth()
    credentials = open_credentials(session=session, vault=runtime.vault, integration=integration)
    current = credentials.access_token.get_secret_value() if credentials.access_token else None
    if current is not None and current != stale and _life_left(credentials) > min_life:
        assert credentials.expiry is not None
        return AccessToken(current, credentials.expiry)  # someone refreshed while we waited
    began = time.perf_counter()
    try:
        client = connection_client(runtime, session=session, integration=integration)
        fresh = GoogleOAuth(client, timeout=PROVIDER_TIMEOUT_SECONDS).refresh(
            credentials.refresh_token.get_secret_value())
    except GrantRevoked as exc:
        TOKEN_REFRESH.labels(GOOGLE_KIND, "revoked").inc()
        observe_provider_call(GOOGLE_KIND, "token_refresh", time.perf_counter() - began, failed=True)
        mark_needs_reauth(session=session, integration=integration, reason=exc.code or "invalid_grant")
        raise NeedsReauth() from exc
    except Exception:
        TOKEN_REFRESH.labels(GOOGLE_KIND, "failed").inc()
        observe_provider_call(GOOGLE_KIND, "token_refresh", time.perf_counter() - began, failed=True)
        raise
    TOKEN_REFRESH.labels(GOOGLE_KIND, "refreshed").inc()
    observe_provider_call(GOOGLE_KIND, "token_refresh", time.perf_counter() - began, failed=False)
    seal_credentials(session=session, vault=runtime.vault, integration=integration,
                     credentials=credentials.model_copy(update={"access_token": SecretStr(fresh.token),
                                                                "expiry": fresh.expiry}))
    session.flush()
    log.info("google access token refreshed", integration_id=str(integration_id))
    return fresh


def calendar_connector(runtime: Runtime, *, session: Session, integration: Integration) -> GoogleCalendarConnector:
    """A connector for one call or task, holding a token with at least a minute left.

    Call it, and make its Google calls, before writing in ``session`` (see the module note).
    """
    if integration.status == IntegrationStatus.NEEDS_REAUTH:
        raise NeedsReauth()
    credentials = open_credentials(session=session, vault=runtime.vault, integration=integration)
    if _life_left(credentials) <= REFRESH_MARGIN:
        token = access_token(runtime, integration_id=integration.id)
        credentials = credentials.model_copy(update={"access_token": SecretStr(token.token), "expiry": token.expiry})
    integration_id = integration.id

    def refresher(stale: str | None) -> AccessToken:
        return access_token(runtime, integration_id=integration_id, stale=stale, min_life=GOOGLE_AUTH_MARGIN)

    return GoogleCalendarConnector(
        credentials=credentials.model_copy(update={"expiry": None}),
        oauth_client=connection_client(runtime, session=session, integration=integration),
        token_refresher=refresher,
        timeout=PROVIDER_TIMEOUT_SECONDS,
    )
