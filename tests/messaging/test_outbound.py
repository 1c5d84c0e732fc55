"""POST /v1/messages through the live hub to the sandbox Twilio: queued, sent, delivered;
addresses and segments validated with nothing written on refusal; Idempotency-Key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid

import pytest
from sqlalchemy import select

from hub import idempotency
from hub.messaging.models import Conversation
from hub.messaging.service import MAX_SMS_SEGMENTS, SEND_SCOPE
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.messaging.outbound_support import (
    CUSTOMER,
    get_message,
    make_fast,
    rows_of,
    send,
    sent_to,
    twilio_tenant,
    wait_for_status,
)


@pytest.fixture
def hub(live_hub):
    make_fast(live_hub)
    return live_hub


@pytest.fixture
def acme(hub):
    return twilio_tenant(hub, "acme")


def nothing_written(hub, tenant) -> None:
    assert rows_of(hub.runtime, tenant.tenant_id) == {"messages": 0, "conversations": 0, "attempts": 0, "outbox": 0}
    assert hub.sandbox.twilio.sent_messages(account_sid=tenant.account_sid) == []


class TestSend:
    def test_an_sms_is_queued_then_sent_then_delivered(self, hub, acme):
        r = send(hub, acme, to="+55 (11) 98765-4321", body="Sua consulta é amanhã às 14h.")
        assert r.status_code == 202, r.text
        queued = r.json()
        assert queued["status"] == "queued" and queued["to"] == CUSTOMER and queued["from"] == acme.number
        assert queued["segments"] == 1 and queued["direction"] == "outbound"
        assert "Idempotent-Replay" not in r.headers

        done = wait_for_status(hub, acme, queued["id"], "delivered")
        [created] = sent_to(hub, CUSTOMER)
        assert created["sid"] == done["provider_message_id"]
        assert created["account_sid"] == acme.account_sid and created["from"] == acme.number
        assert created["body"] == "Sua consulta é amanhã às 14h."
        assert done["sent_at"] and done["delivered_at"]
        assert [(a["number"], a["outcome"]) for a in done["attempts"]] == [(1, "sent")]
        # the status callback was asked of Twilio at the hub's public URL
        callbacks = [c for c in hub.sandbox.twilio.callbacks() if c["form"]["MessageSid"] == created["sid"]]
        assert callbacks and all(c["url"] == f"{hub.url}/webhooks/twilio/status" for c in callbacks)

    def test_whatsapp_goes_from_our_number_and_is_read(self, hub, acme):
        r = send(hub, acme, channel="whatsapp", body="Olá! Seu pedido saiu para entrega.")
        assert r.status_code == 202, r.text
        done = wait_for_status(hub, acme, r.json()["id"], "read")
        [created] = sent_to(hub, CUSTOMER)
        assert created["to"] == f"whatsapp:{CUSTOMER}" and created["from"] == f"whatsapp:{acme.number}"
        assert done["segments"] is None and done["channel"] == "whatsapp"

    def test_media_urls_reach_the_provider(self, hub, acme):
        r = send(hub, acme, body="Segue o recibo", media_urls=["https://cdn.example.com/recibo.pdf"])
        assert r.status_code == 202, r.text
        assert r.json()["media"] == [{"url": "https://cdn.example.com/recibo.pdf", "content_type": None}]
        wait_for_status(hub, acme, r.json()["id"], "delivered")
        assert sent_to(hub, CUSTOMER)[0]["num_media"] == "1"

    def test_a_brazilian_mobile_with_or_without_its_ninth_digit_is_one_contact(self, hub, acme):
        spellings = ["+55 11 8765-4321", "(11) 98765-4321", "5511987654321", "whatsapp:+551187654321"]
        ids = []
        for raw in spellings:
            r = send(hub, acme, to=raw, body=f"para {raw}")
            assert r.status_code == 202, r.text
            assert r.json()["to"] == CUSTOMER
            ids.append(r.json()["conversation_id"])
        assert len(set(ids)) == 1
        with hub.runtime.session_factory() as session:
            [conversation] = session.scalars(select(Conversation).where(Conversation.tenant_id == acme.tenant_id))
        assert conversation.contact_address == CUSTOMER and conversation.hub_address == acme.number
        for message_id in [m["id"] for m in hub.http.get("/v1/messages", headers=acme.headers).json()["data"]]:
            wait_for_status(hub, acme, message_id, "delivered")
        assert len(sent_to(hub, CUSTOMER)) == len(spellings)

    def test_a_landline_is_not_given_a_ninth_digit(self, hub, acme):
        r = send(hub, acme, to="(11) 3456-7890")
        assert r.status_code == 202, r.text
        assert r.json()["to"] == "+551134567890"

    def test_exactly_the_maximum_of_segments_is_accepted(self, hub, acme):
        r = send(hub, acme, body="a" * (153 * MAX_SMS_SEGMENTS))
        assert r.status_code == 202, r.text
        assert r.json()["segments"] == MAX_SMS_SEGMENTS

    @pytest.mark.redis
    def test_on_redis_the_worker_delivers_it_too(self, live_hub, redis_url):
        make_fast(live_hub)
        tenant = twilio_tenant(live_hub, "redis-acme")
        r = send(live_hub, tenant)
        assert r.status_code == 202, r.text
        wait_for_status(live_hub, tenant, r.json()["id"], "delivered")
        assert len(sent_to(live_hub, CUSTOMER)) == 1


class TestRefusals:
    @pytest.mark.parametrize(("to", "problem"), [
        ("12345", "not a possible phone number"),
        ("+55 11 9876", "too short"),
        ("ligue para mim", "no digits"),
        ("9876-5432", "area code"),
        ("+55 11 98765-4321 ext. 12", "extension"),
        ("+999 1234567", "not a phone number"),
    ])
    def test_a_bad_number_is_a_422_naming_the_problem_and_writes_nothing(self, hub, acme, to, problem):
        r = send(hub, acme, to=to)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_address"
        assert problem in error["message"] and error["message"].startswith("to:")
        nothing_written(hub, acme)

    @pytest.mark.parametrize(("body", "encoding"), [
        ("a" * (153 * MAX_SMS_SEGMENTS + 1), "GSM-7"),
        ("ç" * (67 * MAX_SMS_SEGMENTS + 1), "UCS-2"),
    ])
    def test_too_many_segments_is_a_422_and_writes_nothing(self, hub, acme, body, encoding):
        r = send(hub, acme, body=body)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "too_many_segments"
        assert error["details"]["encoding"] == encoding
        assert error["details"]["segments"] == MAX_SMS_SEGMENTS + 1
        assert error["details"]["max_segments"] == MAX_SMS_SEGMENTS
        nothing_written(hub, acme)

    def test_whatsapp_has_no_segments_to_count(self, hub, acme):
        r = send(hub, acme, channel="whatsapp", body="ç" * 1000)
        assert r.status_code == 202, r.text

    @pytest.mark.parametrize("body", [
        {"channel": "sms", "to": CUSTOMER, "body": "   "},
        {"channel": "sms", "to": CUSTOMER, "body": "x" * 1601},
        {"channel": "fax", "to": CUSTOMER, "body": "oi"},
        {"channel": "sms", "to": CUSTOMER, "template": "welcome", "body": "oi"},
        {"channel": "sms", "to": CUSTOMER, "body": "oi", "media_urls": ["ftp://example.com/a.pdf"]},
        {"channel": "sms", "to": CUSTOMER, "body": "oi", "priority": "high"},
        {"channel": "sms", "body": "oi"},
    ])
    def test_a_malformed_request_is_a_422_and_writes_nothing(self, hub, acme, body):
        r = hub.http.post("/v1/messages", headers=acme.headers, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"
        nothing_written(hub, acme)

    def test_without_a_twilio_integration_it_is_a_409(self, hub):
        tenant = twilio_tenant(hub, "no-twilio")
        with hub.runtime.session_factory() as session, session.begin():
            tenants.delete_integration(session=session, tenant_id=tenant.tenant_id, kind="twilio")
        r = send(hub, tenant)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "no_sending_integration"
        nothing_written(hub, tenant)

    def test_an_inactive_integration_is_a_409(self, hub):
        tenant = twilio_tenant(hub, "pending", status=IntegrationStatus.ERROR)
        r = send(hub, tenant)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "integration_inactive"
        nothing_written(hub, tenant)

    def test_a_channel_the_integration_does_not_enable_is_a_422(self, hub):
        tenant = twilio_tenant(hub, "sms-only", channels=("sms",))
        r = send(hub, tenant, channel="whatsapp")
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "channel_not_enabled"
        assert "whatsapp" in r.json()["error"]["message"]
        nothing_written(hub, tenant)

    def test_sending_needs_the_messages_write_scope(self, hub):
        tenant = twilio_tenant(hub, "reader", scopes=["messages:read"])
        r = send(hub, tenant)
        assert r.status_code == 403, r.text
        nothing_written(hub, tenant)


class TestIdempotency:
    def test_the_same_key_and_body_replay_the_same_message(self, hub, acme):
        key = {"Idempotency-Key": "pedido-123-aviso"}
        first = send(hub, acme, headers=key)
        assert first.status_code == 202, first.text
        wait_for_status(hub, acme, first.json()["id"], "delivered")
        again = send(hub, acme, headers=key)
        assert again.status_code == 202, again.text
        assert again.headers["Idempotent-Replay"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["status"] == "delivered"  # the message as it is now
        assert rows_of(hub.runtime, acme.tenant_id)["messages"] == 1
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_the_same_key_with_another_body_is_a_422(self, hub, acme):
        key = {"Idempotency-Key": "pedido-124"}
        assert send(hub, acme, headers=key, body="primeiro").status_code == 202
        r = send(hub, acme, headers=key, body="segundo")
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "idempotency_key_reused"
        assert rows_of(hub.runtime, acme.tenant_id)["messages"] == 1

    def test_a_key_still_in_flight_is_a_409_with_retry_after(self, hub, acme):
        body = {"channel": "sms", "to": CUSTOMER, "body": "em andamento", "media_urls": []}
        # another request holds the key: its claim is recorded, its result not yet
        with hub.runtime.session_factory() as session, session.begin():
            idempotency.claim(session=session, tenant_id=acme.tenant_id, scope=SEND_SCOPE, key="k-in-flight",
                              body=body)
        r = hub.http.post("/v1/messages", headers={**acme.headers, "Idempotency-Key": "k-in-flight"}, json=body)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "idempotency_key_in_flight"
        assert int(r.headers["Retry-After"]) >= 1
        nothing_written(hub, acme)

    def test_concurrent_requests_with_one_key_make_one_message(self, hub, acme):
        key = {"Idempotency-Key": "double-click"}
        answers: list = []
        barrier = threading.Barrier(3)

        def post() -> None:
            barrier.wait()
            answers.append(send(hub, acme, headers=key))

        threads = [threading.Thread(target=post) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert sorted(a.status_code for a in answers) == [202, 202, 202], [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        assert sum(a.headers.get("Idempotent-Replay") == "true" for a in answers) == 2
        wait_for_status(hub, acme, answers[0].json()["id"], "delivered")
        assert rows_of(hub.runtime, acme.tenant_id)["messages"] == 1
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_a_refused_request_does_not_use_up_its_key(self, hub, acme):
        key = {"Idempotency-Key": "fix-and-resend"}
        assert send(hub, acme, headers=key, to="12345").status_code == 422
        r = send(hub, acme, headers=key)
        assert r.status_code == 202, r.text
        assert "Idempotent-Replay" not in r.headers

    def test_keys_are_per_tenant(self, hub, acme):
        other = twilio_tenant(hub, "other")
        key = {"Idempotency-Key": "shared-key"}
        a, b = send(hub, acme, headers=key), send(hub, other, headers=key)
        assert a.status_code == b.status_code == 202
        assert a.json()["id"] != b.json()["id"] and "Idempotent-Replay" not in b.headers


class TestReading:
    def test_list_filters_by_status_channel_and_recipient_in_any_spelling(self, hub, acme):
        sms = send(hub, acme).json()
        other = send(hub, acme, to="+5521988887777", channel="whatsapp").json()
        # The sandbox reports WhatsApp "read" after "delivered"; wait for the last one.
        wait_for_status(hub, acme, sms["id"], "delivered")
        wait_for_status(hub, acme, other["id"], "read")

        def ids(**params) -> list[str]:
            r = hub.http.get("/v1/messages", headers=acme.headers, params=params)
            assert r.status_code == 200, r.text
            return [m["id"] for m in r.json()["data"]]

        assert ids() == [other["id"], sms["id"]]  # newest first
        assert ids(channel="sms") == [sms["id"]]
        assert ids(to="(11) 8765-4321") == [sms["id"]]
        assert ids(status="read") == [other["id"]]
        assert ids(status="dead") == []
        assert ids(conversation_id=sms["conversation_id"]) == [sms["id"]]
        first = hub.http.get("/v1/messages", headers=acme.headers, params={"limit": 1}).json()
        second = hub.http.get("/v1/messages", headers=acme.headers,
                              params={"limit": 1, "cursor": first["next_cursor"]}).json()
        assert [m["id"] for m in first["data"] + second["data"]] == [other["id"], sms["id"]]
        assert second["next_cursor"] is None

    def test_bad_filters_are_4xx(self, hub, acme):
        assert hub.http.get("/v1/messages?to=abc", headers=acme.headers).json()["error"]["code"] == "invalid_address"
        assert hub.http.get("/v1/messages?status=lost", headers=acme.headers).status_code == 422
        assert hub.http.get("/v1/messages?cursor=garbage", headers=acme.headers).status_code == 400

    def test_an_unknown_message_is_a_404(self, hub, acme):
        r = hub.http.get(f"/v1/messages/{uuid.uuid4()}", headers=acme.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert hub.http.get("/v1/messages/not-a-uuid", headers=acme.headers).status_code == 422


class TestCli:
    def hub_test(self, hub, tmp_path, *args: str) -> subprocess.CompletedProcess:
        """``hub test …`` as a user runs it: its own process, embedded worker and relay,
        the live hub's database and sandbox, status callbacks to the live hub."""
        settings = hub.runtime.settings
        env = {**os.environ, "HUB_DATABASE_URL": settings.effective_database_url,
               "HUB_MASTER_KEYS": settings.master_keys.get_secret_value(), "HUB_PUBLIC_URL": hub.url,
               "HUB_SANDBOX_URL": hub.sandbox_url, "HUB_VAR_DIR": str(tmp_path), "HUB_REDIS_URL": "",
               "HUB_LOG_LEVEL": "WARNING"}
        return subprocess.run([sys.executable, "-m", "hub.cli", "test", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    def test_hub_test_sms_queues_one_and_prints_its_final_status(self, hub, acme, tmp_path):
        result = self.hub_test(hub, tmp_path, "sms", "--tenant", "acme", "+55 11 8765-4321", "--body", "teste do hub")
        assert result.returncode == 0, result.stdout + result.stderr
        printed = json.loads(result.stdout)
        assert printed["status"] == "delivered" and printed["to"] == CUSTOMER
        assert printed["attempts"] == [{"number": 1, "outcome": "sent", "error_code": None}]
        [created] = sent_to(hub, CUSTOMER)
        assert created["body"] == "teste do hub" and created["sid"] == printed["provider_message_id"]
        assert get_message(hub, acme, printed["id"])["status"] == "delivered"

    def test_hub_test_refuses_a_bad_number_clearly(self, hub, acme, tmp_path):
        result = self.hub_test(hub, tmp_path, "whatsapp", "--tenant", "acme", "12345")
        assert result.returncode == 2
        assert "not a possible phone number" in result.stderr
        assert rows_of(hub.runtime, acme.tenant_id)["messages"] == 0

    def test_hub_test_reports_a_failure_with_its_code(self, hub, acme, tmp_path):
        hub.sandbox.twilio.inject_failure("api_error", code=21610, number=CUSTOMER)
        result = self.hub_test(hub, tmp_path, "sms", "--tenant", "acme", CUSTOMER)
        assert result.returncode == 1, result.stdout + result.stderr
        printed = json.loads(result.stdout)
        assert printed["status"] == "failed" and printed["error_code"] == "21610"
