"""Conversations through the live hub: threads appear as the tenant sends and as contacts
write in, newest activity first; read one with its messages; reply on its channel
(Idempotency-Key honoured); close and reopen."""

from __future__ import annotations

import uuid

import pytest

from tests.messaging.outbound_support import (
    CUSTOMER,
    eventually,
    make_fast,
    send,
    sent_to,
    twilio_tenant,
    wait_for_status,
)

OTHER = "+5521988887777"


@pytest.fixture
def hub(live_hub):
    make_fast(live_hub)
    return live_hub


@pytest.fixture
def acme(hub):
    return twilio_tenant(hub, "acme")


def conversations(hub, tenant, **params) -> dict:
    r = hub.http.get("/v1/conversations", headers=tenant.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def conversation(hub, tenant, conversation_id: str, **params) -> dict:
    r = hub.http.get(f"/v1/conversations/{conversation_id}", headers=tenant.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def reply(hub, tenant, conversation_id: str, body: str = "Obrigado, confirmado!", key: str | None = None, **fields):
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key else {})}
    return hub.http.post(f"/v1/conversations/{conversation_id}/messages", headers=headers,
                         json={"body": body, **fields})


def patch(hub, tenant, conversation_id: str, status: str):
    return hub.http.patch(f"/v1/conversations/{conversation_id}", headers=tenant.headers, json={"status": status})


class TestListAndRead:
    def test_newest_activity_first_with_cursor_pages(self, hub, acme):
        first = send(hub, acme, to=CUSTOMER, body="primeiro").json()
        second = send(hub, acme, to=OTHER, channel="whatsapp", body="segundo").json()
        page = conversations(hub, acme)
        assert [c["id"] for c in page["data"]] == [second["conversation_id"], first["conversation_id"]]
        assert page["data"][0]["channel"] == "whatsapp" and page["data"][0]["contact_address"] == OTHER
        assert page["data"][0]["hub_address"] == acme.number and page["data"][0]["status"] == "open"

        # a reply to the older one brings it to the top
        assert reply(hub, acme, first["conversation_id"]).status_code == 202
        assert [c["id"] for c in conversations(hub, acme)["data"]] == [first["conversation_id"],
                                                                        second["conversation_id"]]
        one = conversations(hub, acme, limit=1)
        two = conversations(hub, acme, limit=1, cursor=one["next_cursor"])
        assert [c["id"] for c in one["data"] + two["data"]] == [first["conversation_id"], second["conversation_id"]]
        assert two["next_cursor"] is None
        assert [c["id"] for c in conversations(hub, acme, channel="whatsapp")["data"]] == [second["conversation_id"]]

    def test_one_conversation_with_its_messages_oldest_first(self, hub, acme):
        ids = [send(hub, acme, body=f"mensagem {i}").json() for i in range(3)]
        conversation_id = ids[0]["conversation_id"]
        assert {m["conversation_id"] for m in ids} == {conversation_id}
        full = conversation(hub, acme, conversation_id)
        assert [m["body"] for m in full["messages"]] == ["mensagem 0", "mensagem 1", "mensagem 2"]
        assert full["has_earlier_messages"] is False and full["contact_address"] == CUSTOMER
        latest = conversation(hub, acme, conversation_id, limit=2)
        assert [m["body"] for m in latest["messages"]] == ["mensagem 1", "mensagem 2"]
        assert latest["has_earlier_messages"] is True

    def test_an_unknown_conversation_is_a_404(self, hub, acme):
        missing = uuid.uuid4()
        for r in (hub.http.get(f"/v1/conversations/{missing}", headers=acme.headers),
                  reply(hub, acme, str(missing)),
                  patch(hub, acme, str(missing), "closed")):
            assert r.status_code == 404, r.text
            assert r.json()["error"] == {"code": "not_found", "message": "conversation not found"}


