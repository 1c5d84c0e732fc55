"""The hash-chained audit log: written for every request and change, provably intact."""

from __future__ import annotations

import json
import threading

from sqlalchemy import text
from typer.testing import CliRunner

from hub.audit import service as audit
from hub.cli import app as cli
from tests.support import bearer, create_client, create_tenant, get_token, smtp_credentials


def record_some(runtime, tenant_id, n):
    with runtime.session_factory() as s, s.begin():
        for i in range(n):
            audit.record(session=s, tenant_id=tenant_id, actor="test", action="thing.done", target=str(i),
                         details={"i": i, "note": "olá"})


class TestChain:
    def test_an_intact_chain_verifies(self, runtime):
        tenant_id = create_tenant(runtime)
        record_some(runtime, tenant_id, 5)
        with runtime.session_factory() as s:
            verdict = audit.verify_chain(session=s, chain=str(tenant_id))
        assert verdict.ok and verdict.checked == 5

    def test_a_row_edited_in_the_database_is_named(self, runtime):
        tenant_id = create_tenant(runtime)
        record_some(runtime, tenant_id, 5)
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'someone-else' WHERE chain = :c AND seq = 3"),
                         {"c": str(tenant_id)})
        with runtime.session_factory() as s:
            verdict = audit.verify_chain(session=s, chain=str(tenant_id))
        assert not verdict.ok and verdict.broken_seq == 3 and "content" in verdict.reason

    def test_a_deleted_row_and_a_cut_tail_are_detected(self, runtime):
        tenant_id = create_tenant(runtime)
        record_some(runtime, tenant_id, 5)
        with runtime.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events WHERE chain = :c AND seq = 5"), {"c": str(tenant_id)})
        with runtime.session_factory() as s:
            assert audit.verify_chain(session=s, chain=str(tenant_id)).broken_seq == 5
        with runtime.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events WHERE chain = :c AND seq = 2"), {"c": str(tenant_id)})
        with runtime.session_factory() as s:
            assert audit.verify_chain(session=s, chain=str(tenant_id)).broken_seq == 2

    def test_concurrent_writers_do_not_fork_the_chain(self, runtime):
        tenant_id = create_tenant(runtime)
        errors = []

        def writer():
            try:
                for _ in range(10):
                    record_some(runtime, tenant_id, 1)
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with runtime.session_factory() as s:
            verdict = audit.verify_chain(session=s, chain=str(tenant_id))
        assert verdict.ok and verdict.checked == 60

    def test_cli_verify_names_the_first_broken_row(self, runtime, settings, monkeypatch):
        tenant_id = create_tenant(runtime, "acme")
        record_some(runtime, tenant_id, 3)
        monkeypatch.setenv("HUB_DATABASE_URL", settings.effective_database_url)
        monkeypatch.setenv("HUB_MASTER_KEYS", settings.master_keys.get_secret_value())
        ok = CliRunner().invoke(cli, ["audit", "verify", "--tenant", "acme"])
        assert ok.exit_code == 0 and "3 rows" in ok.output
        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET target = 'x' WHERE seq = 2 AND chain = :c"),
                         {"c": str(tenant_id)})
        broken = CliRunner().invoke(cli, ["audit", "verify"])
        assert broken.exit_code == 1 and "seq=2" in broken.output


class TestWhatIsAudited:
    def test_requests_changes_and_failures_are_in_the_tenants_trail(self, client, runtime, smtp_relay):
        platform = bearer(get_token(client, create_client(runtime, None)))
        tenant_id = client.post("/v1/tenants", json={"slug": "acme", "name": "Acme"}, headers=platform).json()["id"]
        creds = client.post(f"/v1/tenants/{tenant_id}/clients", json={}, headers=platform).json()
        token = get_token(client, type("C", (), {"client_id": creds["client_id"],
                                                 "client_secret": creds["client_secret"]})())
        r = client.put("/v1/integrations/smtp", headers=bearer(token), json={
            "credentials": smtp_credentials(smtp_relay, username="clinica", password="supersecrettoken1234")})
        assert r.status_code == 200, r.text
        client.get("/v1/integrations/nothing", headers=bearer(token))  # a 404, audited as a failure
        client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": creds["client_id"],
                                          "client_secret": "wrong"})
        trail = client.get("/v1/audit?limit=200", headers=bearer(token)).json()["data"]
        actions = [e["action"] for e in trail]
        for expected in ("tenant.created", "client.created", "token.issued", "integration.credentials_set",
                         "api.request"):
            assert expected in actions, actions
        put = next(e for e in trail if e["action"] == "integration.credentials_set")
        assert put["details"]["after"]["masked_credentials"]["password"] == "…1234"
        assert "supersecrettoken1234" not in json.dumps(trail)
        failed = [e for e in trail if e["action"] == "api.request" and e["outcome"] == "failure"]
        assert any(e["details"]["status"] == 404 and e["details"]["route"] == "/v1/integrations/{kind}"
                   for e in failed)
        request = next(e for e in trail if e["action"] == "api.request")
        assert {"method", "route", "status", "latency_ms"} <= set(request["details"])
        assert request["ip"] and request["request_id"]
        # the failed token attempt is in the platform trail, with the client id tried
        platform_trail = client.get("/v1/audit?action=auth.failed", headers=platform).json()["data"]
        assert any(e["actor"] == f"client:{creds['client_id']}" for e in platform_trail)

    def test_filters_and_pagination(self, client, runtime):
        tenant_id = create_tenant(runtime)
        token = bearer(get_token(client, create_client(runtime, tenant_id)))
        record_some(runtime, tenant_id, 7)
        page = client.get("/v1/audit?action=thing.done&limit=3", headers=token).json()
        assert [e["target"] for e in page["data"]] == ["6", "5", "4"]
        page2 = client.get(f"/v1/audit?action=thing.done&limit=3&cursor={page['next_cursor']}", headers=token).json()
        assert [e["target"] for e in page2["data"]] == ["3", "2", "1"]
        assert client.get("/v1/audit?actor=nobody", headers=token).json()["data"] == []
        assert client.get("/v1/audit?since=2999-01-01T00:00:00Z", headers=token).json()["data"] == []
        assert client.get("/v1/audit?since=2020-01-01T00:00:00", headers=token).status_code == 422
        assert client.get("/v1/audit?cursor=abc", headers=token).status_code == 400

    def test_a_tenant_cannot_read_another_tenants_trail(self, client, runtime):
        a = create_tenant(runtime, "a")
        b_token = bearer(get_token(client, create_client(runtime, create_tenant(runtime, "b"))))
        record_some(runtime, a, 2)
        r = client.get(f"/v1/audit?tenant_id={a}", headers=b_token)
        assert r.status_code == 404

    def test_if_the_audit_row_cannot_be_written_the_action_does_not_happen(self, client, runtime, smtp_relay):
        tenant_id = create_tenant(runtime)
        token = bearer(get_token(client, create_client(runtime, tenant_id)))
        with runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
        try:
            r = client.put("/v1/integrations/smtp", headers=token,
                           json={"credentials": smtp_credentials(smtp_relay, username="u", password="p4ssw0rd-long")})
            assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        finally:
            with runtime.engine.begin() as conn:
                conn.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))
        from tenants.models import Integration

        with runtime.session_factory() as s:
            assert s.query(Integration).count() == 0
