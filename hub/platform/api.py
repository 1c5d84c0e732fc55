"""Platform administration: tenants and their API clients (scope platform:admin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from hub.audit import service as audit
from hub.auth import service as auth
from hub.auth.deps import PlatformAdmin, client_ip, request_id
from hub.auth.schemas import ClientCreate, ClientCreated, ClientRead
from hub.deps import DbSession, HubRuntime, VaultDep
from hub.errors import AUTHENTICATED_ERRORS, ProviderRejected, error_responses
from hub.integrations.installers import Actor
from hub.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRead
from hub.platform import erasure
from tenants import service as tenants
from tenants.schemas import TenantCreate, TenantRead, TenantUpdate

router = APIRouter(prefix="/v1/tenants", tags=["platform"], responses=AUTHENTICATED_ERRORS)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _tenant_ref(session: DbSession, principal: PlatformAdmin,
                tenant_id: Annotated[str, Path(max_length=63, description="the tenant's id or slug")]) -> uuid.UUID:
    """A tenant named by id or slug, as the CLI names them (looked up once the caller is
    authenticated: an anonymous request learns nothing of which tenants exist)."""
    return tenants.find_tenant(session=session, ref=tenant_id).id


TenantRef = Annotated[uuid.UUID, Depends(_tenant_ref)]


def _audit(session, request: Request, principal, tenant_id, action: str, target: str, details: dict) -> None:
    audit.record(session=session, tenant_id=tenant_id, actor=principal.actor, action=action, target=target,
                 ip=client_ip(request), request_id=request_id(request), details=details)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TenantRead, responses=error_responses(409))
def create_tenant(tenant_in: TenantCreate, request: Request, session: DbSession, vault: VaultDep,
                  principal: PlatformAdmin) -> TenantRead:
    """Create a tenant."""
    tenant = tenants.create_tenant(session=session, vault=vault, tenant_in=tenant_in)
    view = TenantRead.model_validate(tenant)
    _audit(session, request, principal, tenant.id, "tenant.created", str(tenant.id),
           {"after": view.model_dump(mode="json")})
    return view


@router.get("", response_model=PageRead[TenantRead])
def list_tenants(session: DbSession, principal: PlatformAdmin, limit: Limit = DEFAULT_LIMIT,
                 cursor: str | None = None) -> PageRead[TenantRead]:
    """Live tenants, oldest first."""
    page = tenants.list_tenants(session=session, limit=limit, cursor=cursor)
    return PageRead[TenantRead](data=[TenantRead.model_validate(t) for t in page.items],
                                next_cursor=page.next_cursor)


@router.get("/{tenant_id}", response_model=TenantRead)
def get_tenant(tenant_id: TenantRef, session: DbSession, principal: PlatformAdmin) -> TenantRead:
    """One tenant."""
    return TenantRead.model_validate(tenants.get_tenant(session=session, tenant_id=tenant_id))


@router.patch("/{tenant_id}", response_model=TenantRead)
def update_tenant(tenant_id: TenantRef, tenant_in: TenantUpdate, request: Request, session: DbSession,
                  principal: PlatformAdmin) -> TenantRead:
    """Change a tenant's name, plan, locale, time zone, rate limit, or suspend/reactivate it."""
    before = TenantRead.model_validate(tenants.get_tenant(session=session, tenant_id=tenant_id))
    tenant = tenants.update_tenant(session=session, tenant_id=tenant_id, tenant_in=tenant_in)
    after = TenantRead.model_validate(tenant)
    _audit(session, request, principal, tenant_id, "tenant.updated", str(tenant_id),
           {"before": before.model_dump(mode="json"), "after": after.model_dump(mode="json")})
    return after


@router.delete("/{tenant_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(502))
def erase_tenant(tenant_id: TenantRef, request: Request, runtime: HubRuntime, principal: PlatformAdmin) -> Response:
    """Erase a tenant for good: every integration is uninstalled at its provider (numbers
    released, subaccounts closed, watch channels stopped, grants revoked), then every
    row it owns is deleted and its data key destroyed. Its clients stop working at once.

    When a provider fails, the tenant stays `erasing` and the answer is a 502
    `erase_incomplete` listing what is left: repeat the DELETE to finish."""
    report = erasure.erase_tenant(runtime=runtime, tenant_ref=str(tenant_id),
                                  actor=Actor(principal.actor, client_ip(request), request_id(request)))
    if not report.complete:
        raise ProviderRejected(
            "the tenant is being erased, but " + "; ".join(f"{left['kind']}: {left['error']}" for left in report.left)
            + "; repeat the DELETE to finish", code="erase_incomplete",
            details={"uninstalled": report.uninstalled, "left": report.left})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{tenant_id}/clients", status_code=status.HTTP_201_CREATED, response_model=ClientCreated)
def create_client(tenant_id: TenantRef, client_in: ClientCreate, request: Request, session: DbSession,
                  principal: PlatformAdmin) -> ClientCreated:
    """Create an API client for a tenant; its secret is shown in this answer only."""
    tenants.get_tenant(session=session, tenant_id=tenant_id)
    client, secret = auth.create_client(session=session, tenant_id=tenant_id, name=client_in.name,
                                        scopes=client_in.scopes)
    _audit(session, request, principal, tenant_id, "client.created", client.client_id,
           {"name": client.name, "scopes": client.scopes})
    return ClientCreated(client_id=client.client_id, client_secret=secret, scopes=client.scopes)


@router.get("/{tenant_id}/clients", response_model=list[ClientRead])
def list_clients(tenant_id: TenantRef, session: DbSession, principal: PlatformAdmin) -> list[ClientRead]:
    """A tenant's API clients (secrets are never shown again)."""
    tenants.get_tenant(session=session, tenant_id=tenant_id)
    return [ClientRead.model_validate(c) for c in auth.list_clients(session=session, tenant_id=tenant_id)]


@router.delete("/{tenant_id}/clients/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_client(tenant_id: TenantRef, client_id: str, request: Request, session: DbSession,
                  principal: PlatformAdmin) -> Response:
    """Revoke a client; its tokens stop working at once."""
    tenants.get_tenant(session=session, tenant_id=tenant_id)
    auth.revoke_client(session=session, client_id=client_id, tenant_id=tenant_id)
    _audit(session, request, principal, tenant_id, "client.revoked", client_id, {})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
