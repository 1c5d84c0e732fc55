"""GET /v1/integrations/health and POST /v1/integrations/{kind}/check against the sandbox."""

from __future__ import annotations

from sqlalchemy import select

from hub.audit.models import AuditEvent
from tests.messaging.outbound_support import twilio_tenant
from tests.metrics.test_metrics import scrape, value


def check(hub, tenant, kind: str = "twilio"):
    r = hub.http.post(f"/v1/integrations/{kind}/check", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()


def health_of(hub, tenant, kind: str = "twilio") -> dict:
    r = hub.http.get("/v1/integrations/health", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return next(i for i in r.json()["integrations"] if i["kind"] == kind)


class TestCheck:
    def test_a_working_provider_passes_and_counts_as_a_success(self, live_hub):
        tenant = twilio_tenant(live_hub, "healthy")
        result = check(live_hub, tenant)
        assert result["ok"] is True and "active" in result["detail"]
        health = health_of(live_hub, tenant)
        assert health["status"] == "active"
        assert health["last_success"]["source"] == "check"
        assert health["last_failure"] is None

    def test_a_failing_provider_shows_in_health_and_metrics(self, live_hub):
        tenant = twilio_tenant(live_hub, "failing")
        before = scrape(live_hub.http)
        r = live_hub.http.post(f"{live_hub.sandbox_url}/_sandbox/twilio/failures",
                               json={"kind": "http_500", "resource": "accounts"})
        assert r.status_code in (200, 201), r.text
        result = check(live_hub, tenant)
        assert result["ok"] is False
        health = health_of(live_hub, tenant)
        assert health["status"] == "active"  # one failed check does not stop deliveries
        assert health["last_failure"]["source"] == "check"
        assert health["last_failure"]["message"] == result["detail"]
        after = scrape(live_hub.http)
        assert value(after, "hub_provider_errors_total", provider="twilio", operation="check") - value(
            before, "hub_provider_errors_total", provider="twilio", operation="check") == 1
        # the failure is the integration's last error, and the check is audited
        integration = live_hub.http.get("/v1/integrations/twilio", headers=tenant.headers).json()
        assert integration["last_error"].startswith("check failed")
        with live_hub.runtime.session_factory() as session:
            audited = session.scalars(select(AuditEvent.outcome).where(
                AuditEvent.tenant_id == tenant.tenant_id, AuditEvent.action == "integration.checked")).all()
        assert audited == ["failure"]

    def test_an_unknown_integration_is_a_404(self, live_hub):
        tenant = twilio_tenant(live_hub, "lonely")
        r = live_hub.http.post("/v1/integrations/smtp/check", headers=tenant.headers)
        assert r.status_code == 404
