"""Webhooks the sandbox posts like Meta (statuses after a send, simulated customer
messages), received by a real server that verifies them with the connector."""

from __future__ import annotations

import httpx
import pytest
from whatsapp_cloud_support import APP_SECRET, PHONE_NUMBER_ID, WABA_ID, WebhookReceiver

from connectors.base import MESSAGE_RECEIVED, MESSAGE_STATUS, InboundEvent, OutboundMessage
from connectors.sandbox.app import create_sandbox_app
from connectors.sandbox.meta import InboundMessage, MetaSandbox
from connectors.sandbox.server import ThreadedServer
from connectors.whatsapp_cloud import WhatsAppCloudConnector

CUSTOMER_WA_ID = "5511987654321"


def events_of(receiver: WebhookReceiver, count: int) -> list[InboundEvent]:
    events: list[InboundEvent] = []
    for request in receiver.wait_for(count):
        assert WhatsAppCloudConnector.route_keys(request) == [PHONE_NUMBER_ID]
        events.extend(WhatsAppCloudConnector.parse(request))
    return events


def statuses_for(receiver: WebhookReceiver, message_id: str, count: int) -> list[InboundEvent]:
    """The status events of one message (late webhooks of earlier tests are ignored)."""
    for expected in range(count, count + 10):
        mine = [e for e in events_of(receiver, expected) if e.data.get("message_id") == message_id]
        if len(mine) >= count:
            return mine
    raise AssertionError(f"fewer than {count} statuses for {message_id}")


class TestStatusWebhooks:
    def test_sent_delivered_read_arrive_signed_in_order(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox, receiver: WebhookReceiver
    ):
        result = connector.send(OutboundMessage(channel="whatsapp", to=f"+{CUSTOMER_WA_ID}", body="Olá!"))
        events = statuses_for(receiver, result.provider_message_id, 3)
        assert [e.type for e in events] == [MESSAGE_STATUS] * 3
        assert [e.data["status"] for e in events] == ["sent", "delivered", "read"]
        assert [e.provider_event_id for e in events] == [
            f"{result.provider_message_id}:{s}" for s in ("sent", "delivered", "read")
        ]
        assert {e.data["recipient_id"] for e in events} == {CUSTOMER_WA_ID}
        assert receiver.rejected == 0
        assert sandbox.sent_messages()[0].status == "read"

    def test_async_undeliverable_arrives_as_failed_with_131026(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox, receiver: WebhookReceiver
    ):
        sandbox.inject_failure("131026", mode="async")
        result = connector.send(OutboundMessage(channel="whatsapp", to=CUSTOMER_WA_ID, body="Olá!"))
        [event] = statuses_for(receiver, result.provider_message_id, 1)
        assert event.data["status"] == "failed"
        assert (event.data["error_code"], event.data["error_title"]) == ("131026", "Message undeliverable")

    def test_callback_data_is_echoed_in_statuses(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox, receiver: WebhookReceiver
    ):
        result = connector.send(
            OutboundMessage(channel="whatsapp", to=CUSTOMER_WA_ID, body="Olá!", idempotency_key="out-42")
        )
        events = statuses_for(receiver, result.provider_message_id, 3)
        assert {e.data["callback_data"] for e in events} == {"out-42"}

    def test_signature_by_another_app_secret_is_refused_by_the_receiver(
        self, meta_state: MetaSandbox, meta_server, receiver_server, receiver: WebhookReceiver
    ):
        meta_state.reset()
        meta_state.configure(PHONE_NUMBER_ID, f"{receiver_server.url}/webhooks/whatsapp_cloud", "not-our-secret")
        status, _ = meta_state.simulate_inbound([InboundMessage(phone_number_id=PHONE_NUMBER_ID, **{"from": "551100"})])
        assert status == 403 and receiver.rejected == 1 and receiver.accepted == []


