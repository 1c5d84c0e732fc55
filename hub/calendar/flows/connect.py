"""Connecting and disconnecting a tenant's Google account.

``start_connect`` signs a ``state`` (an ES256 JWT from the hub's key ring with its own
audience, carrying the tenant id and a nonce, valid 10 minutes) and keeps the nonce
with the PKCE verifier (sealed) in ``google_connect_states``; the tenant gets a start
link on the hub, not Google's URL. **The flow is bound to a browser**: the first browser
to open the start link gets a cookie (HttpOnly, SameSite=Lax, scoped to
``/oauth/google``, one per flow) whose SHA-256 the flow keeps, and is sent on to Google;
the link then works no more. The callback verifies the state's signature, consumes the
nonce with one conditional UPDATE committed before the code is exchanged (a replayed,
expired, tampered or foreign state is refused, and a state is burnt even when the
exchange then fails), and refuses a browser without the flow's cookie: a consent URL
approved elsewhere, by another person's Google account, connects nothing.

The account approved must be the one the tenant named, if it named one (it is also
sent to Google as ``login_hint``), and one Google account belongs to one tenant: the
account's e-mail is a route (kind ``google_account``) of the tenant's integration,
released on disconnect. A refused account's tokens are dropped, not revoked (revoking
would also end that account's grant to the tenant it does belong to).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import structlog
from jose import JWTError, jwt
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError
from connectors.google_calendar import AuthorizationCodeRejected, GoogleCalendarCredentials, GoogleOAuth
from hub.audit import service as audit
from hub.auth.keys import ALGORITHM, KeyRing
from hub.calendar.clients import client_by_id, connection_client, flow_client
from hub.calendar.models import ChannelStatus, GoogleConnectState
from hub.calendar.repository import CalendarRepository
from hub.calendar.tokens import (
    ACCOUNT_ROUTE_KIND,
    GOOGLE_KIND,
    NeedsReauth,
    calendar_connector,
    find_connection,
    get_connection,
    open_credentials,
    seal_credentials,
)
from hub.db import transaction, utcnow
from hub.errors import Conflict, Unavailable
from hub.queue import CALENDAR_RESUME, enqueue_after_commit
from hub.webhooks.models import Route
from hub.webhooks.routes import claim_route, release_routes, route_cache, routes_of
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus, Tenant, TenantStatus
from tenants.repository import IntegrationRepository

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.calendar")


STATE_AUDIENCE = "integrations-hub:google-connect"
STATE_TTL = timedelta(minutes=10)
START_PATH = "/oauth/google/start"
COOKIE_PATH = "/oauth/google"
COOKIE_PREFIX = "hub-google-connect-"


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


def start_connect(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID,
                  account_email: str | None = None) -> tuple[str, datetime]:
    """The hub's start link of a new connect flow for the tenant, and its deadline.

    The link works once: the browser that opens it first is bound to the flow (a
    cookie) and sent to Google's consent page (PKCE S256, a single-use signed state,
    ``login_hint`` when the tenant names the account or reconnects one)."""
    client, tenant_client_id = flow_client(runtime, session=session, tenant_id=tenant_id)
    now = utcnow()
    expires_at = now + STATE_TTL
    nonce = secrets.token_urlsafe(24)
    state = sign_state(session=session, keyring=runtime.keyring, issuer=runtime.settings.effective_public_url,
                       tenant_id=tenant_id, nonce=nonce, expires_at=expires_at)
    existing = find_connection(session=session, tenant_id=tenant_id)
    hint = account_email or (existing.config.get("account_email") if existing is not None else None)
    url, verifier = GoogleOAuth(client).authorization_url(state, login_hint=hint or None)
    session.execute(GoogleConnectState.__table__.delete().where(
        GoogleConnectState.expires_at < now - timedelta(days=1)))
    session.add(GoogleConnectState(
        nonce=nonce, tenant_id=tenant_id, created_at=now, expires_at=expires_at, authorization_url=url,
        account_hint=account_email, oauth_client_id=tenant_client_id,
        code_verifier_sealed=runtime.vault.seal(session, tenant_id=tenant_id, context=f"google-connect:{nonce}",
                                                plaintext=verifier),
    ))
    session.flush()
    return f"{runtime.settings.effective_public_url}{START_PATH}?{urlencode({'flow': nonce})}", expires_at


def browser_cookie(runtime: Runtime, nonce: str) -> str:
    """The name of the cookie that binds a browser to one flow (one per flow, so two
    flows in one browser do not undo each other)."""
    return ("__Secure-" if runtime.settings.public_url_is_https else "") + COOKIE_PREFIX + nonce


@dataclass(frozen=True)
class BrowserBinding:
    """What the start link answers: Google's consent URL, and the cookie to set."""

    authorization_url: str
    cookie_name: str
    cookie_value: str
    max_age: int
    secure: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def open_connect_flow(*, runtime: Runtime, session: Session, flow: str, ip: str | None = None,
                      request_id: str | None = None) -> BrowserBinding | None:
    """Bind a started flow to the browser that opens its start link first; None when the
    link was opened already, has expired, or is unknown."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    opened = session.execute(
        update(GoogleConnectState)
        .where(GoogleConnectState.nonce == flow, GoogleConnectState.opened_at.is_(None),
               GoogleConnectState.consumed_at.is_(None), GoogleConnectState.expires_at > now,
               GoogleConnectState.authorization_url.is_not(None))
        .values(opened_at=now, browser_digest=_digest(secret))
        .returning(GoogleConnectState.tenant_id, GoogleConnectState.authorization_url, GoogleConnectState.expires_at)
    ).one_or_none()
    if opened is None:
        log.warning("google connect link refused", reason="opened already, expired or unknown")
        return None
    tenant_id, url, expires_at = opened
    audit.record(session=session, tenant_id=tenant_id, actor="oauth:google", action="integration.google_connect_opened",
                 target=GOOGLE_KIND, ip=ip, request_id=request_id, details={})
    return BrowserBinding(url, browser_cookie(runtime, flow), secret,
                          max(1, int((expires_at - now).total_seconds())), runtime.settings.public_url_is_https)


@dataclass(frozen=True)
class _Flow:
    verifier: str
    browser_digest: str | None
    account_hint: str | None
    oauth_client_id: str | None


def _consume_state(runtime: Runtime, *, tenant_id: uuid.UUID, nonce: str) -> _Flow | None:
    """The flow of an unused, unexpired state, marking it used (committed at once)."""
    now = utcnow()
    with transaction(runtime.session_factory) as session:
        row = session.execute(
            update(GoogleConnectState)
            .where(GoogleConnectState.nonce == nonce, GoogleConnectState.tenant_id == tenant_id,
                   GoogleConnectState.consumed_at.is_(None), GoogleConnectState.expires_at > now)
            .values(consumed_at=now)
            .returning(GoogleConnectState.code_verifier_sealed, GoogleConnectState.browser_digest,
                       GoogleConnectState.account_hint, GoogleConnectState.oauth_client_id)
        ).one_or_none()
        if row is None:
            return None
        verifier = runtime.vault.open_secret(session, tenant_id=tenant_id, context=f"google-connect:{nonce}",
                                             sealed=row.code_verifier_sealed).decode()
        return _Flow(verifier, row.browser_digest, row.account_hint, row.oauth_client_id)


@dataclass(frozen=True)
class ConnectOutcome:
    ok: bool
    status_code: int
    message: str
    account_email: str | None = None
    # the flow's browser cookie, to clear once the callback has used it
    cookie_name: str | None = None


def complete_connect(*, runtime: Runtime, session: Session, state: str | None, code: str | None,
                     error: str | None, cookies: Mapping[str, str] | None = None, ip: str | None = None,
                     request_id: str | None = None) -> ConnectOutcome:
    """Google's redirect back: verify and burn the state, check the browser is the one
    that opened the flow, exchange the code, check the account, store the tokens."""
    cookie_name: str | None = None

    def refused(status: int, message: str, reason: str, tenant_id: uuid.UUID | None = None) -> ConnectOutcome:
        audit.record(session=session, tenant_id=tenant_id, actor="oauth:google", action="integration.connect_refused",
                     target=GOOGLE_KIND, outcome="failure", ip=ip, request_id=request_id, details={"reason": reason})
        log.warning("google connect refused", reason=reason)
        return ConnectOutcome(False, status, message, cookie_name=cookie_name)

    if not state:
        return refused(400, "The link has no state. Start the connection again from your account.", "no state")
    try:
        tenant_id, nonce = read_state(session=session, keyring=runtime.keyring,
                                      issuer=runtime.settings.effective_public_url, state=state)
    except BadState as exc:
        return refused(400, "This link is not valid. Start the connection again from your account.", str(exc))
    cookie_name = browser_cookie(runtime, nonce)
    flow = _consume_state(runtime, tenant_id=tenant_id, nonce=nonce)
    if flow is None:
        return refused(400, "This link was already used or has expired. Start the connection again.",
                       "state already used, expired or unknown", tenant_id)
    secret = (cookies or {}).get(cookie_name)
    if flow.browser_digest is None or secret is None or not hmac.compare_digest(flow.browser_digest,
                                                                                 _digest(secret)):
        # approved in a browser other than the one that opened the flow: whoever approved
        # must not have their account connected to a tenant they did not start from
        return refused(400, "This connection was started in another browser, so it was not completed. Open the "
                            "connect link from your account in this browser and approve there.",
                       "browser not bound to the flow", tenant_id)
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or tenant.status != TenantStatus.ACTIVE:
        return refused(400, "This account is not active.", "tenant not active")
    if error:
        return refused(400, f"Google access was not granted ({error[:64]}).", f"google answered {error[:64]}",
                       tenant_id)
    if not code:
        return refused(400, "Google sent no authorization code.", "no code", tenant_id)
    client = client_by_id(runtime, session=session, tenant_id=tenant_id, client_id=flow.oauth_client_id)
    if client is None:
        return refused(400, "The account's Google OAuth client changed during the connection. Start again.",
                       "oauth client changed", tenant_id)
    try:
        credentials = GoogleOAuth(client).exchange_code(code, flow.verifier)
    except AuthorizationCodeRejected as exc:
        return refused(400, "Google refused the authorization code. Start the connection again.",
                       f"code rejected: {exc.code}", tenant_id)
    except TransientProviderError as exc:
        return refused(502, "Google is unavailable right now. Start the connection again in a moment.",
                       f"google unavailable: {exc.code or exc.status}", tenant_id)
    except PermanentProviderError as exc:
        return refused(400, f"Google refused the connection: {exc.message}", f"refused: {exc.code}", tenant_id)
    account = credentials.account_email.strip().lower()
    if flow.account_hint and account != flow.account_hint.lower():
        return refused(400, f"Google account {account} was approved, but this connection was started for "
                            f"{flow.account_hint}. Start again and choose {flow.account_hint}.",
                       "another account than the one named", tenant_id)
    try:
        with session.begin_nested():
            integration = _store_connection(runtime, session, tenant_id, account, credentials, flow.oauth_client_id)
    except Conflict:
        # one Google account belongs to one tenant: its calendars are not shared across clinics
        return refused(409, "This Google account is already connected to another account of the hub. Disconnect "
                            "it there first, or connect another Google account.",
                       "account connected to another tenant", tenant_id)
    audit.record(session=session, tenant_id=tenant_id, actor="oauth:google", action="integration.google_connected",
                 target=GOOGLE_KIND, ip=ip, request_id=request_id,
                 details={"account_email": account, "scopes": list(credentials.scopes),
                          "oauth_client": flow.oauth_client_id or "platform"})
    session.flush()
    enqueue_after_commit(session, runtime.celery, CALENDAR_RESUME, str(integration.tenant_id))
    return ConnectOutcome(True, 200, f"Google Calendar is connected: {account} for {tenant.name}. "
                                     "You can close this page.", account, cookie_name)


def _store_connection(runtime: Runtime, session: Session, tenant_id: uuid.UUID, account: str,
                      credentials: GoogleCalendarCredentials, oauth_client_id: str | None) -> Integration:
    """Seal the tokens on the tenant's integration and claim the account for it (Conflict
    when another tenant's integration holds the account)."""
    owner = session.scalar(select(Route).where(Route.kind == ACCOUNT_ROUTE_KIND, Route.route_key == account))
    if owner is not None and owner.tenant_id != tenant_id:
        raise Conflict("account taken", code="route_taken")
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
    previous = [r.route_key for r in routes_of(session, integration_id=integration.id)
                if r.kind == ACCOUNT_ROUTE_KIND and r.route_key != account]
    if previous:
        release_routes(session, integration_id=integration.id, route_keys=previous)
    claim_route(session, kind=ACCOUNT_ROUTE_KIND, route_key=account, integration=integration)
    seal_credentials(session=session, vault=runtime.vault, integration=integration,
                     credentials=credentials.model_copy(update={"account_email": account}))
    integration.config = {**integration.config, "connected_at": utcnow().isoformat(),
                          "oauth_client_id": oauth_client_id}
    integration.status = IntegrationStatus.ACTIVE
    integration.last_error = None
    integration.last_error_at = None
    return integration


# Every HTML page of the flow: nothing to cache (the strict page headers, nothing to
# load, frame or leak, come with every HTML answer: hub.security_headers)
PAGE_HEADERS = {"Cache-Control": "no-store"}


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
    client = connection_client(runtime, session=session, integration=integration)
    try:
        revoked = GoogleOAuth(client).revoke(credentials.refresh_token.get_secret_value())
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
