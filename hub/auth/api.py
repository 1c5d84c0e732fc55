"""The token endpoint and the public keys that verify its tokens."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request

from hub.audit import service as audit
from hub.auth.deps import PublicRoute, client_ip, record_failed_auth, request_id
from hub.auth.schemas import TokenResponse
from hub.auth.service import InvalidClient, authenticate_client, issue_token
from hub.deps import DbSession, HubRuntime
from hub.errors import BadRequest, error_responses

router = APIRouter(tags=["auth"])

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="integrations-hub"'}


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        client_id, sep, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed HTTP Basic credentials", headers=_BASIC_CHALLENGE) from None
    if not sep:
        raise InvalidClient("malformed HTTP Basic credentials", headers=_BASIC_CHALLENGE)
    return client_id, secret


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    responses=error_responses(400, 401, 422, 429, 503),
)
def token(
    request: Request,
    session: DbSession,
    runtime: HubRuntime,
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str | None, Form(max_length=128)] = None,
    client_secret: Annotated[str | None, Form(max_length=256)] = None,
    scope: Annotated[str | None, Form(max_length=1000)] = None,
) -> Any:
    """OAuth 2.0 client credentials: trade a client id and secret (form or HTTP
    Basic) for a short-lived access token, optionally narrowed to ``scope``."""
    runtime.rate_limits.check(request.scope, f"token-ip:{client_ip(request)}", runtime.settings.token_rate_limit)
    if grant_type != "client_credentials":
        raise BadRequest("only grant_type=client_credentials is supported", code="unsupported_grant_type")
    basic = _basic_credentials(request)
    if basic:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        record_failed_auth(runtime, request, "no client credentials", client_id)
        raise InvalidClient("client_id and client_secret are required", headers=_BASIC_CHALLENGE)
    try:
        client = authenticate_client(session=session, client_id=client_id, client_secret=client_secret)
    except InvalidClient as exc:
        record_failed_auth(runtime, request, exc.message, client_id)
        exc.headers = _BASIC_CHALLENGE
        raise
    access_token, granted, ttl = issue_token(
        session=session, keyring=runtime.keyring, issuer=runtime.settings.effective_public_url,
        client=client, scope=scope,
    )
    audit.record(session=session, tenant_id=client.tenant_id, actor=f"client:{client.client_id}",
                 action="token.issued", target=client.client_id, ip=client_ip(request),
                 request_id=request_id(request), details={"scope": " ".join(granted)})
    return TokenResponse(access_token=access_token, expires_in=ttl, scope=" ".join(granted))


@router.get("/.well-known/jwks.json", dependencies=[PublicRoute], responses=error_responses(429, 503))
def jwks(session: DbSession, runtime: HubRuntime) -> dict[str, list[dict[str, Any]]]:
    """The public keys (JWK Set) that verify the hub's access tokens."""
    return runtime.keyring.jwks(session)
