"""Tenant and integration service functions."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from hub.errors import Conflict, Invalid, NotFound
from tenants import service
from tenants.models import IntegrationStatus, TenantStatus
from tenants.schemas import TenantCreate, TenantUpdate


def create_tenant(session, vault, slug="acme", **kw):
    tenant = service.create_tenant(session=session, vault=vault, tenant_in=TenantCreate(slug=slug, name=slug, **kw))
    session.commit()
    return tenant


class TestCreate:
    def test_defaults(self, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        assert (tenant.status, tenant.plan, tenant.locale, tenant.timezone) == (
            "active", "standard", "pt-BR", "America/Sao_Paulo")
        assert tenant.created_at.tzinfo is not None
        again = service.get_tenant(session=session, tenant_id=tenant.id)
        assert again.created_at.utcoffset().total_seconds() == 0

    def test_slug_is_unique(self, session, runtime):
        create_tenant(session, runtime.vault)
        with pytest.raises(Conflict):
            create_tenant(session, runtime.vault)

    @pytest.mark.parametrize("field,value", [
        ("slug", "Bad Slug"), ("slug", "-x"), ("plan", "gold"), ("timezone", "Mars/Olympus"), ("locale", "portuguese"),
    ])
    def test_bad_input_is_refused(self, field, value):
        data = {"slug": "ok", "name": "Ok", field: value}
        with pytest.raises(ValidationError):
            TenantCreate(**data)


class TestLifecycle:
    def test_update_suspend_erase(self, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        service.update_tenant(session=session, tenant_id=tenant.id,
                              tenant_in=TenantUpdate(name="Acme Ltda", plan="enterprise"))
        assert (tenant.name, tenant.plan) == ("Acme Ltda", "enterprise")
        with pytest.raises(Invalid):
            service.update_tenant(session=session, tenant_id=tenant.id,
                                  tenant_in=TenantUpdate.model_validate({"name": None}))
        assert service.suspend_tenant(session=session, tenant_id=tenant.id).status == TenantStatus.SUSPENDED
        service.erase_tenant(session=session, vault=runtime.vault, tenant_id=tenant.id)
        session.commit()
        with pytest.raises(NotFound):
            service.get_tenant(session=session, tenant_id=tenant.id)
        # the slug is free again
        assert create_tenant(session, runtime.vault).id != tenant.id

    def test_find_by_id_or_slug(self, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        assert service.find_tenant(session=session, ref="acme").id == tenant.id
        assert service.find_tenant(session=session, ref=str(tenant.id)).id == tenant.id
        with pytest.raises(NotFound):
            service.find_tenant(session=session, ref=str(uuid.uuid4()))

    def test_list_pages_with_a_cursor(self, session, runtime):
        created = [create_tenant(session, runtime.vault, slug=f"t{i:02}").id for i in range(7)]
        seen, cursor = [], None
        while True:
            page = service.list_tenants(session=session, limit=3, cursor=cursor)
            seen += [t.id for t in page.items]
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert seen == created


class TestIntegrations:
    def test_put_seals_and_reads_back_masked(self, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        integration = service.put_integration(
            session=session, vault=runtime.vault, tenant_id=tenant.id, kind="twilio",
            credentials={"account_sid": "AC" + "0" * 28 + "1234", "auth_token": "f" * 32}, config={"a": 1})
        session.commit()
        assert all(v.startswith("sealed:v1:") for v in integration.credentials.values())
        view = service.integration_read(session=session, vault=runtime.vault, integration=integration)
        assert view.credentials == {"account_sid": "…1234", "auth_token": "…ffff"}  # no model: all secret
        view = service.integration_read(session=session, vault=runtime.vault, integration=integration,
                                        secret_fields={"auth_token"})
        assert view.credentials == {"account_sid": "AC" + "0" * 28 + "1234", "auth_token": "…ffff"}
        assert view.status == IntegrationStatus.PENDING
        service.mark_integration_error(session=session, integration=integration, error="boom")
        assert (integration.status, integration.last_error) == ("error", "boom")
        assert integration.last_error_at is not None

    def test_one_tenant_cannot_reach_anothers_integration(self, session, runtime):
        a = create_tenant(session, runtime.vault, slug="a")
        b = create_tenant(session, runtime.vault, slug="b")
        service.put_integration(session=session, vault=runtime.vault, tenant_id=a.id, kind="twilio",
                                credentials={"auth_token": "x" * 32}, config={})
        session.commit()
        with pytest.raises(NotFound):
            service.get_integration(session=session, tenant_id=b.id, kind="twilio")
        with pytest.raises(NotFound):
            service.delete_integration(session=session, tenant_id=b.id, kind="twilio")
        assert service.list_integrations(session=session, tenant_id=b.id) == []
        service.delete_integration(session=session, tenant_id=a.id, kind="twilio")
        assert service.list_integrations(session=session, tenant_id=a.id) == []
