"""The inbound path end to end: the sandbox Twilio (and Meta) call the hub on a real
port, signed as the providers sign; the relay and the embedded worker thread the
messages into conversations and apply status callbacks."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from connectors.base import OutboundMessage
from connectors.sandbox.meta import InboundMessage
from connectors.twilio import TwilioConnector
from hub.db import new_id, utcnow
from hub.messaging.models import Direction, Message, MessageStatus
from hub.webhooks.models import WebhookEvent
from hub.webhooks.routes import claim_route
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.support import random_hex
from tests.webhooks.helpers import (
    TwilioTenant,
    conversations,
    count,
    events,
    messages,
    new_account_sid,
    status_form,
    twilio_signature,
    twilio_tenant,
    wait_for,
)

CUSTOMER = "+5511987654321"
OTHER_CUSTOMER = "+5521998765432"


@dataclass
class SandboxAccount:
    sid: str
    token: str
    numbers: list[dict]  # Twilio's JSON for each number the account owns


def sandbox_account(hub) -> SandboxAccount:
    """A bring-your-own Twilio account in the sandbox, with its few numbers."""
    sid, token = new_account_sid(), random_hex(16)
    hub.sandbox.twilio.register_account(sid, token)
    return SandboxAccount(sid, token, hub.sandbox.twilio.numbers(account_sid=sid))


def connector(hub, account: SandboxAccount, number: str | None = None) -> TwilioConnector:
    """The real SDK against the sandbox, acting as the account."""
    return TwilioConnector(credentials={"account_sid": account.sid, "auth_token": account.token},
                           config={"numbers": [number] if number else [], "channels": ["sms", "whatsapp"]},
                           base_url=hub.sandbox_url)


def onboard(hub, slug: str, account: SandboxAccount, *, number_index: int = 0, point_webhooks: bool = True,
            **kwargs) -> TwilioTenant:
    """A tenant owning one of the account's numbers, whose SmsUrl points at the hub
    (through the SDK, as the onboarding does)."""
    number = account.numbers[number_index]
    if point_webhooks:
        connector(hub, account).update_number_webhooks(
            number["sid"], sms_url=f"{hub.url}/webhooks/twilio/messaging",
            status_callback=f"{hub.url}/webhooks/twilio/status")
    return twilio_tenant(hub.runtime, slug, account_sid=account.sid, auth_token=account.token,
                         numbers=[number["phone_number"]], **kwargs)


def inbound_messages(hub, tenant_id: uuid.UUID, n: int) -> list[Message]:
    return wait_for(lambda: (found := messages(hub.runtime, Message.tenant_id == tenant_id,
                                               Message.direction == Direction.INBOUND)) and len(found) >= n and found,
                    what=f"{n} inbound message(s)")


def settled(hub) -> bool:
    """Every stored event handled."""
    return all(e.handled_at is not None for e in events(hub.runtime))


class TestInboundMessages:
    def test_sms_and_whatsapp_land_in_each_tenants_own_conversation(self, live_hub):
        hub = live_hub
        account_a, account_b = sandbox_account(hub), sandbox_account(hub)
        clinic_a = onboard(hub, "clinica-a", account_a)
        # B's number has no SmsUrl of its own: the sandbox uses the hub's generic /webhooks/twilio
        clinic_b = onboard(hub, "clinica-b", account_b, point_webhooks=False)
        media = [("https://api.twilio.com/2010-04-01/Accounts/x/Messages/y/Media/ME1", "image/jpeg"),
                 ("https://api.twilio.com/2010-04-01/Accounts/x/Messages/y/Media/ME2", "application/pdf")]

        sms = hub.sandbox.twilio.simulate_inbound(to=clinic_a.numbers[0], from_=CUSTOMER, body="Posso remarcar?",
                                                  media=media)
        whatsapp = hub.sandbox.twilio.simulate_inbound(to=clinic_b.numbers[0], from_=OTHER_CUSTOMER,
                                                       body="Bom dia!", channel="whatsapp", profile_name="Ana")

        assert (sms.status_code, whatsapp.status_code) == (200, 200)
        assert sms.url.endswith("/webhooks/twilio/messaging") and whatsapp.url.endswith("/webhooks/twilio")
        assert sms.response_text.endswith("<Response/>")
        [received_a] = inbound_messages(hub, clinic_a.tenant_id, 1)
        [received_b] = inbound_messages(hub, clinic_b.tenant_id, 1)

        assert (received_a.channel, received_a.from_address, received_a.to_address, received_a.body) == (
            "sms", CUSTOMER, clinic_a.numbers[0], "Posso remarcar?")
        assert received_a.provider_message_id == sms.message_sid
        assert received_a.media == [{"url": url, "content_type": kind} for url, kind in media]
        assert (received_b.channel, received_b.from_address, received_b.body) == (
            "whatsapp", OTHER_CUSTOMER, "Bom dia!")
        [conversation_a] = conversations(hub.runtime, clinic_a.tenant_id)
        [conversation_b] = conversations(hub.runtime, clinic_b.tenant_id)
        assert (conversation_a.channel, conversation_a.contact_address, conversation_a.status) == (
            "sms", CUSTOMER, "open")
        assert (conversation_b.channel, conversation_b.contact_address) == ("whatsapp", OTHER_CUSTOMER)
        assert received_a.conversation_id == conversation_a.id and received_b.conversation_id == conversation_b.id
        assert conversation_a.last_message_at is not None

    def test_a_repeated_delivery_is_a_200_and_stores_nothing_more(self, live_hub):
        hub = live_hub
        clinic = onboard(hub, "clinica", sandbox_account(hub))
        delivery = hub.sandbox.twilio.simulate_inbound(to=clinic.numbers[0], from_=CUSTOMER, body="oi")
        inbound_messages(hub, clinic.tenant_id, 1)

        # Twilio retries a webhook it thinks failed: the same signed request, byte for byte
        again = httpx.post(delivery.url, data=delivery.form, headers={"X-Twilio-Signature": delivery.signature})

        assert (delivery.status_code, again.status_code) == (200, 200)
        assert again.text.endswith("<Response/>")
        wait_for(lambda: settled(hub), what="events settled")
        assert count(hub.runtime, WebhookEvent) == 1
        assert count(hub.runtime, Message) == 1

    def test_a_forged_signature_is_a_403_and_nothing_is_stored(self, live_hub):
        hub = live_hub
        account = sandbox_account(hub)
        # the integration holds another token than the one Twilio signs with
        clinic = onboard(hub, "clinica", account, stored_token=random_hex(16))
        delivery = hub.sandbox.twilio.simulate_inbound(to=clinic.numbers[0], from_=CUSTOMER, body="oi")
        tampered = httpx.post(delivery.url, data={**delivery.form, "Body": "golpe"},
                              headers={"X-Twilio-Signature": delivery.signature})

        assert (delivery.status_code, tampered.status_code) == (403, 403)
        assert tampered.json()["error"]["code"] == "invalid_signature"
        assert count(hub.runtime, WebhookEvent) == 0
        assert count(hub.runtime, Message) == 0

    def test_an_unknown_number_is_a_404_and_nothing_is_stored(self, live_hub):
        hub = live_hub
        account = sandbox_account(hub)
        onboard(hub, "clinica", account, number_index=0)
        stray = account.numbers[1]["phone_number"]  # the account's, but no integration claimed it
        delivery = hub.sandbox.twilio.simulate_inbound(to=stray, from_=CUSTOMER, body="alguém aí?")
        assert delivery.status_code == 404
        assert count(hub.runtime, WebhookEvent) == 0

    def test_a_pooled_number_routes_by_its_messaging_service_and_verifies(self, live_hub):
        hub = live_hub
        account = sandbox_account(hub)
        service_sid = "MG" + random_hex(16)
        pooled = twilio_tenant(hub.runtime, "pool", account_sid=account.sid, auth_token=account.token,
                               numbers=[], route_keys=[service_sid])
        # none of the account's numbers has a route of its own
        delivery = hub.sandbox.twilio.simulate_inbound(to=account.numbers[2]["phone_number"], from_=CUSTOMER,
                                                       body="oi", messaging_service_sid=service_sid)
        assert delivery.status_code == 200
        [message] = inbound_messages(hub, pooled.tenant_id, 1)
        assert message.to_address == account.numbers[2]["phone_number"]

    def test_a_whatsapp_id_without_the_ninth_digit_threads_with_the_full_number(self, live_hub):
        hub = live_hub
        clinic = onboard(hub, "clinica", sandbox_account(hub))
        # Meta's WhatsApp Cloud reports many Brazilian wa_ids without the mobile 9th digit
        app_secret, phone_number_id = random_hex(16), "1065403522" + str(random.randrange(10**5))
        with hub.runtime.session_factory() as session, session.begin():
            cloud = tenants.put_integration(
                session=session, vault=hub.runtime.vault, tenant_id=clinic.tenant_id, kind="whatsapp_cloud",
                credentials={"phone_number_id": phone_number_id, "waba_id": "102290129340398",
                             "access_token": "EAAG" + random_hex(8), "app_secret": app_secret,
                             "verify_token": random_hex(8)},
                config={}, status=IntegrationStatus.ACTIVE)
            claim_route(session, kind="whatsapp_cloud", route_key=phone_number_id, integration=cloud)
        hub.sandbox.meta.configure(phone_number_id, None, app_secret)

        twilio = hub.sandbox.twilio.simulate_inbound(to=clinic.numbers[0], from_="+5511987654321", body="1",
                                                     channel="whatsapp")
        short = hub.sandbox.twilio.simulate_inbound(to=clinic.numbers[0], from_="+551187654321", body="2",
                                                    channel="whatsapp")
        status, _ = hub.sandbox.meta.simulate_inbound(
            [InboundMessage(phone_number_id=phone_number_id, from_="551187654321", text="3")])

        assert (twilio.status_code, short.status_code, status) == (200, 200, 200)
        received = inbound_messages(hub, clinic.tenant_id, 3)
        [conversation] = conversations(hub.runtime, clinic.tenant_id)
        assert conversation.contact_address == "+5511987654321"
        assert sorted(m.body for m in received) == ["1", "2", "3"]
        assert {m.conversation_id for m in received} == {conversation.id}

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    def test_on_postgres_with_a_redis_broker(self, live_hub, redis_url):
        hub = live_hub
        clinic = onboard(hub, "clinica", sandbox_account(hub))
        for n in range(5):
            assert hub.sandbox.twilio.simulate_inbound(to=clinic.numbers[0], from_=CUSTOMER,
                                                       body=str(n)).status_code == 200
        received = inbound_messages(hub, clinic.tenant_id, 5)
        assert sorted(m.body for m in received) == ["0", "1", "2", "3", "4"]
        assert len({m.conversation_id for m in received}) == 1


class TestStatusCallbacks:
    def test_the_sandboxs_callbacks_move_a_sent_message_to_read(self, live_hub):
        hub = live_hub
        account = sandbox_account(hub)
        clinic = onboard(hub, "clinica", account)
        hub.sandbox.twilio.callback_delay = 0.3  # time to record the sid before Twilio calls back
        sent = connector(hub, account, clinic.numbers[0]).send(OutboundMessage(
            channel="whatsapp", to=CUSTOMER, body="Sua consulta é amanhã às 9h",
            status_callback=f"{hub.url}/webhooks/twilio/status"))
        # the outbound message as the delivery worker leaves it after the provider accepted it
        message_id = _outbound(hub, clinic, sent.provider_message_id, channel="whatsapp")

        message = wait_for(lambda: (m := _message(hub, message_id)).status == "read" and m, what="read")
        assert message.delivered_at is not None and message.sent_at is not None
        callbacks = [c for c in hub.sandbox.twilio.callbacks() if c["kind"] == "status"]
        assert [c["status_code"] for c in callbacks] == [200, 200, 200]

    def test_an_undelivered_message_gets_the_providers_error_code(self, live_hub):
        hub = live_hub
        account = sandbox_account(hub)
        clinic = onboard(hub, "clinica", account)
        hub.sandbox.twilio.callback_delay = 0.3
        hub.sandbox.twilio.inject_failure("delivery_error", number=CUSTOMER, code=30005, times=1)
        sent = connector(hub, account, clinic.numbers[0]).send(OutboundMessage(
            channel="sms", to=CUSTOMER, body="Lembrete", status_callback=f"{hub.url}/webhooks/twilio/status"))
        message_id = _outbound(hub, clinic, sent.provider_message_id)

        message = wait_for(lambda: (m := _message(hub, message_id)).status == "undelivered" and m,
                           what="undelivered")
        assert message.error_code == "30005"

    def test_statuses_never_move_backwards(self, live_hub):
        hub = live_hub
        clinic = onboard(hub, "clinica", sandbox_account(hub))
        sid = "SM" + random_hex(16)
        message_id = _outbound(hub, clinic, sid)

        def callback(status: str) -> None:
            form = status_form(message_sid=sid, status=status, from_=clinic.numbers[0], to=CUSTOMER,
                               account_sid=clinic.account_sid)
            url = f"{hub.url}/webhooks/twilio/status"
            answer = httpx.post(url, data=form, headers={"X-Twilio-Signature": twilio_signature(
                url, form, clinic.auth_token)})
            assert answer.status_code == 200
            wait_for(lambda: settled(hub), what=f"{status} handled")

        callback("delivered")
        assert _message(hub, message_id).status == "delivered"
        delivered_at = _message(hub, message_id).delivered_at
        callback("sent")  # late
        callback("undelivered")  # sideways
        assert (_message(hub, message_id).status, _message(hub, message_id).delivered_at) == (
            "delivered", delivered_at)
        callback("read")
        callback("delivered")  # a repeat: the same event, stored once
        assert _message(hub, message_id).status == "read"
        assert count(hub.runtime, WebhookEvent) == 4


    def test_a_callback_that_beats_the_sender_is_applied_once_the_message_is_recorded(self, live_hub):
        hub = live_hub
        clinic = onboard(hub, "clinica", sandbox_account(hub))
        sid = "SM" + random_hex(16)
        form = status_form(message_sid=sid, status="delivered", from_=clinic.numbers[0], to=CUSTOMER,
                           account_sid=clinic.account_sid)
        url = f"{hub.url}/webhooks/twilio/status"
        answer = httpx.post(url, data=form, headers={"X-Twilio-Signature": twilio_signature(url, form,
                                                                                            clinic.auth_token)})
        assert answer.status_code == 200
        wait_for(lambda: (found := events(hub.runtime)) and found[0].attempts >= 1, what="a first try")

        message_id = _outbound(hub, clinic, sid)  # the delivery worker commits the provider's id late
        message = wait_for(lambda: (m := _message(hub, message_id)).status == "delivered" and m, timeout=10,
                           what="delivered")
        assert message.delivered_at is not None


class TestRecovery:
    def test_a_failing_handler_is_retried_then_succeeds(self, live_hub):
        hub = live_hub
        clinic = onboard(hub, "clinica", sandbox_account(hub))
        # an event the handler cannot take yet (its sender is missing) …
        event_id = _stored_event(hub, clinic, {"channel": "sms", "to": clinic.numbers[0], "body": "oi",
                                               "message_sid": "SM" + random_hex(16), "media": []})
        hub.runtime.wake_relay()
        failed = wait_for(lambda: (e := _event(hub, event_id)).attempts == 1 and e, what="a first failure")
        assert failed.handled_at is None and failed.last_error.startswith("KeyError")
        # … until it can (a fixed deploy, a dependency back): the retry goes through
        with hub.runtime.session_factory() as session, session.begin():
            event = session.get(WebhookEvent, event_id)
            event.payload = {**event.payload, "from": CUSTOMER}

        handled = wait_for(lambda: (e := _event(hub, event_id)).handled_at and e, timeout=10, what="the retry")
        assert handled.attempts == 1
        [message] = inbound_messages(hub, clinic.tenant_id, 1)
        assert message.from_address == CUSTOMER

    def test_events_whose_worker_died_are_handed_out_again(self, live_hub):
        hub = live_hub
        clinic = onboard(hub, "clinica", sandbox_account(hub))
        payload = {"channel": "sms", "from": CUSTOMER, "to": clinic.numbers[0], "body": "perdida", "media": []}
        # a worker took this one a minute ago and died (REDISPATCH_AFTER is 45 s);
        # another took its own (or renewed it by its heartbeat) just now
        orphan = _stored_event(hub, clinic, {**payload, "message_sid": "SM" + random_hex(16)},
                               dispatched_at=utcnow() - timedelta(minutes=1))
        in_flight_at = utcnow()
        in_flight = _stored_event(hub, clinic, {**payload, "message_sid": "SM" + random_hex(16)},
                                  dispatched_at=in_flight_at)
        hub.runtime.wake_relay()

        wait_for(lambda: _event(hub, orphan).handled_at, what="the orphan handled")
        [message] = inbound_messages(hub, clinic.tenant_id, 1)
        assert message.body == "perdida"
        still = _event(hub, in_flight)
        assert (still.handled_at, still.dispatched_at) == (None, in_flight_at)


def _outbound(hub, clinic: TwilioTenant, provider_message_id: str, *, channel: str = "sms") -> uuid.UUID:
    with hub.runtime.session_factory() as session, session.begin():
        message = Message(tenant_id=clinic.tenant_id, integration_id=clinic.integration_id,
                          direction=Direction.OUTBOUND, channel=channel, to_address=CUSTOMER,
                          from_address=clinic.numbers[0], body="…", status=MessageStatus.SENT,
                          provider_message_id=provider_message_id)
        session.add(message)
        session.flush()
        return message.id


def _message(hub, message_id: uuid.UUID) -> Message:
    with hub.runtime.session_factory() as session:
        return session.get(Message, message_id)


def _event(hub, event_id: uuid.UUID) -> WebhookEvent:
    with hub.runtime.session_factory() as session:
        return session.get(WebhookEvent, event_id)


def _stored_event(hub, clinic: TwilioTenant, payload: dict, **columns) -> uuid.UUID:
    with hub.runtime.session_factory() as session, session.begin():
        event = WebhookEvent(id=new_id(), kind="twilio", provider_event_id=payload["message_sid"],
                             type="message.received", tenant_id=clinic.tenant_id,
                             integration_id=clinic.integration_id, payload=payload, received_at=utcnow(), **columns)
        session.add(event)
        return event.id

