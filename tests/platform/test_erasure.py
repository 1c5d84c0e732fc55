"""Erasing a tenant: uninstalled at every provider, every personal datum gone from the
database (and from a dump of it), its routes free for others, resumable when a
provider fails. ``DELETE /v1/tenants/{id}`` and ``hub tenants erase`` alike."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from sqlalchemy import select

from hub.db import is_postgres
from hub.platform.erasure import KEPT_TABLES, tenant_tables
from hub.tables import metadata
from hub.webhooks.routes import claim_route, resolve
from tenants import service as tenants
from tenants.models import Tenant
from tests.conftest import TEST_MASTER_KEYS
from tests.onboarding.helpers import Onboarding
from tests.support import create_tenant, platform_headers
from tests.webhooks.helpers import wait_for

CUSTOMER_NAME = "Joana Erasmo da Silva"
CUSTOMER_PHONE = "+5511976543210"
CUSTOMER_EMAIL = "joana.erasmo@example.org"
SECRET_BODY = "resultado do exame de Joana: confidencial"
# tables with platform-wide rows, owned by no tenant
PLATFORM_TABLES = frozenset({"tenants", "signing_keys", "audit_chain_heads", "audit_checkpoints", "backup_runs"})


@pytest.fixture
def onboarding(live_hub) -> Onboarding:
    return Onboarding(live_hub)


def clinic_with_data(onboarding: Onboarding, slug: str = "clinica-erasmo"):
    """A provisioned tenant with a contact, a conversation both ways and an appointment-free
    message history: what an erasure must leave no trace of."""
    tenant = onboarding.tenant(slug)
    config = onboarding.provision(tenant).json()["config"]
    [number], sub = config["numbers"], config["subaccount_sid"]
    http = onboarding.http
    contact = http.post("/v1/contacts", headers=tenant.headers,
                        json={"name": CUSTOMER_NAME, "phone": CUSTOMER_PHONE, "email": CUSTOMER_EMAIL})
    assert contact.status_code == 201, contact.text
    onboarding.twilio.simulate_inbound(to=number, from_=CUSTOMER_PHONE, body="Oi, " + SECRET_BODY)
    sent = http.post("/v1/messages", headers=tenant.headers,
                     json={"channel": "sms", "to": CUSTOMER_PHONE, "body": SECRET_BODY})
    assert sent.status_code == 202, sent.text
    wait_for(lambda: len(http.get("/v1/messages", headers=tenant.headers).json()["data"]) == 2,
             what="the inbound and the outbound message")
    return tenant, number, sub


def rows_mentioning(runtime, *needles: str) -> list[str]:
    """``table: row`` for every row of every table whose text holds one of ``needles``."""
    found = []
    with runtime.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                text_of_row = " ".join(str(v) for v in row)
                if any(needle in text_of_row for needle in needles):
                    found.append(f"{table.name}: {text_of_row[:200]}")
    return found


def routed(runtime, key: str) -> bool:
    with runtime.session_factory() as session:
        runtime.caches.pop("routes", None)  # read the table, not this process's cache
        return resolve(runtime, session, kind="twilio", route_keys=[key]) is not None


class TestEveryTableIsCovered:
    def test_each_table_is_a_tenants_a_cascade_of_one_or_platform_wide(self):
        # a new feature's table must be erased with its tenant: by a tenant_id column,
        # or by an ON DELETE CASCADE from a table that has one
        tenant_owned = {t.name for t in tenant_tables()} | (KEPT_TABLES - PLATFORM_TABLES)
        for table in metadata.sorted_tables:
            if table.name in tenant_owned or table.name in PLATFORM_TABLES:
                continue
            cascades = [fk for fk in table.foreign_keys
                        if fk.ondelete == "CASCADE" and fk.column.table.name in tenant_owned]
            assert cascades, f"{table.name} is neither a tenant's (tenant_id) nor cascades from one"


class TestErase:
    def test_an_erased_tenant_leaves_nothing_at_its_provider_or_in_the_database(self, onboarding, tmp_path):
        runtime = onboarding.runtime
        tenant, number, sub = clinic_with_data(onboarding)
        assert rows_mentioning(runtime, CUSTOMER_NAME, CUSTOMER_PHONE, CUSTOMER_EMAIL, SECRET_BODY)
        admin = platform_headers(onboarding.http, runtime)

        answer = onboarding.http.delete("/v1/tenants/clinica-erasmo", headers=admin)  # a slug names it too
        assert answer.status_code == 204, answer.text

        # at Twilio: the number released, the subaccount closed (no longer billed)
        assert onboarding.twilio.account(sub)["status"] == "closed"
        assert onboarding.numbers(sub) == []
        # in the hub: no route, no personal datum, its clients refused
        assert not routed(runtime, number) and not routed(runtime, sub)
        assert rows_mentioning(runtime, CUSTOMER_NAME, CUSTOMER_PHONE, CUSTOMER_EMAIL, SECRET_BODY) == []
        with runtime.session_factory() as session:
            for table in tenant_tables():
                left = session.execute(select(table).where(table.c.tenant_id == tenant.id)).first()
                assert left is None, f"{table.name} still holds the tenant's rows"
            erased = session.get(Tenant, tenant.id)
            assert (erased.status, erased.name) == ("erased", "erased")
        assert onboarding.http.get("/v1/tenant", headers=tenant.headers).status_code == 401
        assert onboarding.http.get(f"/v1/tenants/{tenant.id}", headers=admin).status_code == 404
        if is_postgres(runtime.engine):
            dump = pg_dump(runtime, tmp_path)
            for needle in (CUSTOMER_NAME, CUSTOMER_PHONE, CUSTOMER_EMAIL, SECRET_BODY):
                assert needle not in dump, f"{needle!r} survives in a dump of the database"

    def test_a_failing_provider_leaves_it_erasing_and_the_erase_resumes(self, onboarding):
        runtime = onboarding.runtime
        tenant, number, sub = clinic_with_data(onboarding)
        admin = platform_headers(onboarding.http, runtime)
        # the subaccount lookup passes, closing it fails
        onboarding.twilio.inject_failure("timeout", resource="accounts", delay=0, times=1)
        onboarding.twilio.inject_failure("http_500", resource="accounts", times=1)

        failed = onboarding.http.delete(f"/v1/tenants/{tenant.id}", headers=admin)
        assert failed.status_code == 502, failed.text
        error = failed.json()["error"]
        assert error["code"] == "erase_incomplete" and [left["kind"] for left in error["details"]["left"]] == ["twilio"]
        assert onboarding.http.get(f"/v1/tenants/{tenant.id}", headers=admin).json()["status"] == "erasing"
        assert onboarding.http.get("/v1/tenant", headers=tenant.headers).status_code == 401  # stopped at once
        assert onboarding.twilio.account(sub)["status"] == "active"
        assert rows_mentioning(runtime, SECRET_BODY)  # nothing deleted before the providers are done

        assert onboarding.http.delete(f"/v1/tenants/{tenant.id}", headers=admin).status_code == 204
        assert onboarding.twilio.account(sub)["status"] == "closed"
        assert rows_mentioning(runtime, CUSTOMER_NAME, CUSTOMER_PHONE, CUSTOMER_EMAIL, SECRET_BODY) == []

    def test_the_cli_uninstalls_at_the_provider_too(self, onboarding, tmp_path):
        runtime = onboarding.runtime
        tenant, number, sub = clinic_with_data(onboarding, "clinica-cli")
        settings = runtime.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_DATABASE_URL=settings.effective_database_url, HUB_MASTER_KEYS=TEST_MASTER_KEYS,
                   HUB_SANDBOX="1", HUB_SANDBOX_URL=runtime.sandbox_url, HUB_PUBLIC_URL=settings.effective_public_url,
                   HUB_VAR_DIR=str(tmp_path), HUB_LOG_LEVEL="WARNING")
        result = subprocess.run([sys.executable, "-m", "hub.cli", "tenants", "erase", "clinica-cli", "--yes"],
                                env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"status": "erased"' in result.stdout and '"twilio"' in result.stdout
        assert onboarding.twilio.account(sub)["status"] == "closed"
        assert rows_mentioning(runtime, SECRET_BODY) == []

    def test_the_number_is_free_for_another_tenant_afterwards(self, onboarding):
        runtime = onboarding.runtime
        tenant, number, sub = clinic_with_data(onboarding)
        admin = platform_headers(onboarding.http, runtime)
        assert onboarding.http.delete(f"/v1/tenants/{tenant.id}", headers=admin).status_code == 204
        # before, the erased tenant's route answered another tenant's claim with 409 route_taken
        other = create_tenant(runtime, "outra-clinica")
        with runtime.session_factory() as session, session.begin():
            integration = tenants.put_integration(session=session, vault=runtime.vault, tenant_id=other,
                                                  kind="twilio", credentials={}, config={})
            claim_route(session, kind="twilio", route_key=number, integration=integration)
        assert routed(runtime, number)


def pg_dump(runtime, tmp_path) -> str:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    url = runtime.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    out = tmp_path / "dump.sql"
    subprocess.run(["pg_dump", "--data-only", "--no-owner", "-f", str(out), url], check=True, timeout=120,
                   env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    return out.read_text(encoding="utf-8", errors="replace")
