"""WhatsApp users with a username (issue 10): Meta names them by a business-scoped user
id (BSUID) and may send no phone number at all. Such a message used to crash the
handler (``from`` absent) and was abandoned after its retries; now the person is one
contact and one conversation, keyed by the BSUID, and can be answered by ``recipient``."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from connectors.sandbox.meta import InboundMessage
from connectors.whatsapp_cloud.connector import WhatsAppCloudConnector, WhatsAppCloudCredentials
from connectors.whatsapp_cloud.events import parse_webhook
from connectors.whatsapp_cloud.users import is_bsuid
from hub.contacts.models import Contact
from hub.messaging.models import Conversation
from hub.webhooks.models import WebhookEvent
from tests.messaging.outbound_support import eventually
from tests.whatsapp.test_whatsapp_live import clinic, hub, wait_status  # noqa: F401 - fixtures
from tests.whatsapp.whatsapp_support import (
    CUSTOMER,
    CUSTOMER_WA_ID,
    envelope,
    handle_stored,
    messages_of,
    post_signed,
    wamid,
    whatsapp_tenant,
)

BSUID = "BR.1502576394655843"


def username_change(phone_number_id: str, text: str, *, wa_id: str | None = None, user_id: str = BSUID) -> dict:
    """A messages change as Meta sends it since the BSUID rollout (``from``/``wa_id`` only
    when the phone is shown)."""
    contact = {"profile": {"name": "Maria", "username": "@maria.s"}, "user_id": user_id}
    message = {"id": wamid(), "timestamp": "1732370000", "type": "text", "text": {"body": text},
               "from_user_id": user_id}
    if wa_id:
        contact["wa_id"] = message["from"] = wa_id
    return {"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "5511999990000",
                                                      "phone_number_id": phone_number_id},
        "contacts": [contact], "messages": [message]}}


@pytest.fixture
def tenant(runtime):
    return whatsapp_tenant(runtime, "clinica")


def test_bsuid_patterns():
    assert is_bsuid("BR.1502576394655843") and is_bsuid("US.ENT.11815799212886844830")
    for other in ("5511987654321", "+5511987654321", "BR1502576394655843", "br.123", "BR.", "BR.12-3", None, ""):
        assert not is_bsuid(other)


def test_the_parser_keeps_the_bsuid_and_the_username():
    [event] = parse_webhook(envelope([username_change("106540352242922", "Oi")]))
    assert event.data["from"] is None and event.data["from_user_id"] == BSUID
    assert (event.data["username"], event.data["profile_name"]) == ("@maria.s", "Maria")


def test_a_username_only_message_is_one_contact_and_one_conversation(client, runtime, tenant):
    for text in ("Oi", "Tudo bem?"):
        body = envelope([username_change(tenant.phone_number_id, text)])
        assert post_signed(client, body, tenant.app_secret).status_code == 200
    assert set(handle_stored(runtime)) == {"handled"}

    received = messages_of(runtime, tenant.tenant_id, "inbound")
    assert [m.body for m in received] == ["Oi", "Tudo bem?"]
    assert {m.from_address for m in received} == {BSUID}
    with runtime.session_factory() as session:
        [contact] = session.scalars(select(Contact).where(Contact.tenant_id == tenant.tenant_id)).all()
        [conversation] = session.scalars(select(Conversation).where(Conversation.tenant_id == tenant.tenant_id))
    assert (contact.whatsapp_user_id, contact.phone) == (BSUID, None)
    assert conversation.contact_address == BSUID and {m.contact_id for m in received} == {contact.id}


def test_a_known_person_who_hides_the_number_stays_in_the_same_conversation(client, runtime, tenant):
    shown = envelope([username_change(tenant.phone_number_id, "Oi", wa_id=CUSTOMER_WA_ID)])
    hidden = envelope([username_change(tenant.phone_number_id, "Sou eu de novo")])
    for body in (shown, hidden):
        assert post_signed(client, body, tenant.app_secret).status_code == 200
        assert set(handle_stored(runtime)) == {"handled"}

    received = messages_of(runtime, tenant.tenant_id, "inbound")
    assert {m.from_address for m in received} == {CUSTOMER}  # threaded by the phone the BSUID belongs to
    with runtime.session_factory() as session:
        [contact] = session.scalars(select(Contact).where(Contact.tenant_id == tenant.tenant_id)).all()
    assert (contact.phone, contact.whatsapp_user_id) == (CUSTOMER, BSUID)
    assert len({m.conversation_id for m in received}) == 1


def test_erasing_the_contact_erases_the_bsuid_everywhere(client, runtime, tenant):
    from tests.support import bearer, create_client, get_token

    assert post_signed(client, envelope([username_change(tenant.phone_number_id, "Oi")]),
                       tenant.app_secret).status_code == 200
    handle_stored(runtime)
    headers = bearer(get_token(client, create_client(runtime, tenant.tenant_id)))
    [contact] = client.get("/v1/contacts", headers=headers).json()["data"]
    assert contact["whatsapp_user_id"] == BSUID
    assert client.delete(f"/v1/contacts/{contact['id']}", headers=headers).status_code == 204
    with runtime.session_factory() as session:
        events = session.scalars(select(WebhookEvent).where(WebhookEvent.tenant_id == tenant.tenant_id)).all()
        assert events and all(BSUID not in str(e.payload) for e in events)
    assert all(BSUID not in (m.from_address, m.to_address) for m in messages_of(runtime, tenant.tenant_id))


def test_the_connector_reaches_a_bsuid_by_recipient_never_by_its_digits():
    from connectors.base import OutboundMessage

    connector = WhatsAppCloudConnector(credentials=WhatsAppCloudCredentials(
        phone_number_id="106540352242922", waba_id="1", access_token="EAAG1", app_secret="s", verify_token="v"))
    payload = connector.message_payload(OutboundMessage(channel="whatsapp", to=BSUID, body="Oi"))
    assert payload["recipient"] == BSUID and "to" not in payload  # not "1502576394655843", a stranger's number


def test_a_username_user_is_answered_through_the_cloud_api(hub, clinic):  # noqa: F811 - fixtures
    tenant_id, headers, phone_number_id = clinic
    status, _ = hub.sandbox.meta.simulate_inbound([InboundMessage(
        phone_number_id=phone_number_id, user_id=BSUID, username="@maria.s", text="Quero remarcar")])
    assert status == 200
    [inbound] = eventually(lambda: messages_of(hub.runtime, tenant_id, "inbound"), what="the inbound message")
    assert inbound.from_address == BSUID

    reply = hub.http.post(f"/v1/conversations/{inbound.conversation_id}/messages", headers=headers,
                          json={"body": "Claro! Qual dia?"})
    assert reply.status_code == 202, reply.text
    wait_status(hub, headers, reply.json()["id"], "read")
    sent = hub.sandbox.meta.sent_messages(phone_number_id)[-1]
    assert sent.payload["recipient"] == BSUID and "to" not in sent.payload


def test_without_the_cloud_api_a_username_user_cannot_be_reached_and_it_says_why(hub):  # noqa: F811
    from tests.messaging.outbound_support import twilio_tenant

    tenant = twilio_tenant(hub, "so-twilio")
    answer = hub.http.post("/v1/messages", headers=tenant.headers,
                           json={"channel": "whatsapp", "to": BSUID, "body": "Oi"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "whatsapp_user_needs_cloud_api"
