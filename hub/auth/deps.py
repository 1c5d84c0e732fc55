"""Authentication, scopes, per-tenant limits and the per-request audit row, as
``Annotated`` dependencies. The tenant always comes from the token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.audit import service as audit
from hub.auth.scopes import PLATFORM_ADMIN
from hub.auth.service import InsufficientScope, InvalidToken, Principal, verify_token
from hub.deps import DbSession, get_runtime
from hub.errors import Forbidden, RateLimited, Unavailable
from hub.runtime import Runtime
from tenants.models import Tenant
from tenants.plans import PLANS

log = structlog.get_logger("hub.auth")
_bearer = HTTPBearer(auto_error=False, description="an access token from POST /oauth/token")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


AUDIT_WINDOW_SECONDS = 60


def record_failed_auth(runtime: Runtime, request: Request, reason: str, client_id: str | None = None) -> None:
    """Audit a failed authentication, once per client address per minute: the first
    failure of the minute is written (with the count of the minute before), the later
    ones only counted, so a flood of bad tokens cannot grow the audit chain. The row
    is written in its own transaction (nothing else commits)."""
    ip = client_ip(request)
    try:
        seen, previous = runtime.rate_limits.count_in_window(f"auth-failed:{ip}", AUDIT_WINDOW_SECONDS)
    except Unavailable:  # storage unreachable: every failure is audited rather than none
        log.warning("auth failure counter unreachable; auditing this failure on its own")
        seen, previous = 1, None
    if seen > 1:
        return
    details: dict[str, object] = {"reason": reason, "window_seconds": AUDIT_WINDOW_SECONDS}
    if previous:
        details["failures_previous_window"] = previous
    with runtime.session_factory() as session, session.begin():
        audit.record(session=session, tenant_id=None, actor=f"client:{client_id}" if client_id else "anonymous",
                     action="auth.failed", target=request.url.path, outcome="failure", ip=ip,
                     request_id=request_id(request), details=details)


def _failure_bucket(request: Request) -> str:
    return f"auth-fail-ip:{client_ip(request)}"


def refuse_if_failing(runtime: Runtime, request: Request) -> None:
    """429 for an address past its failed-authentication limit, before its token is
    even looked at (the refusal is counted, not audited)."""
    state = runtime.rate_limits.peek(_failure_bucket(request), runtime.settings.auth_failure_rate_limit)
    if not state.allowed:
        # counted for the next audit row's tally (peek above reached the same storage)
        runtime.rate_limits.count_in_window(f"auth-failed:{client_ip(request)}", AUDIT_WINDOW_SECONDS)
        raise RateLimited(
            f"too many failed authentications from this address; retry in {state.retry_after()} s",
            headers={"Retry-After": str(state.retry_after()), **state.headers()},
        )


def authentication_failed(runtime: Runtime, request: Request, exc: InvalidToken) -> InvalidToken:
    """Count a failed bearer authentication against its address and audit it (aggregated)."""
    runtime.rate_limits.hit(_failure_bucket(request), runtime.settings.auth_failure_rate_limit)
    record_failed_auth(runtime, request, exc.message)
    return exc


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def verify_bearer(runtime: Runtime, request: Request, session, token: str | None) -> Principal:
    """The principal of a bearer ``token``: 429 for an address past its failure limit,
    401 invalid_token (counted and audited) for a missing or bad token."""
    refuse_if_failing(runtime, request)
    if token is None:
        raise authentication_failed(runtime, request, InvalidToken("missing bearer token"))
    try:
        return verify_token(session=session, keyring=runtime.keyring,
                            issuer=runtime.settings.effective_public_url, token=token)
    except InvalidToken as exc:
        session.rollback()
        raise authentication_failed(runtime, request, exc) from None


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", request.url.path)


def _tenant_limit(session, tenant_id: uuid.UUID) -> int:
    tenant = session.get(Tenant, tenant_id)
    if tenant is not None and tenant.rate_limit_per_minute:
        return tenant.rate_limit_per_minute
    plan = PLANS.get(tenant.plan if tenant else "", PLANS["free"])
    return plan.requests_per_minute


def authenticate(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Iterator[Principal]:
    """Verify the bearer token, count the request against its tenant's limit, and
    audit the request with its outcome once the route has run."""
    runtime: Runtime = get_runtime(request)
    # a request with a body had its token checked before the body was read (hub.auth.perimeter)
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:
        token = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else None
        principal = verify_bearer(runtime, request, session, token or None)
    structlog.contextvars.bind_contextvars(tenant_id=str(principal.tenant_id) if principal.tenant_id else None,
                                           client_id=principal.client_id)
    if principal.tenant_id is not None:
        bucket, per_minute = f"tenant:{principal.tenant_id}", _tenant_limit(session, principal.tenant_id)
    else:
        bucket, per_minute = f"client:{principal.client_id}", runtime.settings.platform_rate_limit
    runtime.rate_limits.check(request.scope, bucket, per_minute)

    started = time.perf_counter()

    def audit_request(target_session, status: int) -> None:
        audit.record(
            session=target_session, tenant_id=principal.tenant_id, actor=principal.actor, action="api.request",
            target=_route_template(request), outcome="success" if status < 400 else "failure",
            ip=client_ip(request), request_id=request_id(request),
            details={"method": request.method, "route": _route_template(request), "status": status,
                     "latency_ms": round((time.perf_counter() - started) * 1000, 2)},
        )

    try:
        yield principal
    except Exception as exc:
        # the route's own writes roll back; the audit row is written on its own
        session.rollback()
        status = 422 if isinstance(exc, RequestValidationError) else getattr(exc, "status_code", 500)
        with runtime.session_factory() as audit_session, audit_session.begin():
            audit_request(audit_session, status)
        raise
    else:
        # same transaction as the route's writes: if this row cannot be written,
        # nothing the route did is committed
        route = request.scope.get("route")
        audit_request(session, getattr(route, "status_code", None) or 200)


Authenticated = Annotated[Principal, Depends(authenticate, scope="function")]


class RequireScope:
    """``Depends(RequireScope("messages:write"))``: 403 insufficient_scope otherwise."""

    def __init__(self, scope: str | None) -> None:
        self.scope = scope

    def __call__(self, principal: Authenticated) -> Principal:
        if self.scope is not None and self.scope not in principal.scopes:
            raise InsufficientScope(self.scope)
        return principal


def require(scope: str):
    return Annotated[Principal, Depends(RequireScope(scope))]


class TenantScope(RequireScope):
    """A tenant's principal with ``scope``: the route acts on the token's tenant only."""

    def __call__(self, principal: Authenticated) -> Principal:
        if principal.tenant_id is None:
            raise Forbidden("this call needs a tenant's token", code="tenant_token_required")
        return super().__call__(principal)


def tenant_with(scope: str | None):
    """``Annotated[Principal, …]`` for a tenant route needing ``scope``."""
    return Annotated[Principal, Depends(TenantScope(scope))]


PlatformAdmin = require(PLATFORM_ADMIN)


def limit_by_ip(request: Request) -> None:
    """Per-IP limit for unauthenticated routes."""
    runtime: Runtime = get_runtime(request)
    runtime.rate_limits.check(request.scope, f"ip:{client_ip(request)}", runtime.settings.public_rate_limit)


PublicRoute = Depends(limit_by_ip)
