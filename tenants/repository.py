"""Every query of tenants and integrations; the tenant filter is applied here."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from hub.pagination import Page, paginate
from tenants.models import Integration, Tenant, TenantStatus


class TenantRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, tenant_id: uuid.UUID, *, include_erased: bool = False) -> Tenant | None:
        tenant = self.session.get(Tenant, tenant_id)
        if tenant is None or (tenant.status == TenantStatus.ERASED and not include_erased):
            return None
        return tenant

    def get_by_slug(self, slug: str) -> Tenant | None:
        return self.session.scalar(
            select(Tenant).where(Tenant.slug == slug, Tenant.status != TenantStatus.ERASED)
        )

    def list(self, *, limit: int, cursor: str | None, status: str | None = None) -> Page[Tenant]:
        stmt = select(Tenant).where(Tenant.status != TenantStatus.ERASED)
        if status:
            stmt = stmt.where(Tenant.status == status)
        return paginate(self.session, stmt, Tenant, limit=limit, cursor=cursor)


class IntegrationRepository:
    """Integrations of one tenant: no query here can see another tenant's rows."""

    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def _scoped(self) -> Select[tuple[Integration]]:
        return select(Integration).where(Integration.tenant_id == self.tenant_id)

    def get(self, kind: str, *, for_update: bool = False) -> Integration | None:
        stmt = self._scoped().where(Integration.kind == kind)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def get_by_id(self, integration_id: uuid.UUID) -> Integration | None:
        return self.session.scalar(self._scoped().where(Integration.id == integration_id))

    def list(self) -> list[Integration]:
        return list(self.session.scalars(self._scoped().order_by(Integration.kind)))

    def add(self, integration: Integration) -> Integration:
        integration.tenant_id = self.tenant_id
        self.session.add(integration)
        self.session.flush()
        return integration
