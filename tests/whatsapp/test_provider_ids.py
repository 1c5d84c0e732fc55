"""A provider's id is never taken for a phone number (issue 19).

Meta's ``phone_number_id`` is 15 or so digits; one in a few hundred reads as a valid
number somewhere (``437246167010694`` is Austrian), and the hub once recorded such
an id, normalized, as the number an inbound message was sent to. Here the ids are
drawn to look as much like phone numbers as possible, and every message goes the
whole way: signed POST, the stored event, the worker's handler, the messages table.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import WebhookRequest
from connectors.twilio.connector import TwilioConnector
from connectors.whatsapp_cloud.events import parse_webhook as parse_meta
from hub.messaging.addresses import normalize_phone
from tests.whatsapp.whatsapp_support import (
    CUSTOMER,
    WhatsAppTenant,
    change,
    envelope,
    handle_stored,
    messages_of,
    post_signed,
    text_message,
    whatsapp_tenant,
)

# Real numbers of many countries written as Meta writes ids (digits, no "+"): the ids
# most likely to be mistaken for a phone, plus any 15-digit id Meta could hand out.
_EXAMPLE_NUMBERS = sorted(
    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).removeprefix("+")
    for region in phonenumbers.SUPPORTED_REGIONS
    if (number := phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)) is not None
)
_TENANTS: dict[tuple[int, str], WhatsAppTenant] = {}
phone_like_ids = st.one_of(st.sampled_from(_EXAMPLE_NUMBERS), st.from_regex(r"\A[1-9][0-9]{14}\Z"))
business_numbers = st.sampled_from(["5511999990000", "5521987650000", "551133334444", "14155550100"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(phone_number_id=phone_like_ids, display=business_numbers)
def test_meta_phone_number_id_is_never_an_address(client, runtime, phone_number_id, display):
    # Hypothesis may draw an id twice: that number's tenant is set up once per runtime
    key = (id(runtime), phone_number_id)
    if key not in _TENANTS:
        _TENANTS[key] = whatsapp_tenant(runtime, f"ids-{uuid.uuid4().hex[:12]}", phone_number_id=phone_number_id)
    tenant = _TENANTS[key]
    message = text_message("Oi", message_id=f"wamid.{uuid.uuid4().hex}")
    body = envelope([change(phone_number_id, messages=[message], display=display)])
    assert post_signed(client, body, tenant.app_secret).status_code == 200
    assert set(handle_stored(runtime)) == {"handled"}

    [received] = [m for m in messages_of(runtime, tenant.tenant_id, "inbound")
                  if m.provider_message_id == message["id"]]
    assert received.to_address == normalize_phone("+" + display)
    assert received.from_address == CUSTOMER
    assert phone_number_id not in {received.to_address.removeprefix("+"), received.from_address.removeprefix("+")}


@settings(max_examples=200, deadline=None)
@given(phone_number_id=phone_like_ids, display=business_numbers)
def test_meta_events_keep_the_id_and_the_number_apart(phone_number_id, display):
    [event] = parse_meta(envelope([change(phone_number_id, messages=[text_message("Oi")], display=display)]))
    assert event.data["phone_number_id"] == phone_number_id
    assert event.data["display_phone_number"] == display


sids = st.from_regex(r"\A(SM|MM|AC|MG)[0-9a-f]{32}\Z")


@settings(max_examples=200, deadline=None)
@given(message_sid=sids, account_sid=sids)
def test_twilio_sids_stay_ids(message_sid, account_sid):
    """Twilio's addresses are From/To; its SIDs only ever name objects."""
    form = {"MessageSid": message_sid, "SmsSid": message_sid, "AccountSid": account_sid, "From": "+5511987654321",
            "To": "+5511999990000", "Body": "Oi", "NumMedia": "0"}
    request = WebhookRequest(method="POST", url="https://hub.example/webhooks/twilio", headers={},
                             body=urlencode(form).encode())
    events = TwilioConnector.parse(request)
    assert events, "the inbound SMS was not parsed"
    for event in events:
        addresses = {event.data.get("from"), event.data.get("to")}
        assert {message_sid, account_sid}.isdisjoint(addresses)

