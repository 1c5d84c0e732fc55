"""``GET /v1/events/stream``: the tenant's events as Server-Sent Events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import JWTError, jwt
from starlette.background import BackgroundTask

from hub.auth.deps import TenantScope, authenticate
from hub.auth.service import Principal
from hub.deps import DbSession, get_runtime
from hub.errors import AUTHENTICATED_ERRORS, Invalid
from hub.events.bus import event_bus
from hub.events.ids import event_ids
from hub.events.models import EVENT_TYPES
from hub.events.service import latest_event_id
from hub.events.stream import EventStreamResponse, StreamRequest, event_stream
from hub.runtime import Runtime

router = APIRouter(prefix="/v1/events", tags=["events"])

_bearer = HTTPBearer(auto_error=False, description="an access token from POST /oauth/token")


def stream_credentials(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[str | None, Query(
        description="the access token, for browsers' EventSource, which cannot set headers; the Authorization "
                    "header wins when both are given. Never logged.")] = None,
) -> HTTPAuthorizationCredentials | None:
    if bearer is not None:
        return bearer
    if access_token:
        return HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    return None


def authenticate_stream(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(stream_credentials)],
) -> Iterator[Principal]:
    """The usual authentication (limits, audit), with the token also accepted from the
    query; notes when the token expires, since the stream must end then."""
    request.state.token_expires_at = _expiry(credentials.credentials) if credentials else None
    yield from authenticate(request, session, credentials)


def _expiry(token: str) -> datetime | None:
    # read only once authenticate() has verified the token (it raises otherwise)
    try:
        exp = jwt.get_unverified_claims(token).get("exp")
        return datetime.fromtimestamp(int(exp), UTC)
    except (JWTError, TypeError, ValueError, OverflowError):
        return None


def _reader(principal: Annotated[Principal, Depends(authenticate_stream, scope="function")]) -> Principal:
    return TenantScope("messages:read")(principal)


StreamReader = Annotated[Principal, Depends(_reader)]


def _types(raw: str | None) -> tuple[str, ...] | None:
    if not raw:
        return None
    types = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise Invalid(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
                      code="unknown_event_type")
    return types or None


def _latest_event_id(runtime: Runtime, tenant_id: uuid.UUID) -> int:
    with runtime.session_factory() as session:
        return latest_event_id(session=session, tenant_id=tenant_id)


def _last_event_id(runtime: Runtime, tenant_id: uuid.UUID, header: str | None, query: str | None) -> int | None:
    """The log sequence to replay after: the id the client last saw, ``0`` for the whole
    retained log, or None (from now)."""
    value = header.strip() if header is not None and header.strip() else query
    if value is None:
        return None
    if value.strip() == "0":
        return 0
    return event_ids(runtime).sequence(tenant_id, value)


# errors leave as JSON, not as the route's text/event-stream: spelled out without
# ``model`` so FastAPI does not file them under the route's media type
_JSON_ERRORS = {status: {"description": spec["description"], "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for status, spec in AUTHENTICATED_ERRORS.items()}


@router.get(
    "/stream",
    response_class=EventStreamResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "an endless text/event-stream"}, **_JSON_ERRORS},
)
async def stream_events(
    request: Request,
    principal: StreamReader,
    types: Annotated[str | None, Query(description="comma-separated event types to receive "
                                                   f"({', '.join(EVENT_TYPES)}); default all")] = None,
    last_event_id: Annotated[str | None, Query(max_length=64, description="replay events after this id (as the "
                                             "Last-Event-ID header does); 0 replays the whole retained log")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> EventStreamResponse:
    """The tenant's real-time events as Server-Sent Events: `message.received`,
    `message.status`, `conversation.updated`. Each event carries `id:` (opaque, this
    tenant's only), `event:` and `data:` (JSON `{id, type, created_at, data}`); a comment
    line is sent as heartbeat.
    Reconnecting with `Last-Event-ID` (or `?last_event_id=`) first replays every
    event after that id from the log (kept `HUB_EVENTS_RETENTION_DAYS`), then goes
    on live with no gap and no duplicate. The stream ends when the token expires.
    Needs `messages:read`; browsers may pass the token as `?access_token=`."""
    runtime = get_runtime(request)
    wanted = _types(types)
    tenant_id: uuid.UUID = principal.tenant_id  # type: ignore[assignment]  # TenantScope checked it
    after = _last_event_id(runtime, tenant_id, last_event_id_header, last_event_id)
    if after is None:
        # "from now" is fixed before the client sees the 200: whatever commits after it answers is sent
        after = await anyio.to_thread.run_sync(_latest_event_id, runtime, tenant_id)
    slot = event_bus(runtime).reserve_stream(tenant_id)
    stream = event_stream(runtime, StreamRequest(tenant_id=tenant_id, types=wanted, after=after,
                                                 expires_at=request.state.token_expires_at), slot)
    return EventStreamResponse(
        stream, background=BackgroundTask(slot.release),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # no proxy may buffer it
    )