class TestSimulatedInbound:
    def test_every_message_type_in_one_batched_post(self, sandbox: MetaSandbox, receiver: WebhookReceiver):
        customer = {"phone_number_id": PHONE_NUMBER_ID, "from": CUSTOMER_WA_ID, "profile_name": "Ana Souza"}
        status, ids = sandbox.simulate_inbound(
            [
                InboundMessage(**customer, text="Quero remarcar"),
                InboundMessage(**customer, type="image", text="meu exame", media_id="9001"),
                InboundMessage(**customer, type="document", media_id="9002", filename="laudo.pdf"),
                InboundMessage(**customer, type="audio", media_id="9003"),
                InboundMessage(**customer, type="interactive", reply_id="slot-3", text="Quinta 14h"),
                InboundMessage(
                    **customer, type="interactive", reply_kind="list_reply", reply_id="d1", text="Dra. Lima"
                ),
                InboundMessage(**customer, type="button", text="Confirmar", payload="CONFIRM"),
                InboundMessage(**customer, type="location", location_name="Clínica", address="Av. Paulista, 1000"),
            ]
        )
        assert status == 200
        [request] = receiver.wait_for(1)
        assert len(request.json()["entry"]) == 8  # one entry each, all in one POST
        events = WhatsAppCloudConnector.parse(request)
        assert [e.type for e in events] == [MESSAGE_RECEIVED] * 8
        assert [e.provider_event_id for e in events] == ids
        by_type = [(e.data["type"], e.data["body"]) for e in events]
        assert by_type == [
            ("text", "Quero remarcar"),
            ("image", "meu exame"),
            ("document", ""),
            ("audio", ""),
            ("interactive", "Quinta 14h"),
            ("interactive", "Dra. Lima"),
            ("button", "Confirmar"),
            ("location", "Clínica"),
        ]
        assert {e.data["from"] for e in events} == {CUSTOMER_WA_ID}
        assert {e.data["profile_name"] for e in events} == {"Ana Souza"}
        assert events[1].data["media"]["id"] == "9001" and events[1].data["media"]["mime_type"] == "image/jpeg"
        assert events[2].data["media"]["filename"] == "laudo.pdf"
        assert events[4].data["reply"] == {"kind": "button_reply", "id": "slot-3", "title": "Quinta 14h"}
        assert events[5].data["reply"]["kind"] == "list_reply"
        assert events[6].data["reply"] == {"kind": "button", "payload": "CONFIRM", "text": "Confirmar"}
        assert events[7].data["location"]["address"] == "Av. Paulista, 1000"

    def test_unconfigured_number_cannot_receive(self, sandbox: MetaSandbox):
        with pytest.raises(LookupError):
            sandbox.simulate_inbound([InboundMessage(phone_number_id="999", **{"from": CUSTOMER_WA_ID})])


class TestControlEndpoints:
    """The same sandbox driven over HTTP, as a test in another process would."""

    def test_configure_inject_inbound_list_and_reset(
        self, meta_state: MetaSandbox, meta_server, receiver_server, receiver: WebhookReceiver, connector
    ):
        base = f"{meta_server.url}/_sandbox/meta"
        with httpx.Client(base_url=base, timeout=5) as control:
            assert control.post("/reset").status_code == 204
            configured = control.post(
                "/numbers",
                json={
                    "phone_number_id": PHONE_NUMBER_ID,
                    "webhook_url": f"{receiver_server.url}/webhooks/whatsapp_cloud",
                    "app_secret": APP_SECRET,
                    "waba_id": WABA_ID,
                },
            )
            assert configured.status_code == 200 and "app_secret" not in configured.json()

            inbound = control.post(
                "/inbound",
                json={"messages": [{"phone_number_id": PHONE_NUMBER_ID, "from": CUSTOMER_WA_ID, "text": "Oi"}]},
            )
            assert inbound.status_code == 200 and inbound.json()["status_code"] == 200
            [event] = WhatsAppCloudConnector.parse(receiver.wait_for(1)[0])
            assert event.provider_event_id == inbound.json()["message_ids"][0]

            assert control.post("/failures", json={"kind": "131047", "count": 1}).status_code == 201
            with pytest.raises(Exception) as caught:
                connector.send(OutboundMessage(channel="whatsapp", to=CUSTOMER_WA_ID, body="Oi"))
            assert getattr(caught.value, "code", None) == "131047"
            connector.send(OutboundMessage(channel="whatsapp", to=CUSTOMER_WA_ID, body="Oi de novo"))

            listed = control.get("/messages", params={"phone_number_id": PHONE_NUMBER_ID}).json()["messages"]
            assert [m["payload"]["text"]["body"] for m in listed] == ["Oi de novo"]
            kinds = {d["kind"] for d in control.get("/deliveries").json()["deliveries"]}
            assert "inbound" in kinds

            assert control.post("/failures", json={"kind": "5xx"}).status_code == 201
            assert control.delete("/failures").status_code == 204
            connector.send(OutboundMessage(channel="whatsapp", to=CUSTOMER_WA_ID, body="sem falha"))

            assert control.post("/reset").status_code == 204
            assert control.get("/messages").json()["messages"] == []

    def test_bad_control_input_is_a_4xx(self, meta_server):
        with httpx.Client(base_url=f"{meta_server.url}/_sandbox/meta", timeout=5) as control:
            assert control.post("/failures", json={"kind": "999"}).status_code == 422
            assert control.post("/inbound", json={"messages": []}).status_code == 422
            unknown = control.post("/inbound", json={"messages": [{"phone_number_id": "404", "from": "1"}]})
            assert unknown.status_code == 409


class TestMountedInTheSandboxApp:
    def test_graph_paths_live_at_the_root_of_the_shared_sandbox(self):
        app = create_sandbox_app()
        assert isinstance(app.state.meta, MetaSandbox)
        app.state.meta.configure(PHONE_NUMBER_ID, "http://127.0.0.1:9/unused", APP_SECRET)
        with ThreadedServer(app) as server:
            answer = httpx.get(f"{server.url}/v21.0/{PHONE_NUMBER_ID}", headers={"Authorization": "Bearer t"})
            assert answer.status_code == 200 and answer.json()["id"] == PHONE_NUMBER_ID
            # Graph versions only: a Stripe-like /v1/... path is not Meta's
            assert (
                httpx.get(f"{server.url}/v1/{PHONE_NUMBER_ID}", headers={"Authorization": "Bearer t"}).status_code
                == 404
            )
