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
from hub.errors import Forbidden
from hub.runtime import Runtime
from tenants.models import Tenant
from tenants.plans import PLANS

log = structlog.get_logger("hub.auth")
_bearer = HTTPBearer(auto_error=False, description="an access token from POST /oauth/token")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def record_failed_auth(runtime: Runtime, request: Request, reason: str, client_id: str | None = None) -> None:
    """Failed authentications are audited in their own transaction (nothing else commits)."""
    with runtime.session_factory() as session, session.begin():
        audit.record(session=session, tenant_id=None, actor=f"client:{client_id}" if client_id else "anonymous",
                     action="auth.failed", target=request.url.path, outcome="failure", ip=client_ip(request),
                     request_id=request_id(request), details={"reason": reason})


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
    if credentials is None or credentials.scheme.lower() != "bearer":
        record_failed_auth(runtime, request, "missing bearer token")
        raise InvalidToken("missing bearer token")
    try:
        principal = verify_token(session=session, keyring=runtime.keyring,
                                 issuer=runtime.settings.effective_public_url, token=credentials.credentials)
    except InvalidToken as exc:
        session.rollback()
        record_failed_auth(runtime, request, exc.message)
        raise
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
