"""Reading the audit trail."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from hub.audit import service as audit
from hub.audit.checkpoints import current_checkpoint
from hub.audit.schemas import AuditCheckpointRead, AuditEventRead, AuditPage
from hub.auth.deps import require
from hub.auth.scopes import PLATFORM_ADMIN
from hub.deps import DbSession
from hub.errors import AUTHENTICATED_ERRORS, NotFound
from hub.pagination import DEFAULT_LIMIT, MAX_LIMIT
from hub.tenant_time import UtcQueryTime

router = APIRouter(prefix="/v1", tags=["audit"], responses=AUTHENTICATED_ERRORS)


@router.get("/audit", response_model=AuditPage)
def read_audit(
    session: DbSession,
    principal: require("audit:read"),
    since: Annotated[UtcQueryTime | None, Query(description="events at or after (with an offset)")] = None,
    until: Annotated[UtcQueryTime | None, Query(description="events before (with an offset)")] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    tenant_id: Annotated[uuid.UUID | None, Query(description="platform admins only: a tenant's trail")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> AuditPage:
    """The caller's audit trail, newest first: a tenant's token reads its own; a
    platform token reads the platform's, or a tenant's with ``tenant_id``."""
    chain_owner = _chain_owner(principal, tenant_id)
    rows, next_cursor = audit.list_events(session=session, tenant_id=chain_owner, since=since, until=until,
                                          action=action, actor=actor, limit=limit, cursor=cursor)
    return AuditPage(data=[AuditEventRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/audit/checkpoint", response_model=AuditCheckpointRead)
def read_audit_checkpoint(
    session: DbSession,
    principal: require("audit:read"),
    tenant_id: Annotated[uuid.UUID | None, Query(description="platform admins only: a tenant's chain")] = None,
) -> AuditCheckpointRead:
    """A checkpoint of the caller's audit chain, signed now with a key the database does
    not hold. Keep it outside the hub: `hub audit verify --checkpoint` proves the chain
    still reaches it (rows cut from the end of the chain show)."""
    checkpoint = current_checkpoint(session=session, chain=audit.chain_of(_chain_owner(principal, tenant_id)))
    if checkpoint is None:
        raise NotFound("this audit trail has no rows yet")
    return AuditCheckpointRead(**asdict(checkpoint))


def _chain_owner(principal, tenant_id: uuid.UUID | None) -> uuid.UUID | None:
    """Whose chain the caller reads: its own, or with ``tenant_id`` (platform admins) a tenant's."""
    if tenant_id is not None and tenant_id != principal.tenant_id:
        if PLATFORM_ADMIN not in principal.scopes:
            raise NotFound("no audit trail for that tenant")
        return tenant_id
    return principal.tenant_id
