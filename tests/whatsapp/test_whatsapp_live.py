"""End to end through the real connector against the Meta sandbox, on both backends:
a tenant installs its number over the API, syncs its templates (two Graph pages),
sends a template outside the 24-hour window and text inside it, follows Meta's signed
status webhooks to ``read``, and meets every injected send failure with the right
outcome: 131026 / 131047 permanent at once, 130429 and 5xx retried until sent."""

from __future__ import annotations

import uuid

import pytest

from connectors.sandbox.meta import InboundMessage
from hub.messaging.models import Message
from hub.queue import WHATSAPP_SYNC_TEMPLATES
from hub.whatsapp.service import sync_every_account
from tests.messaging.outbound_support import eventually, make_fast
from tests.support import random_hex
from tests.whatsapp.whatsapp_support import headers_for, messages_of, new_phone_number_id

WABA_ID = "190000000000001"
FILLER = [{"name": f"filler_{i:03d}", "language": "pt_BR", "status": "APPROVED", "category": "MARKETING",
           "components": [{"type": "BODY", "text": "Oferta {{1}}"}]} for i in range(120)]
REMINDER = {"name": "appointment_reminder", "language": "pt_BR", "status": "APPROVED", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Olá {{1}}, lembramos da sua consulta em {{2}}."}]}
PENDING = {"name": "promo", "language": "pt_BR", "status": "PENDING", "category": "MARKETING",
           "components": [{"type": "BODY", "text": "Promoção"}]}


@pytest.fixture
def hub(live_hub):
    make_fast(live_hub)
    live_hub.sandbox.meta.status_delay = 0.02
    return live_hub


@pytest.fixture
def clinic(hub):
    """A tenant that installed its WhatsApp number through the API, Meta pointed at /webhooks/whatsapp."""
    from tests.support import create_tenant

    tenant_id = create_tenant(hub.runtime, "clinic")
    headers = headers_for(hub.http, hub.runtime, tenant_id)
    phone_number_id, app_secret, token = new_phone_number_id(), random_hex(16), "EAAG" + random_hex(12)
    answer = hub.http.put("/v1/integrations/whatsapp_cloud", headers=headers, json={"credentials": {
        "phone_number_id": phone_number_id, "waba_id": WABA_ID, "access_token": token, "app_secret": app_secret,
        "verify_token": "vt-" + random_hex(8)}})
    assert answer.status_code == 200, answer.text
    assert app_secret not in answer.text and token not in answer.text
    # in sandbox mode the install pointed the sandbox's number at /webhooks/whatsapp, as a tenant does at Meta
    number = hub.sandbox.meta.number_config(phone_number_id)
    assert (number.webhook_url, number.app_secret) == (hub.url + "/webhooks/whatsapp", app_secret)
    return tenant_id, headers, phone_number_id


def customers_write(hub, phone_number_id: str, *wa_ids: str) -> None:
    status, _ = hub.sandbox.meta.simulate_inbound(
        [InboundMessage(phone_number_id=phone_number_id, **{"from": wa_id}, text="Oi!") for wa_id in wa_ids])
    assert status == 200


def wait_status(hub, headers, message_id: str, *statuses: str) -> dict:
    def probe():
        message = hub.http.get(f"/v1/messages/{message_id}", headers=headers).json()
        return message if message["status"] in statuses else None

    return eventually(probe, timeout=10, what=f"message {message_id} in {statuses}")


def test_templates_sync_then_window_rules_end_to_end(hub, clinic):
    tenant_id, headers, phone_number_id = clinic
    hub.sandbox.meta.set_templates([*FILLER, REMINDER, PENDING], waba_id=WABA_ID)

    synced = hub.http.post("/v1/integrations/whatsapp_cloud/templates/sync", headers=headers)
    assert synced.status_code == 200, synced.text
    assert (synced.json()["synced"], synced.json()["added"]) == (122, 122)  # 100 + 22: both Graph pages
    listed = hub.http.get("/v1/integrations/whatsapp_cloud/templates", headers=headers).json()["data"]
    reminder = next(t for t in listed if t["name"] == "appointment_reminder")
    assert (reminder["status"], reminder["language"], reminder["parameter_counts"]["body"]) == ("APPROVED", "pt_BR", 2)
    # Meta drops some and pauses one: the beat task's sync of every account mirrors it
    hub.sandbox.meta.set_templates([REMINDER, {**PENDING, "status": "PAUSED"}], waba_id=WABA_ID)
    assert sync_every_account(runtime=hub.runtime) == {"synced": 1, "failed": 0}
    listed = hub.http.get("/v1/integrations/whatsapp_cloud/templates", headers=headers).json()["data"]
    assert [(t["name"], t["status"]) for t in listed] == [("appointment_reminder", "APPROVED"), ("promo", "PAUSED")]
    assert WHATSAPP_SYNC_TEMPLATES in {e["task"] for e in hub.runtime.celery.conf.beat_schedule.values()}

    customer = "5511987651234"
    text = hub.http.post("/v1/messages", headers=headers, json={"channel": "whatsapp", "to": customer, "body": "Oi"})
    assert (text.status_code, text.json()["error"]["code"]) == (422, "whatsapp_window_closed")
    pending = hub.http.post("/v1/messages", headers=headers, json={
        "channel": "whatsapp", "to": customer, "whatsapp_template": {"name": "promo"}})
    assert (pending.status_code, pending.json()["error"]["code"]) == (422, "whatsapp_template_not_approved")

    template = hub.http.post("/v1/messages", headers=headers, json={
        "channel": "whatsapp", "to": customer,
        "whatsapp_template": {"name": "appointment_reminder", "parameters": ["Maria", "25/11 às 14h"]}})
    assert template.status_code == 202, template.text
    read = wait_status(hub, headers, template.json()["id"], "read")
    [sent] = hub.sandbox.meta.sent_messages(phone_number_id)
    assert sent.type == "template" and read["provider_message_id"] == sent.message_id
    assert sent.payload["template"] == {"name": "appointment_reminder", "language": {"code": "pt_BR"},
                                        "components": [{"type": "body", "parameters": [
                                            {"type": "text", "text": "Maria"},
                                            {"type": "text", "text": "25/11 às 14h"}]}]}

    customers_write(hub, phone_number_id, customer)  # the window opens
    eventually(lambda: messages_of(hub.runtime, tenant_id, "inbound"), what="the inbound message")
    reply = hub.http.post("/v1/messages", headers=headers, json={"channel": "whatsapp", "to": customer,
                                                                 "body": "Confirmado ✅"})
    assert reply.status_code == 202, reply.text
    wait_status(hub, headers, reply.json()["id"], "read")
    assert hub.sandbox.meta.sent_messages(phone_number_id)[-1].payload["text"]["body"] == "Confirmado ✅"


def test_injected_send_failures_permanent_or_retried(redis_url, hub, clinic):
    # with redis_url the live hub's broker is Redis: retries go through the real queue
    tenant_id, headers, phone_number_id = clinic
    meta = hub.sandbox.meta
    recipients = {kind: f"55119876500{i:02d}" for i, kind in enumerate(
        ("131026", "131047", "130429", "5xx", "131026-async"))}
    customers_write(hub, phone_number_id, *recipients.values())
    eventually(lambda: len(messages_of(hub.runtime, tenant_id, "inbound")) == 5, what="5 inbound messages")
    meta.inject_failure("131026", to=recipients["131026"])
    meta.inject_failure("131047", to=recipients["131047"])
    meta.inject_failure("130429", to=recipients["130429"], count=1)
    meta.inject_failure("5xx", to=recipients["5xx"], count=2)
    meta.inject_failure("131026", to=recipients["131026-async"], mode="async")

    ids = {}
    for kind, to in recipients.items():
        answer = hub.http.post("/v1/messages", headers=headers, json={"channel": "whatsapp", "to": to,
                                                                      "body": f"teste {kind}"})
        assert answer.status_code == 202, answer.text
        ids[kind] = answer.json()["id"]

    def outcome(kind: str, *statuses: str) -> tuple[str, str | None, list[str]]:
        message = wait_status(hub, headers, ids[kind], *statuses)
        return message["status"], message["error_code"], [a["outcome"] for a in message["attempts"]]

    # permanent at once: one attempt, never retried
    assert outcome("131026", "failed", "dead") == ("failed", "131026", ["failed"])
    assert outcome("131047", "failed", "dead") == ("failed", "131047", ["failed"])
    # transient: retried with backoff until Meta takes it
    assert outcome("130429", "read") == ("read", None, ["retry", "sent"])
    assert outcome("5xx", "read") == ("read", None, ["retry", "retry", "sent"])
    # accepted, then reported failed by a signed status webhook
    status, code, attempts = outcome("131026-async", "failed")
    assert (status, code, attempts) == ("failed", "131026", ["sent"])
    with hub.runtime.session_factory() as session:
        assert "Message undeliverable" in session.get(Message, uuid.UUID(ids["131026-async"])).error_message
    # only the accepted ones reached Meta's outbox
    assert sorted(m.to for m in meta.sent_messages(phone_number_id)) == sorted(
        recipients[k] for k in ("130429", "5xx", "131026-async"))
