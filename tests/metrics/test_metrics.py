"""GET /metrics: scraped and parsed in the Prometheus text format while traffic flows."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from tests.messaging.outbound_support import (
    CUSTOMER,
    eventually,
    make_fast,
    send,
    twilio_tenant,
    wait_for_status,
)

STATE_GAUGES = ("hub_dead_letters", "hub_outbox_depth", "hub_outbox_oldest_due_age_seconds", "hub_queue_depth",
                "hub_calendar_channels_expiring", "hub_calendar_sync_lag_seconds")


def scrape(http, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics: ``{(name, sorted labels): value}``."""
    r = http.get("/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def signed_inbound(hub, tenant) -> tuple[str, dict[str, str]]:
    """A Twilio incoming-message webhook for the tenant's number, signed with its token."""
    path = "/webhooks/twilio/messaging"
    form = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": tenant.account_sid, "From": CUSTOMER,
            "To": tenant.number, "Body": "Oi", "NumMedia": "0", "SmsStatus": "received"}
    signature = RequestValidator(tenant.auth_token).compute_signature(hub.url + path, form)
    return path, {"data": form, "headers": {"X-Twilio-Signature": signature}}


class TestScrape:
    def test_an_idle_hub_exposes_every_state_gauge(self, client):
        samples = scrape(client)
        names = {name for name, _ in samples}
        for gauge in STATE_GAUGES:
            if gauge != "hub_queue_depth":  # per Redis queue: none embedded
                assert gauge in names, gauge
        assert value(samples, "hub_metrics_state_up") == 1
        assert "hub_backup_last_success_timestamp_seconds" not in names  # never backed up: absent() alerts

    def test_a_token_is_required_when_configured(self, client, runtime):
        from pydantic import SecretStr

        runtime.settings.metrics_token = SecretStr("scrape-secret")
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert scrape(client, {"Authorization": "Bearer scrape-secret"})

    def test_requests_are_counted_by_route_template_never_by_raw_path(self, client):
        message_id = uuid.uuid4()
        client.get(f"/v1/messages/{message_id}")  # 401: no token
        client.get("/no/such/page")
        text = client.get("/metrics").text
        assert str(message_id) not in text and "/no/such/page" not in text
        samples = scrape(client)
        assert value(samples, "hub_http_request_duration_seconds_count", method="GET",
                     route="/v1/messages/{message_id}", status="4xx") >= 1
        assert value(samples, "hub_http_request_duration_seconds_count", method="GET", route="unmatched",
                     status="4xx") >= 1


class TestTrafficMovesTheFigures:
    def test_webhooks_deliveries_and_a_failing_provider(self, live_hub):
        hub = live_hub
        hub.runtime.settings.metrics_cache_seconds = 0
        make_fast(hub, max_attempts=2)
        tenant = twilio_tenant(hub, "metrics")
        before = scrape(hub.http)

        # a verified inbound webhook, and one with a bad signature
        path, request = signed_inbound(hub, tenant)
        assert hub.http.post(path, **request).status_code == 200
        request["headers"]["X-Twilio-Signature"] = "forged"
        request["data"]["MessageSid"] = "SM" + uuid.uuid4().hex
        assert hub.http.post(path, **request).status_code == 403
        # a message delivered, then one the provider refuses until it is dead-lettered
        delivered = send(hub, tenant).json()["id"]
        wait_for_status(hub, tenant, delivered, "sent", "delivered")
        r = hub.http.post(f"{hub.sandbox_url}/_sandbox/twilio/failures",
                          json={"kind": "http_500", "resource": "messages"})
        assert r.status_code in (200, 201), r.text
        dead = send(hub, tenant).json()["id"]
        wait_for_status(hub, tenant, dead, "dead")

        def moved():
            after = scrape(hub.http)
            return after if value(after, "hub_webhook_dispatch_lag_seconds_count") > value(
                before, "hub_webhook_dispatch_lag_seconds_count") else None

        after = eventually(moved, what="the inbound event dispatched")
        assert value(after, "hub_webhooks_received_total", kind="twilio") - value(
            before, "hub_webhooks_received_total", kind="twilio") >= 2
        assert value(after, "hub_webhooks_rejected_total", kind="twilio", reason="invalid_signature") - value(
            before, "hub_webhooks_rejected_total", kind="twilio", reason="invalid_signature") == 1
        assert value(after, "hub_deliveries_total", channel="sms", outcome="sent") > value(
            before, "hub_deliveries_total", channel="sms", outcome="sent")
        assert value(after, "hub_deliveries_total", channel="sms", outcome="dead") > value(
            before, "hub_deliveries_total", channel="sms", outcome="dead")
        assert value(after, "hub_provider_errors_total", provider="twilio", operation="send") - value(
            before, "hub_provider_errors_total", provider="twilio", operation="send") >= 2
        assert value(after, "hub_provider_call_duration_seconds_count", provider="twilio", operation="send") - value(
            before, "hub_provider_call_duration_seconds_count", provider="twilio", operation="send") >= 3
        assert value(after, "hub_dead_letters") >= 1
        # no tenant id, phone number or message id in any label
        text = hub.http.get("/metrics").text
        for secret in (str(tenant.tenant_id), tenant.number, CUSTOMER, dead, delivered):
            assert secret not in text

        # the failing provider shows in the tenant's integration health too
        health = hub.http.get("/v1/integrations/health", headers=tenant.headers).json()["integrations"]
        twilio = next(i for i in health if i["kind"] == "twilio")
        assert twilio["last_failure"]["source"] == "delivery"
        assert twilio["last_success"] is not None

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_webhooks_to_unknown_kinds_share_one_label(self, client):
        before = scrape(client)
        for _ in range(3):
            client.post(f"/webhooks/x{uuid.uuid4().hex[:12]}", content=b"{}")
        after = scrape(client)
        assert value(after, "hub_webhooks_received_total", kind="unknown") - value(
            before, "hub_webhooks_received_total", kind="unknown") == 3
        assert value(after, "hub_webhooks_rejected_total", kind="unknown", reason="unknown_kind") - value(
            before, "hub_webhooks_rejected_total", kind="unknown", reason="unknown_kind") == 3


class TestTheChartsNames:
    def test_every_metric_the_alerts_may_use_is_exposed(self, client, runtime, redis_url):
        """The chart's PrometheusRule is checked against tests/deploy/test_chart.py's METRICS;
        here the hub proves it exposes each of them (with Redis and a backup on record)."""
        from hub.backups.models import BackupRun
        from hub.db import utcnow
        from tests.deploy.test_chart import METRICS

        runtime.settings.redis_url = redis_url
        runtime.settings.metrics_cache_seconds = 0
        with runtime.session_factory() as session, session.begin():
            session.add(BackupRun(name="b1", status="succeeded", engine="sqlite", started_at=utcnow()))
        r = client.get("/metrics")
        families = {f.name for f in text_string_to_metric_families(r.text)}
        # the parser names a counter family without its _total suffix
        exposed = families | {f"{name}_total" for name in families}
        assert exposed >= METRICS, METRICS - exposed
        samples = scrape(client)
        assert {labels for name, labels in samples if name == "hub_queue_depth"} == {
            (("queue", q),) for q in ("calendar", "hub", "maintenance")}
