"""What happens when a contact writes in, through the real webhook handler path: the
contact is matched or created by phone, STOP/SAIR/… and START/VOLTAR change consent
and are confirmed once."""

from __future__ import annotations

import threading

import pytest

from hub.contacts.repository import ContactRepository
from hub.contacts.service import consent_keyword
from hub.db import utcnow
from hub.messaging.models import Message
from hub.webhooks import service as webhooks
from tests.contacts.inbound_support import (
    CUSTOMER,
    OUR_NUMBER,
    clinic,
    consent,
    contacts,
    inbound,
    replies,
    store_event,
)
from tests.support import create_tenant

OPT_OUT = ["STOP", "stop", "  Sair  ", "SAÍR", "sáir!", "PARAR", "Parar.", "CANCELAR", "cancelar 🙏", "DESCADASTRAR",
           "descadastrar?", "\"Descadastrar\""]
OPT_IN = ["START", "start!", "Voltar", "VOLTÁR", " voltar. "]
NOT_KEYWORDS = ["stop please", "quero sair da lista", "PARE", "stopp", "", "sair sair"]


class TestKeywordRecognition:
    @pytest.mark.parametrize("body", OPT_OUT)
    def test_opt_out_keywords_in_any_case_with_or_without_accents(self, body):
        assert consent_keyword(body) in {"stop", "sair", "parar", "cancelar", "descadastrar"}

    @pytest.mark.parametrize("body", OPT_IN)
    def test_opt_in_keywords(self, body):
        assert consent_keyword(body) in {"start", "voltar"}

    @pytest.mark.parametrize("body", NOT_KEYWORDS)
    def test_only_a_message_that_is_the_whole_keyword_counts(self, body):
        assert consent_keyword(body) is None


class TestMatching:
    def test_inbound_messages_match_or_create_one_contact_per_phone_and_tenant(self, runtime):
        tenant, other = clinic(runtime, "a"), clinic(runtime, "b", "+5511930000002")
        inbound(runtime, tenant, "Olá")
        # WhatsApp's id without the ninth digit is the same person
        inbound(runtime, tenant, "Oi de novo", from_="+551187654321", channel="whatsapp")
        inbound(runtime, tenant, "Sou outra", from_="+5521988887777")
        inbound(runtime, other, "Olá")
        assert [c.phone for c in contacts(runtime, tenant.tenant_id)] == [CUSTOMER, "+5521988887777"]
        assert [c.phone for c in contacts(runtime, other.tenant_id)] == [CUSTOMER]

    def test_an_inbound_message_names_the_contact_it_was_matched_to(self, runtime):
        tenant = clinic(runtime, "a")
        inbound(runtime, tenant, "Olá")
        inbound(runtime, tenant, "Oi de novo", from_="+551187654321", channel="whatsapp")
        [contact] = contacts(runtime, tenant.tenant_id)
        with runtime.session_factory() as session:
            received = session.query(Message).filter(Message.tenant_id == tenant.tenant_id).all()
        assert [m.contact_id for m in received] == [contact.id, contact.id]

    def test_a_whatsapp_cloud_message_matches_the_same_contact(self, runtime):
        tenant = clinic(runtime)
        inbound(runtime, tenant, "Olá")
        event_id = store_event(runtime, tenant.tenant_id, kind="whatsapp_cloud", event_type="message.received",
                               provider_event_id="wamid.1", payload={
                                   "message_id": "wamid.1", "phone_number_id": "106540352242922",
                                   "from": "551187654321", "body": "sair", "type": "text"})
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "handled"
        [contact] = contacts(runtime, tenant.tenant_id)
        assert contact.phone == CUSTOMER
        assert consent(runtime, tenant.tenant_id, CUSTOMER, "whatsapp").status == "opted_out"

    def test_concurrent_workers_create_one_contact(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        barrier, found, errors = threading.Barrier(4), [], []

        def match() -> None:
            try:
                with runtime.session_factory() as session, session.begin():
                    barrier.wait(timeout=5)
                    found.append(ContactRepository(session, tenant_id).match_phone(CUSTOMER, now=utcnow()).id)
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=match) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert errors == [] and len(found) == 4 and len(set(found)) == 1
        assert len(contacts(runtime, tenant_id)) == 1

    def test_a_sender_that_is_no_phone_number_creates_no_contact(self, runtime):
        tenant = clinic(runtime)
        inbound(runtime, tenant, "Seu código é 1234", from_="MYBANK")
        assert contacts(runtime, tenant.tenant_id) == []


