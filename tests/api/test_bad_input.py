"""Inputs that used to answer 500: each is now a clear 4xx naming the field, and
nothing is written. (tests/api/test_schema_fuzz.py hunts the same class of input on
every parameter of the API.)"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from hub.contacts.models import Contact
from hub.messaging.models import Message
from hub.webhooks.models import WebhookEvent
from tests.support import platform_headers, random_hex, tenant_headers
from tests.webhooks.helpers import inbound_form, new_account_sid, twilio_signature, twilio_tenant


def rows(runtime, model) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


class TestSequenceCursors:
    @pytest.mark.parametrize("cursor", ["¹", "٣", "99999999999999999999999", str(2**63), "-1", " 1"])
    def test_an_audit_cursor_that_is_no_sequence_number_is_a_400(self, client, runtime, cursor):
        _, headers = tenant_headers(client, runtime)
        r = client.get("/v1/audit", params={"cursor": cursor}, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor"

    @pytest.mark.parametrize("value", ["¹", str(2**63), "99999999999999999999999"])
    def test_a_last_event_id_out_of_range_is_a_422(self, client, runtime, value):
        _, headers = tenant_headers(client, runtime)
        r = client.get("/v1/events/stream", headers={**headers, "Last-Event-ID": value.encode()})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_last_event_id"
        r = client.get("/v1/events/stream", params={"last_event_id": value}, headers=headers)
        assert r.status_code == 422


class TestTimes:
    @pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
    def test_a_filter_time_outside_utc_range_is_a_422_naming_it(self, client, runtime, since):
        _, headers = tenant_headers(client, runtime)
        r = client.get("/v1/audit", params={"since": since}, headers=headers)
        assert r.status_code == 422 and "since" in r.json()["error"]["message"]

    def test_a_filter_time_without_an_offset_is_a_422(self, client, runtime):
        _, headers = tenant_headers(client, runtime)
        r = client.get("/v1/audit", params={"until": "2026-01-01T00:00:00"}, headers=headers)
        assert r.status_code == 422 and "until" in r.json()["error"]["message"]

    @pytest.mark.parametrize("path", ["/v1/messages", "/v1/broadcasts"])
    def test_send_at_at_the_end_of_time_in_sao_paulo_is_a_422_and_nothing_is_written(self, client, runtime, path):
        _, headers = tenant_headers(client, runtime)
        body = {"channel": "sms", "send_at": "9999-12-31T23:59:59"}
        body |= ({"to": "+5511987654321", "body": "oi"} if path == "/v1/messages"
                 else {"recipients": [{"to": "+5511987654321"}], "template": "welcome"})
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "time_out_of_range" and "send_at" in r.json()["error"]["message"]
        assert rows(runtime, Message) == 0

    def test_a_wall_clock_time_the_zone_skips_is_a_422(self, client, runtime):
        # New York's clocks skip 02:00-03:00 on the 2nd Sunday of March: no instant matches
        _, headers = tenant_headers(client, runtime, timezone="America/New_York")
        # the 2nd Sunday of March, next year (within the year send_at may reach ahead)
        year = datetime.now().year + 1
        march = datetime(year, 3, 1)
        gap_day = march + timedelta(days=(6 - march.weekday()) % 7 + 7)
        r = client.post("/v1/messages", headers=headers,
                        json={"channel": "sms", "to": "+5511987654321", "body": "oi",
                              "send_at": gap_day.replace(hour=2, minute=30).isoformat()})
        assert r.status_code == 422 and r.json()["error"]["code"] == "time_in_dst_gap", r.text
        assert rows(runtime, Message) == 0


class TestNulCharacters:
    def test_a_nul_in_a_query_parameter_is_a_400_naming_it(self, client, runtime):
        _, headers = tenant_headers(client, runtime)
        for path, name in (("/v1/audit", "action"), ("/v1/appointments", "resource_id"), ("/v1/contacts", "phone")):
            r = client.get(path, params={name: "a\x00b"}, headers=headers)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["code"] == "nul_character" and name in r.json()["error"]["message"]

    def test_a_nul_in_a_json_field_is_a_422_naming_it_and_nothing_is_written(self, client, runtime):
        _, headers = tenant_headers(client, runtime)
        r = client.post("/v1/contacts", headers={**headers, "Content-Type": "application/json"},
                        content=json.dumps({"name": "Ana\u0000", "phone": "+5511987654321"}))
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("name:"), r.text
        assert rows(runtime, Contact) == 0

    def test_the_six_characters_backslash_u0000_are_ordinary_text(self, client, runtime):
        _, headers = tenant_headers(client, runtime)
        r = client.post("/v1/contacts", headers=headers, json={"name": "Ana \\u0000", "phone": "+5511987654321"})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "Ana \\u0000"

    def test_a_signed_provider_payload_with_a_nul_is_stored_with_a_replacement(self, client, runtime):
        token = random_hex(16)
        tenant = twilio_tenant(runtime, "clinica", account_sid=new_account_sid(), auth_token=token,
                               numbers=["+5511900001111"])
        form = inbound_form(to="+5511900001111", from_="+5511987654321", body="oi\x00", account_sid=tenant.account_sid)
        signature = twilio_signature("http://testserver/webhooks/twilio/messaging", form, token)
        r = client.post("/webhooks/twilio/messaging", data=form, headers={"X-Twilio-Signature": signature})
        assert r.status_code == 200, r.text
        with runtime.session_factory() as session:
            [event] = session.scalars(select(WebhookEvent))
            assert event.payload["body"] == "oi\ufffd"


class TestDeepJson:
    def test_an_unsigned_webhook_nested_50000_deep_is_a_4xx_without_a_traceback(self, client, caplog):
        body = "[" * 50_000 + "]" * 50_000
        with caplog.at_level(logging.WARNING):
            r = client.post("/webhooks/whatsapp", content=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
        assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text

    def test_an_api_body_nested_50000_deep_is_a_4xx(self, client, runtime):
        headers = platform_headers(client, runtime)
        body = '{"slug": "x", "name": ' + "[" * 50_000 + "]" * 50_000 + "}"
        r = client.post("/v1/tenants", content=body, headers={**headers, "Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