class TestInboundThenReply:
    def test_a_contact_writes_in_and_the_reply_reaches_them_on_that_channel(self, hub, acme):
        delivery = hub.sandbox.twilio.simulate_inbound(to=acme.number, from_="+55 21 8888-7777", channel="whatsapp",
                                                       body="Oi, posso remarcar?")
        assert delivery.status_code == 200, delivery.response_text

        def threaded():
            data = conversations(hub, acme)["data"]
            return data[0] if data else None

        thread = eventually(threaded, what="the inbound message to be threaded")
        assert thread["channel"] == "whatsapp" and thread["contact_address"] == OTHER

        r = reply(hub, acme, thread["id"], body="Claro! Qual horário?")
        assert r.status_code == 202, r.text
        queued = r.json()
        assert queued["channel"] == "whatsapp" and queued["to"] == OTHER and queued["conversation_id"] == thread["id"]
        wait_for_status(hub, acme, queued["id"], "read")
        [sent] = sent_to(hub, OTHER)
        assert sent["to"] == f"whatsapp:{OTHER}" and sent["body"] == "Claro! Qual horário?"
        assert [(m["direction"], m["body"]) for m in conversation(hub, acme, thread["id"])["messages"]] == [
            ("inbound", "Oi, posso remarcar?"), ("outbound", "Claro! Qual horário?")]


class TestReply:
    def test_the_same_key_replays_and_another_body_is_a_422(self, hub, acme):
        conversation_id = send(hub, acme).json()["conversation_id"]
        first = reply(hub, acme, conversation_id, key="resposta-1")
        again = reply(hub, acme, conversation_id, key="resposta-1")
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replay"] == "true"
        changed = reply(hub, acme, conversation_id, key="resposta-1", body="outra coisa")
        assert changed.status_code == 422 and changed.json()["error"]["code"] == "idempotency_key_reused"
        wait_for_status(hub, acme, first.json()["id"], "delivered")
        assert len(sent_to(hub, CUSTOMER)) == 2  # the first send and one reply

    def test_a_too_long_sms_reply_is_a_422(self, hub, acme):
        conversation_id = send(hub, acme).json()["conversation_id"]
        r = reply(hub, acme, conversation_id, body="ã" * 700)
        assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_segments"

    def test_an_empty_reply_is_a_422(self, hub, acme):
        conversation_id = send(hub, acme).json()["conversation_id"]
        assert reply(hub, acme, conversation_id, body="").status_code == 422

    def test_a_reply_with_media(self, hub, acme):
        conversation_id = send(hub, acme).json()["conversation_id"]
        r = reply(hub, acme, conversation_id, body="", media_urls=["https://cdn.example.com/mapa.png"])
        assert r.status_code == 202, r.text
        wait_for_status(hub, acme, r.json()["id"], "delivered")


class TestCloseAndReopen:
    def test_close_filter_reopen(self, hub, acme):
        kept = send(hub, acme, to=OTHER).json()["conversation_id"]
        conversation_id = send(hub, acme).json()["conversation_id"]
        closed = patch(hub, acme, conversation_id, "closed")
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
        assert conversation(hub, acme, conversation_id)["status"] == "closed"
        assert [c["id"] for c in conversations(hub, acme, status="closed")["data"]] == [conversation_id]
        assert [c["id"] for c in conversations(hub, acme, status="open")["data"]] == [kept]
        reopened = patch(hub, acme, conversation_id, "open")
        assert reopened.status_code == 200 and reopened.json()["status"] == "open"
        assert len(conversations(hub, acme, status="open")["data"]) == 2

    def test_a_new_message_reopens_a_closed_conversation(self, hub, acme):
        conversation_id = send(hub, acme).json()["conversation_id"]
        patch(hub, acme, conversation_id, "closed")
        assert reply(hub, acme, conversation_id).status_code == 202
        assert conversation(hub, acme, conversation_id)["status"] == "open"

    @pytest.mark.parametrize("body", [{"status": "archived"}, {}, {"status": "closed", "owner": "x"}])
    def test_a_bad_update_is_a_422(self, hub, acme, body):
        conversation_id = send(hub, acme).json()["conversation_id"]
        r = hub.http.patch(f"/v1/conversations/{conversation_id}", headers=acme.headers, json=body)
        assert r.status_code == 422, r.text
        assert conversation(hub, acme, conversation_id)["status"] == "open"

    def test_reading_needs_messages_read_and_changing_needs_messages_write(self, hub, acme):
        conversation_id = send(hub, acme).json()["conversation_id"]
        reader = twilio_tenant(hub, "reader", scopes=["messages:read"])
        assert hub.http.get("/v1/conversations", headers=reader.headers).status_code == 200
        assert patch(hub, reader, conversation_id, "closed").status_code == 403
        assert reply(hub, reader, conversation_id).status_code == 403
        writer = twilio_tenant(hub, "writer", scopes=["integrations:read"])
        assert hub.http.get("/v1/conversations", headers=writer.headers).status_code == 403
