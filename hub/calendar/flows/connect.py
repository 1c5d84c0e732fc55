"""Connecting and disconnecting a tenant's Google account.

``start_connect`` signs a ``state`` (an ES256 JWT from the hub's key ring with its own
audience, carrying the tenant id and a nonce, valid 10 minutes) and keeps the nonce
with the PKCE verifier (sealed) in ``google_connect_states``. The callback verifies the
signature, then consumes the nonce with one conditional UPDATE committed before the code
is exchanged: a replayed, expired, tampered or foreign state is refused, and a state is
burnt even when the exchange then fails.
"""

from __future__ import annotations

import html
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from jose import JWTError, jwt
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError
from connectors.google_calendar import AuthorizationCodeRejected, GoogleOAuth
from hub.audit import service as audit
from hub.auth.keys import ALGORITHM, KeyRing
from hub.calendar.models import ChannelStatus, GoogleConnectState
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
from hub.errors import Unavailable
from hub.queue import CALENDAR_RESUME, enqueue_after_commit
from hub.webhooks.routes import release_routes, route_cache
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus, Tenant, TenantStatus
from tenants.repository import IntegrationRepository

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.calendar")


STATE_AUDIENCE = "integrations-hub:google-connect"
STATE_TTL = timedelta(minutes=10)


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
