"""Meta's webhooks at the hub: the subscription handshake, signatures, batched changes
routed per phone number (across tenants), and every message kind and status reaching
the messages table through the worker's handlers. Both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.messaging.models import Message
from tests.support import random_hex
from tests.whatsapp.whatsapp_support import (
    BUSINESS,
    CUSTOMER,
    change,
    envelope,
    handle_stored,
    messages_of,
    outbound_message,
    post_signed,
    status_item,
    stored_events,
    text_message,
    wamid,
    whatsapp_tenant,
)


@pytest.fixture
def clinic(runtime):
    return whatsapp_tenant(runtime, "clinic")


class TestInstall:
    def credentials(self, **overrides: str) -> dict[str, str]:
        return {"phone_number_id": "106540352242922", "waba_id": "102290129340398", "access_token": "EAAGsecret123",
                "app_secret": "app-secret-123", "verify_token": "verify-123", **overrides}

    def test_put_routes_the_number_and_never_shows_a_secret(self, client, runtime, provider_sandbox):
        from tests.support import tenant_headers

        _, headers = tenant_headers(client, runtime, "clinic")
        answer = client.put("/v1/integrations/whatsapp_cloud", headers=headers,
                            json={"credentials": self.credentials()})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "active"
        for secret in ("EAAGsecret123", "app-secret-123", "verify-123"):
            assert secret not in answer.text
        assert client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "verify-123",
                                                        "hub.challenge": "42"}).text == "42"
        body = envelope([change("106540352242922", messages=[text_message("Oi")])])
        assert post_signed(client, body, "app-secret-123").status_code == 200
        # a new number and token replace the old ones
        assert client.put("/v1/integrations/whatsapp_cloud", headers=headers, json={"credentials": self.credentials(
            phone_number_id="106540352242999", verify_token="verify-456")}).status_code == 200
        assert post_signed(client, body, "app-secret-123").status_code == 404
        assert client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "verify-123",
                                                        "hub.challenge": "42"}).status_code == 403
        assert client.delete("/v1/integrations/whatsapp_cloud", headers=headers).status_code == 204
        assert client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "verify-456",
                                                        "hub.challenge": "42"}).status_code == 403

    def test_bad_credentials_are_422_and_another_tenants_number_409(self, client, runtime, provider_sandbox):
        from tests.support import tenant_headers

        _, a = tenant_headers(client, runtime, "alpha")
        _, b = tenant_headers(client, runtime, "beta")
        missing = dict(self.credentials())
        del missing["app_secret"]
        for credentials in (missing, self.credentials(phone_number_id="+55 11 9999")):
            answer = client.put("/v1/integrations/whatsapp_cloud", headers=a, json={"credentials": credentials})
            assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_credentials")
        assert client.get("/v1/integrations/whatsapp_cloud", headers=a).status_code == 404  # nothing half written
        assert client.put("/v1/integrations/whatsapp_cloud", headers=a,
                          json={"credentials": self.credentials()}).status_code == 200
        taken = client.put("/v1/integrations/whatsapp_cloud", headers=b, json={"credentials": self.credentials()})
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "route_taken")
        assert client.get("/v1/integrations/whatsapp_cloud", headers=b).status_code == 404


class TestSubscriptionHandshake:
    def query(self, token: str, mode: str = "subscribe", challenge: str = "1158201444") -> dict[str, str]:
        return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}

    def test_the_integrations_verify_token_gets_the_challenge_back_as_text(self, client, runtime, clinic):
        other = whatsapp_tenant(runtime, "other")
        for path in ("/webhooks/whatsapp", "/webhooks/whatsapp_cloud"):
            for tenant in (clinic, other):
                answer = client.get(path, params=self.query(tenant.verify_token))
                assert (answer.status_code, answer.text) == (200, "1158201444")
                assert answer.headers["content-type"].startswith("text/plain")

    def test_a_wrong_token_is_403(self, client, clinic):
        for token in ("nope", clinic.verify_token + "x", clinic.verify_token[:-1], ""):
            assert client.get("/webhooks/whatsapp", params=self.query(token)).status_code == 403

    def test_a_wrong_mode_or_no_challenge_is_403(self, client, clinic):
        assert client.get("/webhooks/whatsapp", params=self.query(clinic.verify_token, mode="unsubscribe")
                          ).status_code == 403
        assert client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe",
                                                        "hub.verify_token": clinic.verify_token}).status_code == 403

    def test_a_removed_integrations_token_no_longer_answers(self, client, runtime, clinic):
        from hub.whatsapp import service as whatsapp
        from tenants import service as tenants

        with runtime.session_factory() as session, session.begin():
            integration = tenants.get_integration(session=session, tenant_id=clinic.tenant_id, kind="whatsapp_cloud")
            whatsapp.uninstall_whatsapp_cloud(session=session, runtime=runtime, integration=integration)
        assert client.get("/webhooks/whatsapp", params=self.query(clinic.verify_token)).status_code == 403


class TestSignature:
    def test_a_forged_signature_is_403_and_nothing_is_stored(self, client, runtime, clinic):
        body = envelope([change(clinic.phone_number_id, messages=[text_message("Oi")])])
        assert post_signed(client, body, "not-the-app-secret").status_code == 403
        tampered = post_signed(client, body, clinic.app_secret)
        assert tampered.status_code == 200  # the genuine one is taken …
        forged = client.post("/webhooks/whatsapp", content=body.replace(b"Oi", b"Pague"),
                             headers={"X-Hub-Signature-256": tampered.request.headers["X-Hub-Signature-256"]})
        assert forged.status_code == 403  # … an altered body with its signature is not
        unsigned = client.post("/webhooks/whatsapp", content=body, headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 403
        assert [e.payload["body"] for e in stored_events(runtime)] == ["Oi"]

    def test_an_unknown_number_is_404(self, client, clinic):
        body = envelope([change("999999999999999", messages=[text_message("Oi")])])
        assert post_signed(client, body, clinic.app_secret).status_code == 404


class TestBatches:
    def test_changes_of_two_tenants_in_one_post_each_reach_their_own(self, client, runtime):
        # one Meta app (a tech provider's) serves both tenants: one secret signs the batch
        shared = random_hex(16)
        a, b = whatsapp_tenant(runtime, "alpha", app_secret=shared), whatsapp_tenant(runtime, "beta",
                                                                                    app_secret=shared)
        sent_b = wamid()
        outbound_message(runtime, b, sent_b)
        body = envelope(
            [change(a.phone_number_id, messages=[text_message("para A 1"), text_message("para A 2")])],
            [change(b.phone_number_id, messages=[text_message("para B")]),
             change(b.phone_number_id, statuses=[status_item(sent_b, "delivered")]),
             change(a.phone_number_id, messages=[text_message("para A 3")])],
            [change("999999999999999", messages=[text_message("ninguém")])],  # no integration has it: dropped
        )
        answer = post_signed(client, body, shared)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == 5

        by_tenant = {(e.tenant_id, e.integration_id, e.payload.get("body") or e.payload["status"])
                     for e in stored_events(runtime)}
        assert by_tenant == {(a.tenant_id, a.integration_id, "para A 1"), (a.tenant_id, a.integration_id, "para A 2"),
                             (a.tenant_id, a.integration_id, "para A 3"), (b.tenant_id, b.integration_id, "para B"),
                             (b.tenant_id, b.integration_id, "delivered")}
        assert set(handle_stored(runtime)) == {"handled"}
        assert [m.body for m in messages_of(runtime, a.tenant_id, "inbound")] == ["para A 1", "para A 2", "para A 3"]
        assert [m.body for m in messages_of(runtime, b.tenant_id, "inbound")] == ["para B"]
        assert [m.status for m in messages_of(runtime, b.tenant_id, "outbound")] == ["delivered"]
        # a repeat of the whole batch stores nothing again
        assert post_signed(client, body, shared).json() == {"status": "received", "stored": 0, "duplicates": 5}

    def test_a_batch_that_does_not_verify_for_every_tenant_it_names_stores_nothing(self, client, runtime):
        a, b = whatsapp_tenant(runtime, "alpha"), whatsapp_tenant(runtime, "beta")
        # signed with A's secret, smuggling a message into B's inbox
        body = envelope([change(a.phone_number_id, messages=[text_message("legit")])],
                        [change(b.phone_number_id, messages=[text_message("smuggled")])])
        assert post_signed(client, body, a.app_secret).status_code == 403
        assert post_signed(client, body, b.app_secret).status_code == 403
        assert stored_events(runtime) == []


class TestMessageKinds:
    def test_text_media_and_replies_become_inbound_messages(self, client, runtime, clinic):
        context = {"from": "5511999990000", "id": wamid()}
        items = [
            text_message("Bom dia"),
            {"from": "5511987654321", "id": wamid(), "timestamp": "1732370000", "type": "image",
             "image": {"id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "x", "caption": "Meu exame"}},
            {"from": "5511987654321", "id": wamid(), "timestamp": "1732370001", "type": "document",
             "document": {"id": "2222", "mime_type": "application/pdf", "filename": "laudo.pdf"}},
            {"from": "5511987654321", "id": wamid(), "timestamp": "1732370002", "type": "audio",
             "audio": {"id": "3333", "mime_type": "audio/ogg; codecs=opus", "voice": True}},
            {"from": "5511987654321", "id": wamid(), "timestamp": "1732370003", "type": "interactive",
             "context": context, "interactive": {"type": "button_reply",
                                                 "button_reply": {"id": "confirm-42", "title": "Confirmar"}}},
            {"from": "5511987654321", "id": wamid(), "timestamp": "1732370004", "type": "interactive",
             "interactive": {"type": "list_reply", "list_reply": {"id": "slot-3", "title": "Quinta 14h",
                                                                  "description": "Dra. Ana"}}},
            {"from": "5511987654321", "id": wamid(), "timestamp": "1732370005", "type": "button",
             "context": context, "button": {"payload": "STOP_PROMOS", "text": "Parar promoções"}},
        ]
        body = envelope([change(clinic.phone_number_id, messages=items)])
        assert post_signed(client, body, clinic.app_secret).json()["stored"] == 7
        assert set(handle_stored(runtime)) == {"handled"}

        received = {m.provider_message_id: m for m in messages_of(runtime, clinic.tenant_id, "inbound")}
        assert len(received) == 7
        text, image, document, audio, button_reply, list_reply, button = (received[i["id"]] for i in items)
        assert {m.from_address for m in received.values()} == {CUSTOMER}
        assert {m.to_address for m in received.values()} == {BUSINESS}  # the number, never Meta's id for it
        assert {m.channel for m in received.values()} == {"whatsapp"}
        assert text.body == "Bom dia" and text.media == []
        assert (image.body, image.media) == ("Meu exame", [{"url": None, "content_type": "image/jpeg",
                                                            "id": "1479537139650973"}])
        assert document.media[0]["id"] == "2222" and document.media[0]["content_type"] == "application/pdf"
        assert audio.media[0]["id"] == "3333"
        assert button_reply.body == "Confirmar" and list_reply.body == "Quinta 14h"
        assert button.body == "Parar promoções"
        # the reply's id / payload stay with the stored event, keyed by the message's id
        replies = {e.provider_event_id: e.payload["reply"] for e in stored_events(runtime)}
        assert replies[items[4]["id"]] == {"kind": "button_reply", "id": "confirm-42", "title": "Confirmar"}
        assert replies[items[5]["id"]]["id"] == "slot-3"
        assert replies[items[6]["id"]] == {"kind": "button", "payload": "STOP_PROMOS", "text": "Parar promoções"}
        # all in one conversation with the contact
        assert len({m.conversation_id for m in received.values()}) == 1


class TestStatuses:
    def test_sent_delivered_read_move_the_message_forward_never_back(self, client, runtime, clinic):
        sent = wamid()
        message_id = outbound_message(runtime, clinic, sent)
        for status in ("delivered", "read", "sent"):  # a late "sent" must not move it back
            body = envelope([change(clinic.phone_number_id, statuses=[status_item(sent, status)])])
            assert post_signed(client, body, clinic.app_secret).status_code == 200
            handle_stored(runtime)
        with runtime.session_factory() as session:
            message = session.get(Message, message_id)
            assert message.status == "read" and message.delivered_at is not None

    @pytest.mark.parametrize(("code", "title"), [(131026, "Message undeliverable"),
                                                 (131047, "Re-engagement message")])
    def test_failed_with_an_error_code_fails_the_message_with_it(self, client, runtime, clinic, code, title):
        sent = wamid()
        message_id = outbound_message(runtime, clinic, sent)
        body = envelope([change(clinic.phone_number_id, statuses=[status_item(sent, "failed", error=(code, title))])])
        assert post_signed(client, body, clinic.app_secret).status_code == 200
        assert handle_stored(runtime) == ["handled"]
        with runtime.session_factory() as session:
            message = session.scalar(select(Message).where(Message.id == message_id))
            assert (message.status, message.error_code) == ("failed", str(code))
            assert title in message.error_message

    def test_another_tenants_status_does_not_touch_this_tenants_message(self, client, runtime, clinic):
        other = whatsapp_tenant(runtime, "other")
        sent = wamid()
        message_id = outbound_message(runtime, clinic, sent)
        body = envelope([change(other.phone_number_id, statuses=[status_item(sent, "read")])])
        assert post_signed(client, body, other.app_secret).status_code == 200
        handle_stored(runtime)
        with runtime.session_factory() as session:
            assert session.get(Message, message_id).status == "sent"
