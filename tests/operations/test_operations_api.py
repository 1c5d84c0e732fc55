"""GET /v1/platform/queues/stats and /v1/platform/health: a stuck queue and the
dependencies, as an operator sees them (and in /metrics)."""

from __future__ import annotations

import pytest

from hub.webhooks.routes import claim_route
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.messaging.outbound_support import backdate
from tests.metrics.test_metrics import scrape, value
from tests.support import platform_headers, tenant_headers


def stuck_message(client, runtime) -> str:
    """A due message nobody delivers: the test client runs no worker and no relay."""
    tenant_id, headers = tenant_headers(client, runtime, "stuck")
    with runtime.session_factory() as session, session.begin():
        integration = tenants.put_integration(
            session=session, vault=runtime.vault, tenant_id=tenant_id, kind="twilio",
            credentials={"account_sid": "AC" + "1" * 32, "auth_token": "2" * 32},
            config={"numbers": ["+5511900001111"], "channels": ["sms"]}, status=IntegrationStatus.ACTIVE)
        claim_route(session, kind="twilio", route_key="+5511900001111", integration=integration)
    r = client.post("/v1/messages", headers=headers, json={"channel": "sms", "to": "+5511987654321", "body": "Oi"})
    assert r.status_code in (201, 202), r.text
    message_id = r.json()["id"]
    backdate(runtime, message_id, seconds=3600)  # as if the hour had gone by with nobody delivering
    return message_id


class TestQueueStats:
    def test_a_stuck_queue_shows_in_stats_and_metrics(self, client, runtime):
        runtime.settings.metrics_cache_seconds = 0
        stuck_message(client, runtime)
        r = client.get("/v1/platform/queues/stats", headers=platform_headers(client, runtime))
        assert r.status_code == 200, r.text
        queues = {q["name"]: q for q in r.json()["queues"]}
        assert queues["outbox"]["waiting"] == 1
        assert queues["outbox"]["in_flight"] == 0
        assert queues["outbox"]["oldest_age_seconds"] >= 3600
        assert queues["webhooks"]["waiting"] == 0
        samples = scrape(client)
        assert value(samples, "hub_outbox_oldest_due_age_seconds") >= 3600
        assert value(samples, "hub_outbox_depth") == 1

    def test_an_empty_hub_has_nothing_waiting(self, client, runtime):
        body = client.get("/v1/platform/queues/stats", headers=platform_headers(client, runtime)).json()
        for queue in body["queues"]:
            assert queue["waiting"] == 0 and queue["oldest_age_seconds"] is None

    def test_a_tenant_token_is_refused(self, client, runtime):
        _, headers = tenant_headers(client, runtime, "nosy")
        for path in ("/v1/platform/queues/stats", "/v1/platform/health"):
            assert client.get(path, headers=headers).status_code == 403


class TestPlatformHealth:
    def test_embedded_reports_its_own_services(self, client, runtime):
        r = client.get("/v1/platform/health", headers=platform_headers(client, runtime))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok"
        assert {d["name"]: d["status"] for d in body["dependencies"]} == {"database": "ok", "redis": "embedded"}
        assert [p["kind"] for p in body["processes"]] == ["api"]  # the test client runs no worker or relay

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_with_redis_every_process_kind_seen_recently(self, client, runtime, redis_url):
        from hub.operations.processes import mark_seen

        runtime.settings.redis_url = redis_url
        for kind in ("relay", "worker", "beat"):
            mark_seen(runtime.settings, kind)
        body = client.get("/v1/platform/health", headers=platform_headers(client, runtime)).json()
        assert {d["name"]: d["status"] for d in body["dependencies"]} == {"database": "ok", "redis": "ok"}
        assert {p["kind"] for p in body["processes"]} == {"api", "relay", "worker", "beat"}

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_an_unreachable_redis_is_named(self, client, runtime):
        from connectors.sandbox.server import free_port

        headers = platform_headers(client, runtime)
        runtime.settings.redis_url = f"redis://127.0.0.1:{free_port()}/0"
        body = client.get("/v1/platform/health", headers=headers).json()
        assert body["status"] == "degraded"
        assert dict((d["name"], d["status"]) for d in body["dependencies"])["redis"].startswith("unreachable")
