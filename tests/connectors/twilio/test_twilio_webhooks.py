"""Twilio webhooks: captured payloads signed by the SDK's own RequestValidator, then
verified, routed and parsed by the connector."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from connectors.base import MESSAGE_RECEIVED, MESSAGE_STATUS, WebhookRequest
from connectors.twilio import TwilioConnector

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "twilio" / "fixtures"
TOKEN = "3c9a0f1e2d4b6a8c7e5f0d1b2a3c4e5f"
OTHER_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ACCOUNT = "ACd6f2a8e3c1b94f07a5e2c9d8b7f61a34"
SERVICE = "MG3b8e1d0c7a6f5e4d3c2b1a0f9e8d7c6b"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def signed(url: str, form: dict[str, str], token: str = TOKEN, **extra_headers: str) -> WebhookRequest:
    """The request Twilio would make: form-encoded body, signature over URL + params."""
    signature = RequestValidator(token).compute_signature(url, form)
    headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}
    headers.update(extra_headers)
    return WebhookRequest(method="POST", url=url, headers=headers, body=urlencode(form).encode())


def fixture_request(name: str, token: str = TOKEN) -> WebhookRequest:
    captured = load(name)
    return signed(captured["url"], captured["form"], token)


ALL_FIXTURES = ["inbound_sms", "inbound_whatsapp", "inbound_mms", "status_delivered", "status_undelivered"]


class TestSignature:
    @pytest.mark.parametrize("name", ALL_FIXTURES)
    def test_payload_signed_with_the_account_token_verifies(self, name: str) -> None:
        assert TwilioConnector.verify(fixture_request(name), TOKEN)

    @pytest.mark.parametrize("name", ALL_FIXTURES)
    def test_payload_signed_with_another_token_is_refused(self, name: str) -> None:
        assert not TwilioConnector.verify(fixture_request(name, token=OTHER_TOKEN), TOKEN)

    def test_tampered_body_is_refused(self) -> None:
        request = fixture_request("inbound_sms")
        forged = WebhookRequest(
            method="POST",
            url=request.url,
            headers=request.headers,
            body=request.body.replace(b"14h", b"16h"),
        )
        assert forged.body != request.body
        assert not TwilioConnector.verify(forged, TOKEN)

    def test_other_url_is_refused(self) -> None:
        # The signature covers the URL: a request replayed to another tenant's URL fails.
        request = fixture_request("status_delivered")
        moved = WebhookRequest("POST", request.url.replace("5f1d7c0e", "00000000"), request.headers, request.body)
        assert not TwilioConnector.verify(moved, TOKEN)

    def test_missing_header_is_refused(self) -> None:
        request = fixture_request("inbound_sms")
        unsigned = WebhookRequest("POST", request.url, {"content-type": "x"}, request.body)
        assert not TwilioConnector.verify(unsigned, TOKEN)

    def test_port_in_url_is_tolerated_like_the_sdk(self) -> None:
        # Twilio signs https URLs with or without :443; the SDK accepts both, so do we.
        captured = load("inbound_sms")
        request = signed("https://hub.example.com:443/webhooks/twilio", captured["form"])
        moved = WebhookRequest("POST", captured["url"], request.headers, request.body)
        assert TwilioConnector.verify(moved, TOKEN)

    def test_json_body_with_body_sha256(self) -> None:
        body = json.dumps({"MessageSid": "SM0", "ok": True})
        validator = RequestValidator(TOKEN)
        url = f"https://hub.example.com/webhooks/twilio?bodySHA256={validator.compute_hash(body)}"
        headers = {"x-twilio-signature": validator.compute_signature(url, {})}
        assert TwilioConnector.verify(WebhookRequest("POST", url, headers, body.encode()), TOKEN)
        tampered = body.replace("true", "false").encode()
        assert not TwilioConnector.verify(WebhookRequest("POST", url, headers, tampered), TOKEN)

    @given(
        form=st.dictionaries(
            st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12),
            st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
            max_size=8,
        )
    )
    def test_any_form_round_trips_through_encoding(self, form: dict[str, str]) -> None:
        # What Twilio signs is the decoded params: '+', '&', '=', accents must survive.
        request = signed("https://hub.example.com/webhooks/twilio?x=1", form)
        assert TwilioConnector.verify(request, TOKEN)
        assert not TwilioConnector.verify(request, OTHER_TOKEN)


class TestRouteKeys:
    def test_inbound_sms_names_our_number_then_the_account(self) -> None:
        assert TwilioConnector.route_keys(fixture_request("inbound_sms")) == ["+5511930000001", ACCOUNT]

    def test_inbound_through_a_messaging_service_pool(self) -> None:
        # A pool number may not be registered itself: the service SID still names the tenant.
        keys = TwilioConnector.route_keys(fixture_request("inbound_whatsapp"))
        assert keys == ["+5511930000001", SERVICE, ACCOUNT]

    def test_status_callback_names_the_sender_number(self) -> None:
        keys = TwilioConnector.route_keys(fixture_request("status_delivered"))
        assert keys == ["+5511930000001", ACCOUNT]
        keys = TwilioConnector.route_keys(fixture_request("status_undelivered"))
        assert keys == ["+5511930000001", SERVICE, ACCOUNT]

    def test_whatsapp_status_callback_strips_the_prefix(self) -> None:
        form = {
            "AccountSid": ACCOUNT,
            "MessageSid": "SM1",
            "MessageStatus": "read",
            "From": "whatsapp:+5511930000001",
            "To": "whatsapp:+5521987654321",
        }
        assert TwilioConnector.route_keys(signed("https://h/w", form)) == ["+5511930000001", ACCOUNT]

    def test_unrelated_body_has_no_keys(self) -> None:
        assert TwilioConnector.route_keys(signed("https://h/w", {"hello": "world"})) == []


class TestParse:
    def test_inbound_sms(self) -> None:
        [event] = TwilioConnector.parse(fixture_request("inbound_sms"))
        assert event.type == MESSAGE_RECEIVED
        assert event.provider_event_id == "SM1f0e5a7c9b3d4e2f8a6c0b1d9e7f3a52"
        assert event.data == {
            "message_sid": "SM1f0e5a7c9b3d4e2f8a6c0b1d9e7f3a52",
            "account_sid": ACCOUNT,
            "messaging_service_sid": None,
            "channel": "sms",
            "from": "+5521987654321",
            "to": "+5511930000001",
            "body": "Olá! Quero remarcar minha consulta de amanhã às 14h.",
            "media": [],
            "profile_name": None,
        }

    def test_inbound_whatsapp(self) -> None:
        [event] = TwilioConnector.parse(fixture_request("inbound_whatsapp"))
        assert event.type == MESSAGE_RECEIVED
        assert event.data["channel"] == "whatsapp"
        assert event.data["from"] == "+5521987654321"
        assert event.data["to"] == "+5511930000001"
        assert event.data["profile_name"] == "Maria Souza"
        assert event.data["messaging_service_sid"] == SERVICE
        assert event.data["body"] == "Bom dia, vocês atendem sábado?"

    def test_inbound_mms_lists_its_media_in_order(self) -> None:
        [event] = TwilioConnector.parse(fixture_request("inbound_mms"))
        assert event.provider_event_id == "MM4e9f2a1b0c8d7e6f5a4b3c2d1e0f9a8b"
        assert event.data["body"] == "Segue a foto do exame + a receita"
        media = event.data["media"]
        assert [m["content_type"] for m in media] == ["image/jpeg", "image/png"]
        assert media[0]["url"].endswith("/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9")
        assert media[1]["url"].endswith("/Media/ME9f8e7d6c5b4a39281706f5e4d3c2b1a0")

    def test_status_delivered(self) -> None:
        [event] = TwilioConnector.parse(fixture_request("status_delivered"))
        assert event.type == MESSAGE_STATUS
        assert event.provider_event_id == "SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d:delivered"
        assert event.data == {
            "message_sid": "SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d",
            "status": "delivered",
            "error_code": None,
            "error_message": None,
        }

    def test_status_undelivered_carries_the_error_code(self) -> None:
        [event] = TwilioConnector.parse(fixture_request("status_undelivered"))
        assert event.provider_event_id == "SM2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e:undelivered"
        assert event.data["status"] == "undelivered"
        assert event.data["error_code"] == "30003"

    def test_each_status_of_one_message_is_a_distinct_event(self) -> None:
        form = load("status_delivered")["form"]
        ids = {
            TwilioConnector.parse(signed("https://h/w", {**form, "MessageStatus": status}))[0].provider_event_id
            for status in ("queued", "sent", "delivered")
        }
        assert len(ids) == 3

    def test_non_message_webhook_is_ignored(self) -> None:
        assert TwilioConnector.parse(signed("https://h/w", {"CallSid": "CA1", "CallStatus": "ringing"})) == []

    @given(
        form=st.dictionaries(
            st.sampled_from(
                ["MessageSid", "SmsSid", "MessageStatus", "From", "To", "Body", "NumMedia", "MediaUrl0",
                 "MediaContentType0", "MediaUrl3", "ErrorCode", "AccountSid", "ProfileName"]
            ),
            st.text(max_size=20),
        )
    )
    def test_any_form_parses_to_declared_events_only(self, form: dict[str, str]) -> None:
        events = TwilioConnector.parse(signed("https://h/w", form))
        assert len(events) <= 1
        assert {e.type for e in events} <= TwilioConnector.event_types
        for event in events:
            json.dumps(event.data)  # what the hub stores must be JSON
            assert event.provider_event_id
