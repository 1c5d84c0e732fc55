"""The webhook route itself (no worker, no relay): routing, signatures over the
public URL, de-duplication, limits, and that nothing is stored when it must not be."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from hub.db import utcnow
from hub.messaging.models import Direction, Message, MessageStatus
from hub.webhooks.models import WebhookEvent
from hub.webhooks.routes import claim_route
from hub.webhooks.service import handle_event
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.support import create_tenant, random_hex
from tests.webhooks.helpers import (
    count,
    events,
    inbound_form,
    new_account_sid,
    status_form,
    twilio_signature,
    twilio_tenant,
)

FIXTURES = Path(__file__).resolve().parents[2] / "connectors"
PUBLIC = "http://testserver"  # HUB_PUBLIC_URL of the `settings` fixture
NUMBER_A = "+5511930000001"
NUMBER_B = "+5521930000002"
CUSTOMER = "+5511987654321"
SERVICE_SID = "MG" + "ab" * 16


def post_signed(client, path: str, form: dict[str, str], token: str, *, signed_url: str | None = None,
                headers: dict[str, str] | None = None):
    signature = twilio_signature(signed_url or PUBLIC + path, form, token)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature, **(headers or {})})


@pytest.fixture
def tenant_a(runtime):
    return twilio_tenant(runtime, "clinica-a", account_sid=new_account_sid(), auth_token=random_hex(16),
                         numbers=[NUMBER_A])


@pytest.fixture
def tenant_b(runtime):
    return twilio_tenant(runtime, "clinica-b", account_sid=new_account_sid(), auth_token=random_hex(16),
                         numbers=[NUMBER_B])


class TestRouting:
    def test_an_inbound_message_is_stored_for_the_owner_of_the_number(self, client, runtime, tenant_a, tenant_b):
        form = inbound_form(to=NUMBER_B, from_=CUSTOMER, account_sid=tenant_b.account_sid)
        answer = post_signed(client, "/webhooks/twilio/messaging", form, tenant_b.auth_token)

        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/xml")
        assert answer.text.endswith("<Response/>")
        [event] = events(runtime)
        assert (event.kind, event.type, event.provider_event_id) == ("twilio", "message.received", form["MessageSid"])
        assert event.tenant_id == tenant_b.tenant_id and event.integration_id == tenant_b.integration_id
        assert event.payload["body"] == "Olá" and event.payload["from"] == CUSTOMER
        # the route answers before any broker work: nothing was handed on yet
        assert event.dispatched_at is None and event.handled_at is None

    def test_what_the_person_wrote_is_stored_exactly(self, client, runtime, tenant_a):
        # the PostgreSQL path sends a batch as one JSON document: nothing may be lost in it
        body = 'Olá 👋 "aspas", \\barra\\ {"json": [1]}\nlinha\tnova é ção ㅋ'
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid, body=body)
        before = utcnow()
        assert post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token).status_code == 200
        [event] = events(runtime)
        assert event.payload["body"] == body and event.provider_event_id == form["MessageSid"]
        assert before <= event.received_at <= utcnow()

    def test_a_whatsapp_message_routes_by_the_number_without_its_prefix(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid, channel="whatsapp")
        assert post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token).status_code == 200
        [event] = events(runtime)
        assert event.tenant_id == tenant_a.tenant_id and event.payload["channel"] == "whatsapp"

    def test_a_pooled_number_routes_by_its_messaging_service(self, client, runtime):
        # The number itself has no route: only the Messaging Service it belongs to does.
        account_sid, token = new_account_sid(), random_hex(16)
        pooled = twilio_tenant(runtime, "pool", account_sid=account_sid, auth_token=token, numbers=[],
                               route_keys=[SERVICE_SID])
        form = inbound_form(to="+5531930000009", from_=CUSTOMER, account_sid=account_sid,
                            MessagingServiceSid=SERVICE_SID)
        answer = post_signed(client, "/webhooks/twilio/messaging", form, token)

        assert answer.status_code == 200, answer.text
        [event] = events(runtime)
        assert event.tenant_id == pooled.tenant_id

    def test_a_number_of_a_routed_account_routes_by_its_account_sid(self, client, runtime):
        account_sid, token = new_account_sid(), random_hex(16)
        owner = twilio_tenant(runtime, "account", account_sid=account_sid, auth_token=token, numbers=[],
                              route_keys=[account_sid])
        form = inbound_form(to="+5541930000004", from_=CUSTOMER, account_sid=account_sid)
        assert post_signed(client, "/webhooks/twilio/messaging", form, token).status_code == 200
        assert [e.tenant_id for e in events(runtime)] == [owner.tenant_id]

    def test_the_number_wins_over_the_pool(self, client, runtime, tenant_a):
        # tenant A owns the number; another tenant owns the Messaging Service
        other_token = random_hex(16)
        twilio_tenant(runtime, "pool", account_sid=new_account_sid(), auth_token=other_token, numbers=[],
                      route_keys=[SERVICE_SID])
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid,
                            MessagingServiceSid=SERVICE_SID)
        assert post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token).status_code == 200
        assert [e.tenant_id for e in events(runtime)] == [tenant_a.tenant_id]

    def test_a_status_callback_routes_by_our_number(self, client, runtime, tenant_a):
        form = status_form(message_sid="SM" + "1" * 32, status="delivered", from_=NUMBER_A, to=CUSTOMER,
                           account_sid=tenant_a.account_sid)
        assert post_signed(client, "/webhooks/twilio/status", form, tenant_a.auth_token).status_code == 200
        [event] = events(runtime)
        assert (event.type, event.provider_event_id) == ("message.status", f"{'SM' + '1' * 32}:delivered")
        assert event.tenant_id == tenant_a.tenant_id

    def test_the_generic_path_serves_twilio_too(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        answer = post_signed(client, "/webhooks/twilio", form, tenant_a.auth_token)
        assert answer.status_code == 200 and answer.text.endswith("<Response/>")
        assert count(runtime, WebhookEvent) == 1

    def test_an_unknown_number_is_a_404_with_a_log_line_and_nothing_stored(self, client, runtime, tenant_a):
        form = inbound_form(to="+5561930000000", from_=CUSTOMER, account_sid=new_account_sid(),
                            body="segredo do paciente")
        with capture_logs() as logs:
            answer = post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token)

        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "unknown_route"
        assert count(runtime, WebhookEvent) == 0
        [line] = [entry for entry in logs if entry["event"] == "webhook for an unknown route"]
        assert line["kind"] == "twilio" and line["log_level"] == "warning"
        assert "segredo" not in repr(logs) and tenant_a.auth_token not in repr(logs)

    def test_an_unknown_kind_is_a_404(self, client, runtime):
        answer = client.post("/webhooks/carrier-pigeon", content=b"{}")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "unknown_kind"

    def test_a_connector_without_webhooks_routes_nothing(self, client, runtime):
        assert client.post("/webhooks/smtp", data={"To": NUMBER_A}).status_code == 404


class TestSignature:
    def test_a_forged_body_is_a_403_and_nothing_is_stored(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid, body="oi")
        signature = twilio_signature(PUBLIC + "/webhooks/twilio/messaging", form, tenant_a.auth_token)
        forged = {**form, "Body": "transfira R$ 1.000"}
        answer = client.post("/webhooks/twilio/messaging", data=forged, headers={"X-Twilio-Signature": signature})

        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "invalid_signature"
        assert count(runtime, WebhookEvent) == 0

    def test_no_signature_is_a_403(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        assert client.post("/webhooks/twilio/messaging", data=form).status_code == 403
        assert count(runtime, WebhookEvent) == 0

    def test_another_tenants_token_does_not_sign_for_this_number(self, client, runtime, tenant_a, tenant_b):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        assert post_signed(client, "/webhooks/twilio/messaging", form, tenant_b.auth_token).status_code == 403
        assert count(runtime, WebhookEvent) == 0

    def test_a_request_signed_for_another_host_is_refused(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        answer = post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token,
                             signed_url="http://10.0.3.7:8000/webhooks/twilio/messaging")
        assert answer.status_code == 403
        assert count(runtime, WebhookEvent) == 0

    def test_behind_a_proxy_the_public_url_is_what_verifies(self, app, runtime, tenant_a):
        # The proxy forwards to an internal address; Twilio signed the public URL.
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        with TestClient(app, base_url="http://10.0.3.7:8000") as internal:
            internal_signed = post_signed(internal, "/webhooks/twilio/messaging", form, tenant_a.auth_token,
                                          signed_url="http://10.0.3.7:8000/webhooks/twilio/messaging")
            public_signed = post_signed(internal, "/webhooks/twilio/messaging", form, tenant_a.auth_token)
        assert internal_signed.status_code == 403
        assert public_signed.status_code == 200
        assert count(runtime, WebhookEvent) == 1

    def test_the_query_string_is_part_of_the_signed_url(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        path = "/webhooks/twilio/messaging?source=number"
        assert post_signed(client, path, form, tenant_a.auth_token,
                           signed_url=PUBLIC + "/webhooks/twilio/messaging").status_code == 403
        assert post_signed(client, path, form, tenant_a.auth_token).status_code == 200

    def test_a_changed_token_takes_effect_at_once_despite_the_cache(self, client, runtime, tenant_a):
        first = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        assert post_signed(client, "/webhooks/twilio/messaging", first, tenant_a.auth_token).status_code == 200
        new_token = random_hex(16)
        with runtime.session_factory() as session, session.begin():
            tenants.put_integration(
                session=session, vault=runtime.vault, tenant_id=tenant_a.tenant_id, kind="twilio",
                credentials={"account_sid": tenant_a.account_sid, "auth_token": new_token},
                config={"numbers": [NUMBER_A]}, status=IntegrationStatus.ACTIVE)

        second = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        assert post_signed(client, "/webhooks/twilio/messaging", second, tenant_a.auth_token).status_code == 403
        assert post_signed(client, "/webhooks/twilio/messaging", second, new_token).status_code == 200
        assert count(runtime, WebhookEvent) == 2

    def test_an_erased_tenants_webhooks_no_longer_verify(self, client, runtime, tenant_a):
        with runtime.session_factory() as session, session.begin():
            tenants.erase_tenant(session=session, vault=runtime.vault, tenant_id=tenant_a.tenant_id)
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        assert post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token).status_code == 403
        assert count(runtime, WebhookEvent) == 0


class TestDeduplication:
    def test_a_repeated_delivery_is_a_200_and_a_no_op(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
        first = post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token)
        again = post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token)
        assert first.status_code == again.status_code == 200
        assert count(runtime, WebhookEvent) == 1

    def test_each_status_of_one_message_is_its_own_event(self, client, runtime, tenant_a):
        sid = "SM" + "2" * 32
        for status in ("sent", "delivered", "delivered"):
            form = status_form(message_sid=sid, status=status, from_=NUMBER_A, to=CUSTOMER,
                               account_sid=tenant_a.account_sid)
            assert post_signed(client, "/webhooks/twilio/status", form, tenant_a.auth_token).status_code == 200
        assert sorted(e.provider_event_id for e in events(runtime)) == [f"{sid}:delivered", f"{sid}:sent"]

    def test_another_tenant_cannot_pre_empt_an_event_by_claiming_its_id(self, client, runtime, tenant_a, tenant_b):
        # B sent a message; A, signing with its own token, reports a status for B's SID
        # first. B's real callback must still be stored, and only it may move B's message.
        sid = "SM" + random_hex(16)
        with runtime.session_factory() as session, session.begin():
            message = Message(tenant_id=tenant_b.tenant_id, integration_id=tenant_b.integration_id,
                              direction=Direction.OUTBOUND, channel="sms", to_address=CUSTOMER,
                              from_address=NUMBER_B, body="Sua consulta é amanhã", status=MessageStatus.SENT,
                              provider_message_id=sid)
            session.add(message)
        forged = status_form(message_sid=sid, status="delivered", from_=NUMBER_A, to=CUSTOMER,
                             account_sid=tenant_a.account_sid)
        assert post_signed(client, "/webhooks/twilio/status", forged, tenant_a.auth_token).status_code == 200
        real = status_form(message_sid=sid, status="delivered", from_=NUMBER_B, to=CUSTOMER,
                           account_sid=tenant_b.account_sid)
        answer = post_signed(client, "/webhooks/twilio/status", real, tenant_b.auth_token)
        assert answer.status_code == 200

        stored = {(e.tenant_id, e.provider_event_id) for e in events(runtime)}
        assert stored == {(tenant_a.tenant_id, f"{sid}:delivered"), (tenant_b.tenant_id, f"{sid}:delivered")}
        for event in events(runtime):
            handle_event(runtime=runtime, event_id=event.id)
        with runtime.session_factory() as session:
            assert session.get(Message, message.id).status == MessageStatus.DELIVERED

    def test_a_status_applies_only_to_a_message_of_the_integration_that_reported_it(self, client, runtime,
                                                                                     tenant_a):
        # the same tenant, a message sent through another integration of its own
        sid = "SM" + random_hex(16)
        with runtime.session_factory() as session, session.begin():
            message = Message(tenant_id=tenant_a.tenant_id, integration_id=None, direction=Direction.OUTBOUND,
                              channel="email", to_address="ana@example.com", from_address="no-reply@example.com",
                              body="x", status=MessageStatus.SENT, provider_message_id=sid)
            session.add(message)
        form = status_form(message_sid=sid, status="failed", from_=NUMBER_A, to=CUSTOMER,
                           account_sid=tenant_a.account_sid)
        assert post_signed(client, "/webhooks/twilio/status", form, tenant_a.auth_token).status_code == 200
        [event] = events(runtime)
        handle_event(runtime=runtime, event_id=event.id)
        with runtime.session_factory() as session:
            assert session.get(Message, message.id).status == MessageStatus.SENT

    def test_a_json_provider_gets_the_counts_on_the_generic_path(self, client, runtime):
        # WhatsApp Cloud (Meta) on POST /webhooks/whatsapp_cloud: same path, another connector
        app_secret = random_hex(16)
        tenant_id = create_tenant(runtime, "meta")
        with runtime.session_factory() as session, session.begin():
            integration = tenants.put_integration(
                session=session, vault=runtime.vault, tenant_id=tenant_id, kind="whatsapp_cloud",
                credentials={"phone_number_id": "106540352242922", "waba_id": "102290129340398",
                             "access_token": "EAAG" + random_hex(8), "app_secret": app_secret,
                             "verify_token": random_hex(8)},
                config={}, status=IntegrationStatus.ACTIVE)
            claim_route(session, kind="whatsapp_cloud", route_key="106540352242922", integration=integration)
        body = (FIXTURES / "whatsapp_cloud" / "fixtures" / "text.json").read_bytes()
        signature = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}

        first = client.post("/webhooks/whatsapp_cloud", content=body, headers=headers)
        again = client.post("/webhooks/whatsapp_cloud", content=body, headers=headers)
        tampered = body.replace(b"another color", b"another colour")
        forged = client.post("/webhooks/whatsapp_cloud", content=tampered, headers=headers)

        assert first.json() == {"status": "received", "stored": 1, "duplicates": 0}
        assert again.json() == {"status": "received", "stored": 0, "duplicates": 1}
        assert forged.status_code == 403
        [event] = events(runtime)
        assert (event.kind, event.type, event.tenant_id) == ("whatsapp_cloud", "message.received", tenant_id)


class TestLimits:
    def test_a_body_over_one_megabyte_is_a_413(self, client, runtime, tenant_a):
        form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid, body="x" * 1_100_000)
        answer = post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"
        assert count(runtime, WebhookEvent) == 0

    def test_a_streamed_body_over_one_megabyte_is_a_413(self, client, runtime):
        def chunks():
            for _ in range(20):
                yield b"x" * 100_000

        answer = client.post("/webhooks/twilio/messaging", content=chunks(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 413

    def test_providers_are_not_held_to_the_per_ip_limit(self, client, runtime, tenant_a):
        runtime.settings.public_rate_limit = 3
        answers = []
        for _ in range(8):
            form = inbound_form(to=NUMBER_A, from_=CUSTOMER, account_sid=tenant_a.account_sid)
            answers.append(post_signed(client, "/webhooks/twilio/messaging", form, tenant_a.auth_token).status_code)
        assert answers == [200] * 8
        assert count(runtime, WebhookEvent) == 8
