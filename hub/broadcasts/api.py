"""Broadcasts: one template to many recipients at the tenant's send rate. The tenant is the token's."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi import status as http

from hub.auth.deps import tenant_with
from hub.broadcasts import service
from hub.broadcasts.schemas import BroadcastCreate, BroadcastPage, BroadcastRead
from hub.broadcasts.service import BroadcastView
from hub.deps import DbSession, HubRuntime
from hub.errors import AUTHENTICATED_ERRORS, error_responses
from hub.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1/broadcasts", tags=["broadcasts"], responses=AUTHENTICATED_ERRORS)

IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=255,
    description="repeat a request safely: the same key and body return the first answer "
                "(with Idempotent-Replay: true); a key still in progress is a 409; another body, a 422",
)]


def _read(view: BroadcastView) -> BroadcastRead:
    b = view.broadcast
    return BroadcastRead(id=b.id, status=view.status, template=b.template, channel=b.channel, rate=b.rate,
                         total=b.total, duplicates=b.duplicates, counts=view.counts, send_at=b.send_at,
                         started_at=b.started_at, canceled_at=b.canceled_at, created_at=b.created_at,
                         updated_at=view.updated_at or b.updated_at)


# up to 10,000 recipients, each with its own template data: more than the API's 1 MiB default
MAX_BROADCAST_BODY_BYTES = 16 * 1024 * 1024


@router.post("", status_code=http.HTTP_202_ACCEPTED, response_model=BroadcastRead, responses=error_responses(409),
             max_body_size=MAX_BROADCAST_BODY_BYTES)
def create_broadcast(broadcast_in: BroadcastCreate, response: Response, session: DbSession, runtime: HubRuntime,
                     principal: tenant_with("messages:write"),
                     idempotency_key: IdempotencyKey = None) -> BroadcastRead:
    """Send ``template`` to up to 10,000 recipients (``contact_ids`` or ``recipients``,
    each with data merged over the common ``data``), now or at ``send_at``.

    Everything is checked first: every address must normalize, every contact be the
    tenant's, and the template render for the first recipient; otherwise a 422 lists
    the bad recipients (index and reason) and nothing is stored. Repeated addresses are
    sent once. Messages then go out at ``rate`` per second: the lower of the tenant's
    rate (plan or override) and the sender's (a Twilio long code takes about 1 SMS/s)."""
    view = service.create_broadcast(session=session, runtime=runtime, tenant_id=principal.tenant_id,
                                    broadcast_in=broadcast_in, idempotency_key=idempotency_key)
    if view.replayed:
        response.headers["Idempotent-Replay"] = "true"
    return _read(view)


@router.get("", response_model=BroadcastPage)
def list_broadcasts(
    session: DbSession,
    principal: tenant_with("messages:read"),
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> BroadcastPage:
    """The tenant's broadcasts, newest first, with their counts."""
    page = service.list_broadcasts(session=session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor)
    return BroadcastPage(data=[_read(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/{broadcast_id}", response_model=BroadcastRead)
def get_broadcast(broadcast_id: uuid.UUID, session: DbSession,
                  principal: tenant_with("messages:read")) -> BroadcastRead:
    """One broadcast: its recipients by state (pending, then its messages by status) and its rate."""
    return _read(service.get_broadcast(session=session, tenant_id=principal.tenant_id, broadcast_id=broadcast_id))


@router.post("/{broadcast_id}/cancel", response_model=BroadcastRead, responses=error_responses(409))
def cancel_broadcast(broadcast_id: uuid.UUID, session: DbSession,
                     principal: tenant_with("messages:write")) -> BroadcastRead:
    """Stop what has not gone: recipients not yet sent to are canceled; messages being
    sent right now finish. Canceling again answers the same; a completed broadcast is a 409."""
    return _read(service.cancel_broadcast(session=session, tenant_id=principal.tenant_id,
                                          broadcast_id=broadcast_id))
