"""Webhook trust: X-Hub-Signature-256, the GET handshake, and route keys."""

from __future__ import annotations

import hashlib
import hmac

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from whatsapp_cloud_support import APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN, fixture_bytes

from connectors.base import WebhookRequest
from connectors.registry import load_registry
from connectors.whatsapp_cloud import WhatsAppCloudConnector


def meta_signature(secret: str, body: bytes) -> str:
    # computed here, independently of the connector, as Meta documents it
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def create_request(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return WebhookRequest(method="POST", url="https://hub.example/webhooks/whatsapp_cloud", headers=headers, body=body)


class TestSignature:
    def test_meta_signature_over_raw_body_is_accepted(self):
        body = fixture_bytes("text")
        assert WhatsAppCloudConnector.verify(create_request(body, meta_signature(APP_SECRET, body)), APP_SECRET)

    def test_signature_with_uppercase_hex_is_accepted(self):
        body = fixture_bytes("text")
        signature = "sha256=" + meta_signature(APP_SECRET, body).removeprefix("sha256=").upper()
        assert WhatsAppCloudConnector.verify(create_request(body, signature), APP_SECRET)

    def test_body_changed_after_signing_is_rejected(self):
        body = fixture_bytes("text")
        signature = meta_signature(APP_SECRET, body)
        forged = body.replace(b"another color", b"a refund now!")
        assert not WhatsAppCloudConnector.verify(create_request(forged, signature), APP_SECRET)

    def test_reserialized_json_is_rejected(self):
        # verifying must use the raw bytes: re-encoding the same JSON changes them
        body = fixture_bytes("text")
        signature = meta_signature(APP_SECRET, body)
        compact = b"".join(body.split())
        assert not WhatsAppCloudConnector.verify(create_request(compact, signature), APP_SECRET)

    def test_other_app_secret_is_rejected(self):
        body = fixture_bytes("text")
        signature = meta_signature("another-app", body)
        assert not WhatsAppCloudConnector.verify(create_request(body, signature), APP_SECRET)

    def test_missing_or_malformed_header_is_rejected(self):
        body = fixture_bytes("text")
        digest = meta_signature(APP_SECRET, body).removeprefix("sha256=")
        for header in (None, "", digest, f"sha1={digest}", "sha256=", "sha256"):
            assert not WhatsAppCloudConnector.verify(create_request(body, header), APP_SECRET), header

    def test_empty_secret_never_verifies(self):
        body = b"{}"
        assert not WhatsAppCloudConnector.verify(create_request(body, meta_signature("", body)), "")

    @settings(max_examples=60, deadline=None)
    @given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40), flip=st.integers(min_value=0))
    def test_any_flipped_byte_breaks_the_signature(self, body: bytes, secret: str, flip: int):
        signature = meta_signature(secret, body)
        assert WhatsAppCloudConnector.verify(create_request(body, signature), secret)
        if body:
            index = flip % len(body)
            tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
            assert not WhatsAppCloudConnector.verify(create_request(tampered, signature), secret)


class TestSubscriptionHandshake:
    def test_matching_token_returns_the_challenge(self):
        query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
        assert WhatsAppCloudConnector.verify_subscription(query, VERIFY_TOKEN) == "1158201444"

    def test_wrong_token_wrong_mode_or_no_challenge_returns_none(self):
        base = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"}
        assert WhatsAppCloudConnector.verify_subscription(base | {"hub.verify_token": "guess"}, VERIFY_TOKEN) is None
        assert WhatsAppCloudConnector.verify_subscription(base | {"hub.mode": "unsubscribe"}, VERIFY_TOKEN) is None
        assert WhatsAppCloudConnector.verify_subscription({**base, "hub.challenge": ""}, VERIFY_TOKEN) is None
        assert WhatsAppCloudConnector.verify_subscription(base, "") is None

    def test_handshake_over_http_through_a_receiver(self, receiver_server, receiver):
        url = f"{receiver_server.url}/webhooks/whatsapp_cloud"
        ok = httpx.get(
            url, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "987654321"}
        )
        assert (ok.status_code, ok.text) == (200, "987654321")
        refused = httpx.get(
            url, params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "987654321"}
        )
        assert refused.status_code == 403


class TestRouteKeys:
    def test_phone_number_id_of_the_first_change(self):
        for name in ("text", "status_failed", "batched"):
            assert WhatsAppCloudConnector.route_keys(create_request(fixture_bytes(name), None)) == [PHONE_NUMBER_ID]

    def test_every_distinct_number_skipping_changes_without_metadata(self):
        body = (
            b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":['
            b'{"field":"messages","value":{"messaging_product":"whatsapp"}},'
            b'{"field":"messages","value":{"metadata":{"phone_number_id":"555"}}},'
            b'{"field":"messages","value":{"metadata":{"phone_number_id":"777"}}},'
            b'{"field":"messages","value":{"metadata":{"phone_number_id":"555"}}}]}]}'
        )
        # a batch may hold several numbers (several tenants): each routes its own changes
        assert WhatsAppCloudConnector.route_keys(create_request(body, None)) == ["555", "777"]

    def test_unparseable_or_foreign_body_names_no_tenant(self):
        for body in (b"", b"not json", b"[]", b'{"object":"page","entry":[]}', b'{"entry":"x"}'):
            assert WhatsAppCloudConnector.route_keys(create_request(body, None)) == []


class TestRegistration:
    def test_registry_loads_the_connector(self):
        assert load_registry(include_entry_points=False).get("whatsapp_cloud") is WhatsAppCloudConnector

    def test_credentials_schema_marks_secrets(self):
        schema = WhatsAppCloudConnector.credentials_model.model_json_schema()
        for name in ("access_token", "app_secret", "verify_token"):
            assert schema["properties"][name]["format"] == "password"
        assert WhatsAppCloudConnector.webhook_secret_field == "app_secret"
