"""Parsing Meta's ``messages`` webhook: one check per captured payload, plus robustness."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from whatsapp_cloud_support import FIXTURES, PHONE_NUMBER_ID, fixture_bytes

from connectors.base import MESSAGE_RECEIVED, MESSAGE_STATUS, InboundEvent, WebhookRequest
from connectors.whatsapp_cloud import MalformedWebhook, WhatsAppCloudConnector

SENT_ID = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI3MUI4N0ZCMzRCNjI0RkM2ODAA"
AT_1744344496 = datetime(2025, 4, 11, 4, 8, 16, tzinfo=UTC)


def parse_fixture(name: str) -> list[InboundEvent]:
    request = WebhookRequest(
        method="POST", url="https://hub.example/webhooks/whatsapp_cloud", headers={}, body=fixture_bytes(name)
    )
    events = WhatsAppCloudConnector.parse(request)
    undeclared = {e.type for e in events} - WhatsAppCloudConnector.event_types
    assert not undeclared, f"parse emitted undeclared event types {undeclared}"
    for event in events:
        json.dumps(event.data)  # the hub stores data as JSON
    return events


def only(events: list[InboundEvent]) -> InboundEvent:
    assert len(events) == 1, events
    return events[0]


class TestEveryFixtureIsChecked:
    def test_each_fixture_file_has_a_test(self):
        checked = {
            "text",
            "image",
            "interactive_button_reply",
            "interactive_list_reply",
            "button",
            "location",
            "status_sent",
            "status_delivered",
            "status_read",
            "status_failed",
            "batched",
        }
        assert {p.stem for p in FIXTURES.glob("*.json")} == checked


class TestMessages:
    def test_text(self):
        event = only(parse_fixture("text"))
        assert event.type == MESSAGE_RECEIVED
        assert event.provider_event_id == "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
        assert event.occurred_at == AT_1744344496
        assert event.data == {
            "message_id": event.provider_event_id,
            "phone_number_id": PHONE_NUMBER_ID,
            "display_phone_number": "15550783881",  # the business number itself; the id above is not one
            "from": "16505551234",
            "from_user_id": None,  # Meta's fixture predates business-scoped ids
            "username": None,
            "profile_name": "Sheena Nelson",
            "type": "text",
            "body": "Does it come in another color?",
            "media": None,
            "reply": None,
            "location": None,
            "context": None,
            "timestamp": "2025-04-11T04:08:16+00:00",
        }

    def test_image_carries_media_id_mime_type_and_caption(self):
        event = only(parse_fixture("image"))
        assert event.data["type"] == "image"
        assert event.data["body"] == "Is this the right one?"
        assert event.data["media"] == {
            "id": "1003383421387256",
            "mime_type": "image/jpeg",
            "sha256": "SfInY3Jx1ZGtlmr3Xt3Uw9jkybn5bNj5pAJz8GHkcXA=",
            "caption": "Is this the right one?",
        }

    def test_interactive_button_reply(self):
        event = only(parse_fixture("interactive_button_reply"))
        assert event.data["type"] == "interactive"
        assert event.data["reply"] == {"kind": "button_reply", "id": "change-button", "title": "Change"}
        assert event.data["body"] == "Change"
        assert event.data["context"] == {
            "message_id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI0QTk4QzE2M0VBQjhDNjM1RjZBAA==",
            "from": "15550783881",
        }

    def test_interactive_list_reply(self):
        event = only(parse_fixture("interactive_list_reply"))
        assert event.data["reply"] == {
            "kind": "list_reply",
            "id": "priority_express",
            "title": "Priority Mail Express",
            "description": "Next Day to 2 Days",
        }

    def test_template_quick_reply_button(self):
        event = only(parse_fixture("button"))
        assert event.data["type"] == "button"
        assert event.data["reply"] == {"kind": "button", "payload": "Stop promotions", "text": "Stop promotions"}
        assert event.data["body"] == "Stop promotions"

    def test_location(self):
        event = only(parse_fixture("location"))
        assert event.data["location"] == {
            "latitude": 37.483307,
            "longitude": -122.148981,
            "name": "Meta Headquarters",
            "address": "1 Hacker Way, Menlo Park, CA 94025",
            "url": "https://www.meta.com",
        }
        assert event.data["body"] == "Meta Headquarters"


class TestStatuses:
    @pytest.mark.parametrize("status", ["sent", "delivered", "read"])
    def test_progress_statuses(self, status: str):
        event = only(parse_fixture(f"status_{status}"))
        assert event.type == MESSAGE_STATUS
        assert event.provider_event_id == f"{SENT_ID}:{status}"
        assert event.data["message_id"] == SENT_ID
        assert event.data["status"] == status
        assert event.data["recipient_id"] == "16505551234"
        assert event.data["phone_number_id"] == PHONE_NUMBER_ID
        assert event.data["errors"] == [] and event.data["error_code"] is None

    def test_each_status_of_one_message_is_its_own_event(self):
        ids = {only(parse_fixture(f"status_{s}")).provider_event_id for s in ("sent", "delivered", "read")}
        assert len(ids) == 3

    def test_failed_carries_meta_error_code_and_title(self):
        event = only(parse_fixture("status_failed"))
        assert event.provider_event_id == "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBJGNjM4RTY1RjlFQTk1MTk0MUIA:failed"
        assert event.data["error_code"] == "131026"
        assert event.data["error_title"] == "Message undeliverable"
        assert event.data["errors"] == [
            {
                "code": "131026",
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "details": "Message Undeliverable.",
            }
        ]

    def test_pricing_category_is_kept(self):
        assert only(parse_fixture("status_sent")).data["pricing_category"] == "utility"


class TestBatched:
    def test_every_entry_and_change_in_order(self):
        events = parse_fixture("batched")
        assert [(e.type, e.data.get("type") or e.data.get("status")) for e in events] == [
            (MESSAGE_RECEIVED, "text"),
            (MESSAGE_STATUS, "delivered"),
            (MESSAGE_RECEIVED, "interactive"),
            (MESSAGE_RECEIVED, "image"),
            (MESSAGE_STATUS, "failed"),
        ]
        assert len({e.provider_event_id for e in events}) == len(events)

    def test_reaction_and_template_status_update_are_ignored_on_purpose(self):
        payload = json.loads(fixture_bytes("batched"))
        ignored_reaction = payload["entry"][1]["changes"][0]["value"]["messages"][2]["id"]
        events = parse_fixture("batched")
        assert ignored_reaction not in {e.provider_event_id for e in events}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
KEYS = st.sampled_from(
    ["object", "entry", "changes", "value", "field", "messages", "statuses", "metadata", "contacts", "id", "type"]
)
SHAPED = st.recursive(
    JSON_VALUES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=40,
)


def create_request(body: bytes) -> WebhookRequest:
    return WebhookRequest(method="POST", url="https://hub.example/webhooks/whatsapp_cloud", headers={}, body=body)


class TestRobustness:
    def test_non_json_body_is_malformed(self):
        for body in (b"", b"<html>", b"\xff\xfe", b"[1, 2]"):
            with pytest.raises(MalformedWebhook):
                WhatsAppCloudConnector.parse(create_request(body))

    def test_message_without_id_is_skipped_not_fatal(self):
        body = json.loads(fixture_bytes("text"))
        del body["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        assert WhatsAppCloudConnector.parse(create_request(json.dumps(body).encode())) == []

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=st.dictionaries(KEYS, SHAPED, max_size=4))
    def test_odd_shapes_never_crash_and_only_emit_declared_events(self, payload):
        events = WhatsAppCloudConnector.parse(create_request(json.dumps(payload).encode()))
        assert all(e.type in WhatsAppCloudConnector.event_types for e in events)
        assert all(e.provider_event_id for e in events)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


BATCHED = json.loads(fixture_bytes("batched"))
BATCHED_PATHS = [p for p in _paths(BATCHED) if p]


class TestMutatedBatch:
    @settings(max_examples=200, deadline=None)
    @given(path=st.sampled_from(BATCHED_PATHS), junk=JSON_VALUES)
    def test_one_odd_value_anywhere_spoils_at_most_its_own_item(self, path, junk):
        payload = json.loads(json.dumps(BATCHED))
        node = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = junk
        events = WhatsAppCloudConnector.parse(create_request(json.dumps(payload).encode()))
        assert all(e.type in WhatsAppCloudConnector.event_types for e in events)
        # below entry/i/changes/j/value/messages|statuses/k the junk sits inside one item:
        # that item may be lost, the other four must still come through
        if len(path) >= 7:
            assert len(events) >= 4