class TestConsentKeywords:
    def test_every_keyword_through_the_handler(self, runtime):
        tenant = clinic(runtime)
        for i, body in enumerate(["STOP", "Sair", "PARÁR", "cancelar!", "Descadastrar"]):
            phone = f"+55119876543{i:02d}"
            inbound(runtime, tenant, body, from_=phone)
            row = consent(runtime, tenant.tenant_id, phone, "sms")
            assert (row.status, row.source) == ("opted_out", "inbound_keyword"), body
            inbound(runtime, tenant, "start" if i % 2 else "Voltar", from_=phone)
            assert consent(runtime, tenant.tenant_id, phone, "sms").status == "opted_in", body
        # each phone: one opt-out and one opt-in confirmation
        assert len(replies(runtime, tenant.tenant_id)) == 10

    def test_opt_out_and_back_in_each_confirmed_once_on_that_channel_only(self, runtime):
        tenant = clinic(runtime)
        inbound(runtime, tenant, "Olá")
        assert replies(runtime, tenant.tenant_id) == []
        inbound(runtime, tenant, "SAIR")
        inbound(runtime, tenant, "sair")
        inbound(runtime, tenant, "STOP")
        [confirmation] = replies(runtime, tenant.tenant_id)
        assert (confirmation.channel, confirmation.to_address, confirmation.status) == ("sms", CUSTOMER, "queued")
        assert "VOLTAR" in confirmation.body and "não receberá" in confirmation.body
        assert consent(runtime, tenant.tenant_id, CUSTOMER, "sms").status == "opted_out"
        assert consent(runtime, tenant.tenant_id, CUSTOMER, "whatsapp") is None

        inbound(runtime, tenant, "Voltar")
        inbound(runtime, tenant, "START")
        confirmations = replies(runtime, tenant.tenant_id)
        assert len(confirmations) == 2 and "voltará a receber" in confirmations[1].body
        assert consent(runtime, tenant.tenant_id, CUSTOMER, "sms").status == "opted_in"

    def test_the_confirmation_speaks_the_contacts_locale(self, runtime):
        tenant = clinic(runtime)
        inbound(runtime, tenant, "hello")
        with runtime.session_factory() as session, session.begin():
            from hub.contacts.models import Contact

            session.query(Contact).filter_by(tenant_id=tenant.tenant_id).update({"locale": "en"})
        inbound(runtime, tenant, "stop")
        [confirmation] = replies(runtime, tenant.tenant_id)
        assert confirmation.body.startswith("Done: you will no longer receive")

    def test_a_repeated_event_confirms_nothing_twice(self, runtime):
        tenant = clinic(runtime)
        event_id = inbound(runtime, tenant, "STOP")
        # a worker that died after committing: the event is handled again from scratch
        with runtime.session_factory() as session, session.begin():
            from hub.webhooks.models import WebhookEvent

            session.get(WebhookEvent, event_id).handled_at = None
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "handled"
        assert len(replies(runtime, tenant.tenant_id)) == 1

    def test_without_a_sending_integration_consent_still_changes_and_the_event_is_handled(self, runtime):
        tenant_id = create_tenant(runtime, "sem-twilio")
        inbound(runtime, tenant_id, "PARAR")
        assert consent(runtime, tenant_id, CUSTOMER, "sms").status == "opted_out"
        assert replies(runtime, tenant_id) == []
        with runtime.session_factory() as session:
            assert session.query(Message).filter_by(tenant_id=tenant_id).count() == 1  # the inbound one


def test_our_number_is_never_a_contact(runtime):
    tenant = clinic(runtime)
    inbound(runtime, tenant, "STOP")
    assert OUR_NUMBER not in {c.phone for c in contacts(runtime, tenant.tenant_id)}
