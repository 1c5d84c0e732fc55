"""Tenant and integration logic: plain keyword-only functions over a session.

Services ``flush()``; the caller (request dependency, CLI, task) commits once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.pagination import Page
from tenants.models import Integration, IntegrationStatus, Tenant, TenantStatus
from tenants.repository import IntegrationRepository, TenantRepository
from tenants.schemas import IntegrationRead, TenantCreate, TenantUpdate
from tenants.vault import Vault, mask_secret


def create_tenant(*, session: Session, vault: Vault, tenant_in: TenantCreate) -> Tenant:
    """Create a tenant and its data key."""
    repo = TenantRepository(session)
    if repo.get_by_slug(tenant_in.slug) is not None:
        raise Conflict(f"a tenant with slug {tenant_in.slug!r} already exists", code="slug_taken")
    tenant = Tenant(id=uuid.uuid4(), **tenant_in.model_dump())
    session.add(tenant)
    session.flush()
    vault.create_data_key(session, tenant.id)
    return tenant


def get_tenant(*, session: Session, tenant_id: uuid.UUID) -> Tenant:
    """The tenant, or NotFound (erased tenants are gone)."""
    tenant = TenantRepository(session).get(tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


def find_tenant(*, session: Session, ref: str) -> Tenant:
    """A tenant by id or slug (the CLI's way to name one)."""
    repo = TenantRepository(session)
    try:
        tenant = repo.get(uuid.UUID(ref))
    except ValueError:
        tenant = repo.get_by_slug(ref)
    if tenant is None:
        raise NotFound(f"no tenant {ref!r}")
    return tenant


def list_tenants(*, session: Session, limit: int = 50, cursor: str | None = None,
                 status: str | None = None) -> Page[Tenant]:
    """One page of live tenants, oldest first."""
    return TenantRepository(session).list(limit=limit, cursor=cursor, status=status)


def update_tenant(*, session: Session, tenant_id: uuid.UUID, tenant_in: TenantUpdate) -> Tenant:
    """Change a tenant's name, plan, locale or time zone."""
    tenant = get_tenant(session=session, tenant_id=tenant_id)
    for key, value in tenant_in.model_dump(exclude_unset=True).items():
        if key == "status":
            if value is None:
                raise Invalid("status cannot be null", code="invalid_field")
            tenant.status = TenantStatus(value)
            continue
        if value is None and key not in ("rate_limit_per_minute", "messages_per_second"):
            raise Invalid(f"{key} cannot be null", code="invalid_field")
        setattr(tenant, key, value)
    session.flush()
    return tenant


def set_tenant_status(*, session: Session, tenant_id: uuid.UUID, status: TenantStatus) -> Tenant:
    """Suspend (its clients stop working) or reactivate a tenant."""
    if status == TenantStatus.ERASED:
        raise Invalid("use erase_tenant to erase a tenant")
    tenant = get_tenant(session=session, tenant_id=tenant_id)
    tenant.status = status
    session.flush()
    return tenant


def suspend_tenant(*, session: Session, tenant_id: uuid.UUID) -> Tenant:
    """Suspend a tenant."""
    return set_tenant_status(session=session, tenant_id=tenant_id, status=TenantStatus.SUSPENDED)


def erase_tenant(*, session: Session, vault: Vault, tenant_id: uuid.UUID) -> Tenant:
    """The last step of erasing a tenant (hub.platform.erasure does the rest): destroy its
    data key, drop its credentials, free its slug, keep a pseudonymous row."""
    tenant = get_tenant(session=session, tenant_id=tenant_id)
    vault.destroy(session, tenant.id)
    for integration in IntegrationRepository(session, tenant.id).list():
        integration.credentials = {}
        integration.status = IntegrationStatus.INACTIVE
    tenant.status = TenantStatus.ERASED
    tenant.slug = f"erased-{tenant.id.hex}"
    tenant.name = "erased"
    tenant.deleted_at = utcnow()
    session.flush()
    return tenant


# --- integrations -------------------------------------------------------------------


def _as_secret_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def put_integration(
    *,
    session: Session,
    vault: Vault,
    tenant_id: uuid.UUID,
    kind: str,
    credentials: dict[str, Any],
    config: dict[str, Any],
    status: IntegrationStatus = IntegrationStatus.PENDING,
) -> Integration:
    """Create or replace a tenant's integration of ``kind``, sealing every credential."""
    repo = IntegrationRepository(session, tenant_id)
    integration = repo.get(kind, for_update=True)
    if integration is None:
        integration = repo.add(Integration(id=uuid.uuid4(), kind=kind, config={}, credentials={}))
    integration.credentials = {
        name: vault.seal_field(session, tenant_id=tenant_id, integration_id=integration.id,
                               field_name=name, value=_as_secret_text(value))
        for name, value in credentials.items()
    }
    integration.config = config
    integration.status = status
    integration.last_error = None
    integration.last_error_at = None
    session.flush()
    return integration


def get_integration(*, session: Session, tenant_id: uuid.UUID, kind: str) -> Integration:
    """The tenant's integration of ``kind``, or NotFound."""
    integration = IntegrationRepository(session, tenant_id).get(kind)
    if integration is None:
        raise NotFound(f"no {kind} integration")
    return integration


def list_integrations(*, session: Session, tenant_id: uuid.UUID) -> list[Integration]:
    """Every integration of the tenant."""
    return IntegrationRepository(session, tenant_id).list()


def delete_integration(*, session: Session, tenant_id: uuid.UUID, kind: str) -> None:
    """Remove the integration and its sealed credentials."""
    integration = get_integration(session=session, tenant_id=tenant_id, kind=kind)
    session.delete(integration)
    session.flush()


def open_credentials(*, session: Session, vault: Vault, integration: Integration) -> dict[str, str]:
    """The integration's credentials in clear, for a provider call. Never log or return them."""
    return {
        name: vault.open_field(session, tenant_id=integration.tenant_id, integration_id=integration.id,
                               field_name=name, sealed=sealed)
        for name, sealed in integration.credentials.items()
    }


def mark_integration_error(*, session: Session, integration: Integration, error: str,
                           status: IntegrationStatus = IntegrationStatus.ERROR) -> None:
    """Record a failure the tenant can see (``last_error``, ``last_error_at``)."""
    integration.status = status
    integration.last_error = error[:2000]
    integration.last_error_at = utcnow()
    session.flush()


def integration_read(*, session: Session, vault: Vault, integration: Integration,
                     secret_fields: Collection[str] | None = None) -> IntegrationRead:
    """The API view: ``secret_fields`` masked (every field when not given), the other
    credentials (a host, a port, an account SID) shown as they are."""
    masked = {name: mask_secret(value) if secret_fields is None or name in secret_fields else value
              for name, value in open_credentials(session=session, vault=vault, integration=integration).items()}
    return IntegrationRead(
        kind=integration.kind,
        status=integration.status,
        config=integration.config,
        credentials=masked,
        last_error=integration.last_error,
        last_error_at=integration.last_error_at,
        created_at=integration.created_at,
        updated_at=integration.updated_at,
    )
