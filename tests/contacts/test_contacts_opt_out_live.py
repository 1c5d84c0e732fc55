"""Opt-out end to end: a customer texts "Sair" to the clinic's number in the sandbox
Twilio; the signed webhook reaches the hub on a real port, the worker opts the contact
out and exactly one confirmation reaches the sandbox, however often they repeat it."""

from __future__ import annotations

import time

import pytest

from hub.webhooks.models import WebhookEvent
from tests.contacts.inbound_support import consent
from tests.messaging.outbound_support import CUSTOMER, eventually, make_fast, sent_to, twilio_tenant
from tests.webhooks.helpers import events


@pytest.fixture
def hub(live_hub):
    make_fast(live_hub)
    return live_hub


def test_sair_opts_out_and_is_confirmed_once(hub):
    clinic = twilio_tenant(hub, "clinica")

    first = hub.sandbox.twilio.simulate_inbound(to=clinic.number, from_=CUSTOMER, body="Sair")
    assert first.status_code == 200, first.response_text
    eventually(lambda: consent(hub.runtime, clinic.tenant_id, CUSTOMER, "sms"), what="the consent change")
    [confirmation] = eventually(lambda: sent_to(hub, CUSTOMER), what="the confirmation in the sandbox")
    assert "VOLTAR" in confirmation["body"] and confirmation["from"] == clinic.number

    again = hub.sandbox.twilio.simulate_inbound(to=clinic.number, from_=CUSTOMER, body="SAIR!")
    assert again.status_code == 200
    eventually(lambda: [e for e in events(hub.runtime, WebhookEvent.provider_event_id == again.message_sid)
                        if e.handled_at is not None], what="the second message handled")
    time.sleep(0.3)  # room for a wrong second confirmation to be delivered
    assert len(sent_to(hub, CUSTOMER)) == 1
    row = consent(hub.runtime, clinic.tenant_id, CUSTOMER, "sms")
    assert (row.status, row.source) == ("opted_out", "inbound_keyword")
    listed = hub.http.get("/v1/contacts", headers=clinic.headers, params={"phone": CUSTOMER}).json()["data"]
    assert [c["phone"] for c in listed] == [CUSTOMER]
