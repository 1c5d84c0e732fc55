"""The Twilio sandbox's own surface: wire shapes the SDK depends on, simulated inbound
traffic, and the ``/_sandbox/twilio`` control endpoints driven over HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest
from twilio.base.page import Page

from connectors.base import MESSAGE_RECEIVED, OutboundMessage, TransientProviderError
from connectors.twilio import TwilioConnector
from tests.support import random_hex

if TYPE_CHECKING:
    from conftest import MainAccount, Sandbox, Tenant, WebhookReceiver

CUSTOMER = "+5521987654321"
SERVICE = "MG" + "cd" * 16


def api(sandbox: Sandbox, account: MainAccount | Tenant) -> httpx.Client:
    sid = account.sid
    token = account.token
    return httpx.Client(base_url=f"{sandbox.url}/2010-04-01/Accounts/{sid}", auth=(sid, token), timeout=5)


class TestWireShapes:
    def test_list_pages_hold_exactly_one_record_key(self, sandbox: Sandbox, tenant: Tenant) -> None:
        tenant.connector.send(OutboundMessage(channel="sms", to=CUSTOMER, body="oi"))
        with api(sandbox, tenant) as client:
            for path, key in [
                ("/IncomingPhoneNumbers.json", "incoming_phone_numbers"),
                ("/Messages.json", "messages"),
                ("/AvailablePhoneNumbers/BR/Local.json", "available_phone_numbers"),
            ]:
                page = client.get(path).json()
                assert set(page) - Page.META_KEYS == {key}, path
                assert page[key], path
        with httpx.Client(auth=(tenant.sid, tenant.token)) as client:
            page = client.get(f"{sandbox.url}/2010-04-01/Accounts.json").json()
        assert set(page) - Page.META_KEYS == {"accounts"}
        assert [a["sid"] for a in page["accounts"]] == [tenant.sid]

    def test_refusals_have_twilios_error_shape(self, sandbox: Sandbox, main_account: MainAccount) -> None:
        with httpx.Client(auth=(main_account.sid, "")) as client:
            answer = client.get(f"{sandbox.url}/2010-04-01/Accounts/{main_account.sid}.json")
        assert answer.status_code == 401
        assert answer.json() == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }

    def test_malformed_account_sid_is_refused(self, sandbox: Sandbox) -> None:
        with httpx.Client(auth=("AC123", "token")) as client:
            assert client.get(f"{sandbox.url}/2010-04-01/Accounts/AC123.json").status_code == 401


def sent_all(sandbox: Sandbox, tenant: Tenant, bodies: list[str]) -> list[str]:
    """Send ``bodies`` in order and wait until each is delivered (each has a DateSent)."""
    sids = [tenant.connector.send(OutboundMessage(channel="sms", to=CUSTOMER, body=b)).provider_message_id
            for b in bodies]
    deadline = time.monotonic() + 30
    while any(sandbox.state._messages[sid].status != "delivered" for sid in sids):
        assert time.monotonic() < deadline, "the sandbox never sent them"
        time.sleep(0.02)
    return sids


def listed(client: httpx.Client, **params: str) -> list[str]:
    """The bodies of every page of the message list, following ``next_page_uri``."""
    page = client.get("/Messages.json", params=params)
    assert page.status_code == 200, page.text
    bodies = [m["body"] for m in page.json()["messages"]]
    while page.json()["next_page_uri"]:
        page = client.get(str(client.base_url.copy_with(raw_path=page.json()["next_page_uri"].encode())))
        bodies += [m["body"] for m in page.json()["messages"]]
    return bodies


class TestMessageList:
    """As Twilio lists messages: newest first by DateSent, filtered by GMT day, paged."""

    def test_newest_first_over_every_page(self, sandbox: Sandbox, tenant: Tenant) -> None:
        bodies = [f"m{i}" for i in range(7)]
        sent_all(sandbox, tenant, bodies)
        with api(sandbox, tenant) as client:
            assert listed(client, PageSize="3") == bodies[::-1]
            first = client.get("/Messages.json", params={"PageSize": "3"}).json()
            assert "PageToken=PA" in first["next_page_uri"] and first["page_size"] == 3
            assert client.get("/Messages.json").json()["page_size"] == 50
            assert client.get("/Messages.json", params={"PageSize": "5000"}).json()["page_size"] == 1000

    def test_a_page_is_not_shifted_by_messages_sent_meanwhile(self, sandbox: Sandbox, tenant: Tenant) -> None:
        sent_all(sandbox, tenant, ["a", "b", "c", "d"])
        with api(sandbox, tenant) as client:
            first = client.get("/Messages.json", params={"PageSize": "2"}).json()
            sent_all(sandbox, tenant, ["e", "f"])
            second = client.get(str(client.base_url.copy_with(raw_path=first["next_page_uri"].encode()))).json()
        assert [m["body"] for m in first["messages"]] == ["d", "c"]
        assert [m["body"] for m in second["messages"]] == ["b", "a"]

    def test_date_sent_filters_go_by_gmt_day(self, sandbox: Sandbox, tenant: Tenant) -> None:
        a, b, c, unsent = sent_all(sandbox, tenant, ["a", "b", "c", "queued"])
        for sid, moment in ((a, datetime(2026, 1, 1, 10, tzinfo=UTC)), (b, datetime(2026, 1, 2, 23, 59, tzinfo=UTC)),
                            (c, datetime(2026, 1, 3, tzinfo=UTC)), (unsent, None)):
            sandbox.state._messages[sid].date_sent = moment  # (a message Twilio still queues has none)
        with api(sandbox, tenant) as client:
            assert listed(client) == ["queued", "c", "b", "a"]
            assert listed(client, DateSent="2026-01-02") == ["b"]
            assert listed(client, **{"DateSent>": "2026-01-02"}) == ["c", "b"]
            assert listed(client, **{"DateSent<": "2026-01-02"}) == ["b", "a"]
            # the SDK serializes a datetime as a timestamp: only its day counts
            assert listed(client, **{"DateSent>": "2026-01-02T23:59:59Z"}) == ["c", "b"]
            answer = client.get("/Messages.json", params={"DateSent>": "yesterday"})
        assert answer.status_code == 400 and answer.json()["code"] == 20001

    def test_to_and_from_filter_exactly(self, sandbox: Sandbox, tenant: Tenant) -> None:
        sent_all(sandbox, tenant, ["ours"])
        tenant.connector.send(OutboundMessage(channel="sms", to="+5521900001111", body="other"))
        with api(sandbox, tenant) as client:
            assert listed(client, To=CUSTOMER, From=tenant.number) == ["ours"]
            assert listed(client, To=CUSTOMER, From="+5521900002222") == []


class TestSimulatedInbound:
    def test_sms_reaches_the_number_sms_url_signed(
        self, sandbox: Sandbox, tenant: Tenant, receiver: WebhookReceiver
    ) -> None:
        delivery = sandbox.state.simulate_inbound(to=tenant.number, from_=CUSTOMER, body="Posso remarcar?")
        assert delivery.status_code == 200 and delivery.url == receiver.url("/inbound")
        [hit] = receiver.wait_for(1)
        assert TwilioConnector.verify(hit, tenant.token)
        assert TwilioConnector.route_keys(hit) == [tenant.number, tenant.sid]
        [event] = TwilioConnector.parse(hit)
        assert (event.type, event.provider_event_id) == (MESSAGE_RECEIVED, delivery.message_sid)
        assert event.data["from"] == CUSTOMER and event.data["channel"] == "sms"
        assert event.data["body"] == "Posso remarcar?"

    def test_whatsapp_with_media_through_a_service_over_http(
        self, sandbox: Sandbox, tenant: Tenant, receiver: WebhookReceiver
    ) -> None:
        request = {
            "to": tenant.number,
            "from": CUSTOMER,
            "body": "Segue o exame",
            "channel": "whatsapp",
            "media": [{"url": "https://media.example.com/exame.jpg", "content_type": "image/jpeg"}],
            "messaging_service_sid": SERVICE,
            "profile_name": "Maria",
        }
        answer = httpx.post(f"{sandbox.url}/_sandbox/twilio/inbound", json=request, timeout=5)
        assert answer.status_code == 200, answer.text
        [hit] = receiver.wait_for(1)
        assert hit.form["From"] == f"whatsapp:{CUSTOMER}" and hit.form["To"] == f"whatsapp:{tenant.number}"
        assert TwilioConnector.verify(hit, tenant.token)
        assert TwilioConnector.route_keys(hit) == [tenant.number, SERVICE, tenant.sid]
        [event] = TwilioConnector.parse(hit)
        assert event.data["channel"] == "whatsapp"
        assert event.data["profile_name"] == "Maria"
        assert event.data["media"] == [{"url": "https://media.example.com/exame.jpg", "content_type": "image/jpeg"}]

    def test_number_without_sms_url_goes_to_the_hub_url(
        self, sandbox: Sandbox, main_connector: TwilioConnector, receiver: WebhookReceiver
    ) -> None:
        [(_, own)] = main_connector.list_numbers()[:1]
        with pytest.raises(LookupError):
            sandbox.state.simulate_inbound(to=own, from_=CUSTOMER, body="x")
        answer = httpx.patch(f"{sandbox.url}/_sandbox/twilio/settings", json={"hub_url": receiver.base_url})
        assert answer.json()["hub_url"] == receiver.base_url
        try:
            delivery = sandbox.state.simulate_inbound(to=own, from_=CUSTOMER, body="x")
        finally:
            sandbox.state.hub_url = None
        assert delivery.url == receiver.url("/webhooks/twilio")

    def test_unknown_number_is_a_404(self, sandbox: Sandbox) -> None:
        answer = httpx.post(
            f"{sandbox.url}/_sandbox/twilio/inbound", json={"to": "+5511900000001", "from": CUSTOMER}
        )
        assert answer.status_code == 404


class TestControlEndpoints:
    def test_failure_injection_over_http(self, sandbox: Sandbox, tenant: Tenant) -> None:
        control = f"{sandbox.url}/_sandbox/twilio"
        created = httpx.post(
            f"{control}/failures", json={"kind": "http_429", "number": CUSTOMER, "retry_after": 3, "times": 1}
        )
        assert created.status_code == 201
        [listed] = httpx.get(f"{control}/failures").json()["failures"]
        assert listed["id"] == created.json()["id"] and listed["remaining"] == 1
        with pytest.raises(TransientProviderError) as caught:
            tenant.connector.send(OutboundMessage(channel="sms", to=CUSTOMER, body="x"))
        assert caught.value.retry_after == 3
        assert httpx.get(f"{control}/failures").json()["failures"] == []

        httpx.post(f"{control}/failures", json={"kind": "http_500"})
        assert httpx.delete(f"{control}/failures").status_code == 204
        tenant.connector.send(OutboundMessage(channel="sms", to=CUSTOMER, body="x"))
        [sent] = httpx.get(f"{control}/messages", params={"to": CUSTOMER}).json()["messages"]
        assert sent["account_sid"] == tenant.sid

    def test_bad_failure_is_a_422(self, sandbox: Sandbox) -> None:
        control = f"{sandbox.url}/_sandbox/twilio"
        assert httpx.post(f"{control}/failures", json={"kind": "api_error", "code": 12345}).status_code == 422
        assert httpx.post(f"{control}/failures", json={"kind": "meteor"}).status_code == 422
        assert httpx.post(f"{control}/failures", json={"kind": "timeout", "delay": 3600}).status_code == 422

    def test_register_account_and_reset(self, sandbox: Sandbox, connector_for) -> None:
        control = f"{sandbox.url}/_sandbox/twilio"
        sid, token = "AC" + random_hex(16), random_hex(16)
        assert httpx.post(f"{control}/accounts", json={"sid": sid, "auth_token": token}).status_code == 201
        # the registered token, not the first one a client happens to present, is the account's
        assert not connector_for(sid, "guess").check().ok
        assert connector_for(sid, token).check().ok
        assert sid in [a["sid"] for a in httpx.get(f"{control}/accounts").json()["accounts"]]
        assert httpx.post(f"{control}/reset").status_code == 204
        assert httpx.get(f"{control}/accounts").json()["accounts"] == []
