"""Twilio's 21610 ("Attempt to send to unsubscribed recipient": the person answered STOP
to the carrier, https://www.twilio.com/docs/api/errors/21610) opts the contact out of
that channel, like the STOP keyword: the hub stops sending instead of being refused
again, and the tenant sees why."""

from __future__ import annotations

from tests.messaging.outbound_support import CUSTOMER, make_fast, send, sent_to, twilio_tenant, wait_for_status


def test_a_carrier_stop_opts_the_contact_out_of_that_channel(live_hub):
    make_fast(live_hub)
    tenant = twilio_tenant(live_hub, "clinica")
    live_hub.sandbox.twilio.inject_failure("api_error", code=21610, number=CUSTOMER)

    refused = send(live_hub, tenant)
    assert refused.status_code == 202, refused.text
    failed = wait_for_status(live_hub, tenant, refused.json()["id"], "failed")
    assert failed["error_code"] == "21610" and len(failed["attempts"]) == 1  # permanent: never retried

    [contact] = live_hub.http.get("/v1/contacts", headers=tenant.headers, params={"phone": CUSTOMER}).json()["data"]
    detail = live_hub.http.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers).json()
    assert [(c["channel"], c["status"], c["source"]) for c in detail["consents"]] == [
        ("sms", "opted_out", "carrier_stop")]

    live_hub.sandbox.twilio.clear_failures()
    again = send(live_hub, tenant, body="Lembrete")
    assert again.status_code == 202 and again.json()["status"] == "suppressed", again.text
    assert sent_to(live_hub, CUSTOMER) == []
