"""Platform administration over HTTP: tenants and their clients."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from hub.cli import app as cli
from tests.support import ClientCredentials, bearer, get_token, platform_headers


class TestTenants:
    def test_create_read_list_update_erase(self, client, runtime):
        admin = platform_headers(client, runtime)
        r = client.post("/v1/tenants", json={"slug": "clinica", "name": "Clínica", "plan": "free"}, headers=admin)
        assert r.status_code == 201
        tenant = r.json()
        assert (tenant["locale"], tenant["timezone"], tenant["plan"]) == ("pt-BR", "America/Sao_Paulo", "free")
        assert client.get(f"/v1/tenants/{tenant['id']}", headers=admin).json() == tenant
        for i in range(3):
            client.post("/v1/tenants", json={"slug": f"t{i}", "name": "T"}, headers=admin)
        page = client.get("/v1/tenants?limit=2", headers=admin).json()
        assert len(page["data"]) == 2 and page["next_cursor"]
        rest = client.get(f"/v1/tenants?limit=2&cursor={page['next_cursor']}", headers=admin).json()
        assert len(rest["data"]) == 2 and rest["next_cursor"] is None
        r = client.patch(f"/v1/tenants/{tenant['id']}", json={"name": "Clínica Sorriso", "rate_limit_per_minute": 5},
                         headers=admin)
        assert r.json()["name"] == "Clínica Sorriso" and r.json()["rate_limit_per_minute"] == 5
        assert client.delete(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 204
        assert client.get(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 404

    def test_bad_input_is_a_clear_4xx_and_writes_nothing(self, client, runtime):
        admin = platform_headers(client, runtime)
        for body in ({"slug": "Bad Slug", "name": "x"}, {"slug": "ok"}, {"slug": "ok", "name": "x", "plan": "gold"},
                     {"slug": "ok", "name": "x", "extra": 1}, {"slug": "ok", "name": "x", "timezone": "Nowhere/X"}):
            r = client.post("/v1/tenants", json=body, headers=admin)
            assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", body
        assert client.get("/v1/tenants", headers=admin).json()["data"] == []
        client.post("/v1/tenants", json={"slug": "ok", "name": "x"}, headers=admin)
        dup = client.post("/v1/tenants", json={"slug": "ok", "name": "y"}, headers=admin)
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "slug_taken"
        assert client.get(f"/v1/tenants/{uuid.uuid4()}", headers=admin).status_code == 404
        # a tenant is named by id or slug: a name no tenant has is a 404, never a 422 or a 500
        assert client.get("/v1/tenants/not-a-uuid", headers=admin).status_code == 404
        assert client.get("/v1/tenants/ok", headers=admin).json()["slug"] == "ok"
        assert client.get("/v1/tenants?cursor=zzz", headers=admin).status_code == 400


class TestClients:
    def test_tenant_client_gets_every_tenant_scope_by_default(self, client, runtime):
        admin = platform_headers(client, runtime)
        tenant_id = client.post("/v1/tenants", json={"slug": "a", "name": "A"}, headers=admin).json()["id"]
        created = client.post(f"/v1/tenants/{tenant_id}/clients", json={"name": "erp"}, headers=admin).json()
        assert "platform:admin" not in created["scopes"] and "messages:write" in created["scopes"]
        narrow = client.post(f"/v1/tenants/{tenant_id}/clients", json={"scopes": ["audit:read"]},
                             headers=admin).json()
        assert narrow["scopes"] == ["audit:read"]
        bad = client.post(f"/v1/tenants/{tenant_id}/clients", json={"scopes": ["platform:admin"]}, headers=admin)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_scope"
        listed = client.get(f"/v1/tenants/{tenant_id}/clients", headers=admin).json()
        assert {c["client_id"] for c in listed} == {created["client_id"], narrow["client_id"]}
        assert "client_secret" not in json.dumps(listed)
        token = get_token(client, ClientCredentials(created["client_id"], created["client_secret"], tenant_id))
        assert client.get("/v1/tenant", headers=bearer(token)).json()["id"] == tenant_id
        other = client.post("/v1/tenants", json={"slug": "b", "name": "B"}, headers=admin).json()["id"]
        # a client is revoked through its own tenant only
        assert client.delete(f"/v1/tenants/{other}/clients/{created['client_id']}", headers=admin).status_code == 404

    def test_bootstrap_command_prints_exactly_id_and_secret(self, client, runtime, settings, monkeypatch):
        monkeypatch.setenv("HUB_DATABASE_URL", settings.effective_database_url)
        monkeypatch.setenv("HUB_MASTER_KEYS", settings.master_keys.get_secret_value())
        result = CliRunner().invoke(cli, ["admin", "create-client", "--platform", "--json"])
        assert result.exit_code == 0, result.output
        creds = json.loads(result.stdout)
        assert set(creds) == {"client_id", "client_secret"}
        token = get_token(client, ClientCredentials(creds["client_id"], creds["client_secret"], None))
        assert client.get("/v1/tenants", headers=bearer(token)).status_code == 200
        rotated = CliRunner().invoke(cli, ["keys", "rotate-jwt"])
        assert rotated.exit_code == 0 and "active signing key" in rotated.output
        assert client.get("/v1/tenants", headers=bearer(token)).status_code == 200


class TestTenantIntegrations:
    def test_credentials_are_sealed_and_only_secrets_are_masked(self, client, runtime, smtp_relay):
        from tests.support import smtp_credentials, tenant_headers

        _, headers = tenant_headers(client, runtime)
        password = "f00dfacef00dfacef00dfacef00d1234"
        r = client.put("/v1/integrations/smtp", headers=headers, json={
            "credentials": smtp_credentials(smtp_relay, username="clinica@example.com", password=password),
            "config": {"helo_hostname": "clinica.example.com"}})
        assert r.status_code == 200, r.text
        body = r.json()
        # the host, port, user and security are settings, shown; the password shows its last 4 only
        assert body["credentials"] == {"host": "127.0.0.1", "port": str(smtp_relay), "username": "clinica@example.com",
                                       "password": "…1234", "from_address": "agenda@clinica.example.com",
                                       "security": "none"}
        assert password not in r.text and password not in client.get("/v1/integrations", headers=headers).text
        assert client.get("/v1/integrations/smtp", headers=headers).json()["status"] == "active"
        assert client.put("/v1/integrations/Bad-Kind", headers=headers, json={}).status_code == 422
        assert client.put("/v1/integrations/smtp", headers=headers, json={"credentials": "x"}).status_code == 422
        assert client.delete("/v1/integrations/smtp", headers=headers).status_code == 204
        assert client.get("/v1/integrations/smtp", headers=headers).status_code == 404

    def test_a_short_secret_shows_nothing_of_itself(self, client, runtime, smtp_relay):
        from tests.support import smtp_credentials, tenant_headers

        _, headers = tenant_headers(client, runtime)
        r = client.put("/v1/integrations/smtp", headers=headers,
                       json={"credentials": smtp_credentials(smtp_relay, username="u", password="123456789")})
        assert r.status_code == 200, r.text
        assert r.json()["credentials"]["password"] == "…"

    @pytest.mark.parametrize("kind", ["paypal", "stripe", "twillio", "nonexistent_kind"])
    def test_a_kind_no_connector_has_is_a_404_and_nothing_is_stored(self, client, runtime, kind):
        from tests.support import tenant_headers

        _, headers = tenant_headers(client, runtime)
        r = client.put(f"/v1/integrations/{kind}", headers=headers,
                       json={"credentials": {"secret_key": "sk_test_123"}, "config": {}})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_kind", r.text
        assert client.get("/v1/integrations", headers=headers).json() == []

    def test_credentials_are_validated_by_the_connectors_model_naming_every_field(self, client, runtime):
        from tests.support import tenant_headers

        _, headers = tenant_headers(client, runtime)
        r = client.put("/v1/integrations/smtp", headers=headers,
                       json={"credentials": {"port": 0, "from_address": "not an address"}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_credentials"
        message = r.json()["error"]["message"]
        for field in ("credentials.host", "credentials.port", "credentials.from_address"):
            assert field in message, message
        assert client.get("/v1/integrations", headers=headers).json() == []

    def test_credentials_the_provider_refuses_are_a_422_saying_why(self, client, runtime):
        from connectors.sandbox.server import free_port
        from tests.support import smtp_credentials, tenant_headers

        _, headers = tenant_headers(client, runtime)
        r = client.put("/v1/integrations/smtp", headers=headers,
                       json={"credentials": smtp_credentials(free_port())})  # nothing listens there
        assert r.status_code == 422 and r.json()["error"]["code"] == "provider_check_failed", r.text
        assert client.get("/v1/integrations", headers=headers).json() == []

    def test_google_calendar_is_connected_by_consent_not_credentials(self, client, runtime):
        from tests.support import tenant_headers

        _, headers = tenant_headers(client, runtime)
        r = client.put("/v1/integrations/google_calendar", headers=headers, json={"credentials": {"x": "y"}})
        assert r.status_code == 409 and r.json()["error"]["code"] == "use_connect_flow"
