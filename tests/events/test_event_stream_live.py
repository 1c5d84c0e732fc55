"""The stream end to end: a customer's SMS through the sandbox Twilio reaches an SSE
client pushed by the commit, not found later by the stream's idle catch-up; and
across processes, through Redis pub/sub. (Latency figures belong to bench/, where a
loaded machine makes a slow run, not a failed one.)"""

from __future__ import annotations

import pytest

from hub.runtime import build_runtime
from tests.events.conftest import ServedHub, SSEClient, commit_event, stream_settings
from tests.support import bearer, create_client, get_token
from tests.webhooks.test_inbound_live import onboard, sandbox_account

CUSTOMER = "+5511987654321"
OTHER_CUSTOMER = "+5511912345678"


def _receive_sms_live(hub) -> None:
    clinic = onboard(hub, "clinica", sandbox_account(hub))
    token = get_token(hub.http, create_client(hub.runtime, clinic.tenant_id, ["messages:read"]))
    stream = SSEClient(f"{hub.url}/v1/events/stream", headers=bearer(token),
                       params={"types": "message.received"})
    try:
        # The first message pays once for what is loaded lazily (the connector, phone
        # metadata, the worker's first task); the second is the steady-state latency.
        hub.sandbox.twilio.simulate_inbound(to=clinic.numbers[0], from_=OTHER_CUSTOMER, body="Oi")
        assert stream.next(timeout=30).event == "message.received"
        # An idle stream would find the event at its next heartbeat anyway; arriving well
        # before that proves the commit's notice woke it (the push path), however slow
        # the machine is today.
        catch_up = hub.runtime.settings.events_heartbeat_seconds
        delivery = hub.sandbox.twilio.simulate_inbound(to=clinic.numbers[0], from_=CUSTOMER, body="Cheguei!")
        got = stream.next(timeout=catch_up * 0.8)
    finally:
        stream.close()

    assert delivery.status_code == 200
    assert got.event == "message.received"
    message = hub.http.get(f"/v1/messages/{got.data['data']['message_id']}", headers=bearer(token)).json()
    assert (message["body"], message["from"], message["direction"]) == ("Cheguei!", CUSTOMER, "inbound")
    assert got.data["data"]["conversation_id"] == message["conversation_id"]


class TestEndToEnd:
    def test_an_sse_client_is_pushed_an_inbound_sms(self, live_hub):
        _receive_sms_live(live_hub)

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    def test_the_same_through_redis(self, live_hub, redis_url):
        assert live_hub.runtime.settings.redis_url
        _receive_sms_live(live_hub)


class TestAcrossProcesses:
    def test_an_event_committed_by_one_runtime_reaches_a_stream_served_by_another(self, settings, redis_url):
        # a long heartbeat: the stream's own catch-up from the database must not be what
        # delivers the event, Redis must
        shared = stream_settings(settings, redis_url=redis_url, events_heartbeat_seconds=25)
        api, worker = build_runtime(shared), build_runtime(shared)
        served = ServedHub(api)
        try:
            tenant_id, token = served.tenant("acme")
            other_id, _ = served.tenant("other")
            stream = served.stream(token)

            # the worker's runtime commits; nothing but Redis links it to the API's streams
            commit_event(worker, other_id, n=0)
            event_id = commit_event(worker, tenant_id, n=1)

            got = stream.next(timeout=20)
            assert (got.id, got.data["data"]) == (served.public(tenant_id, event_id), {"n": 1})
            assert stream.nothing_for(0.3)
        finally:
            served.stop()
            api.close()
            worker.close()

