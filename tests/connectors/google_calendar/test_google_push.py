"""Watch channels: pushes as Google sends them, received by a real HTTP server and
read back through the connector's webhook side."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from connectors.base import CALENDAR_CHANGED, PermanentProviderError, WebhookRequest
from connectors.google_calendar import EventDetails, GoogleCalendarConnector, event_id_for

T0 = datetime(2031, 7, 1, 14, 0, tzinfo=UTC)


def open_channel(calendar, receiver, calendar_id: str = "primary", ttl: timedelta = timedelta(hours=6)):
    channel_id = str(uuid.uuid4())
    token = calendar.credentials.channel_token.get_secret_value()
    channel = calendar.watch(calendar_id, channel_id=channel_id, address=receiver.url, token=token, ttl=ttl)
    return channel, token


def numbers(requests: list[WebhookRequest]) -> list[int]:
    return [int(r.headers["x-goog-message-number"]) for r in requests]


class TestWatch:
    def test_watch_sends_sync_then_exists_with_googles_headers(self, sandbox, calendar, receiver):
        channel, token = open_channel(calendar, receiver)
        assert channel.resource_id and "/calendar/v3/calendars/" in channel.resource_uri
        assert abs(channel.expiration - (datetime.now(UTC) + timedelta(hours=6))) < timedelta(seconds=5)

        (sync,) = receiver.wait_for(channel.id, 1)
        calendar.insert_event(
            "primary",
            event_id_for(uuid.uuid4()),
            EventDetails(summary="nova consulta", start=T0, end=T0 + timedelta(hours=1)),
        )
        received = receiver.wait_for(channel.id, 2)

        assert len(received) == 2 and received[0] is sync
        assert [r.headers["x-goog-resource-state"] for r in received] == ["sync", "exists"]
        assert numbers(received) == [1, 2]
        for push in received:
            assert push.method == "POST" and push.body == b""
            assert push.headers["x-goog-channel-id"] == channel.id
            assert push.headers["x-goog-channel-token"] == token
            assert push.headers["x-goog-resource-id"] == channel.resource_id
            assert push.headers["x-goog-resource-uri"] == channel.resource_uri
            expires = parsedate_to_datetime(push.headers["x-goog-channel-expiration"])
            assert abs(expires - channel.expiration) < timedelta(seconds=1)

    def test_edits_made_in_google_push_with_increasing_numbers(self, sandbox, calendar, receiver):
        email = calendar.credentials.account_email
        event_id = event_id_for(uuid.uuid4())
        calendar.insert_event("primary", event_id, EventDetails(summary="x", start=T0, end=T0 + timedelta(hours=1)))
        channel, _ = open_channel(calendar, receiver)
        control = f"{sandbox.url}/_sandbox/google/calendars/{email}/events"

        with httpx.Client(timeout=5.0, trust_env=False) as person:
            person.patch(f"{control}/{event_id}", json={"summary": "remarcada"}).raise_for_status()
            person.post(
                f"{control}/{event_id}/move", json={"start": (T0 + timedelta(days=1)).isoformat()}
            ).raise_for_status()
            created = person.post(
                control,
                json={
                    "summary": "encaixe",
                    "start": {"dateTime": T0.isoformat()},
                    "end": {"dateTime": (T0 + timedelta(hours=1)).isoformat()},
                },
            )
            person.delete(f"{control}/{created.json()['id']}").raise_for_status()
            person.post(f"{control}/bulk", json={"count": 50}).raise_for_status()  # one push for the batch

        received = receiver.wait_for(channel.id, 6)
        assert numbers(received) == sorted(set(numbers(received))) and len(received) == 6
        assert [r.headers["x-goog-resource-state"] for r in received] == ["sync"] + ["exists"] * 5
        moved = calendar.get_event("primary", event_id)
        assert (moved.summary, moved.start, moved.end) == (
            "remarcada",
            T0 + timedelta(days=1),
            T0 + timedelta(days=1, hours=1),
        )

    def test_only_the_changed_calendars_channels_are_pushed(self, sandbox, connect, connector_for, receiver):
        calendar = connector_for(connect(calendars=("Sala 2",)))
        other = next(c.id for c in calendar.list_calendars() if not c.primary)
        primary_channel, _ = open_channel(calendar, receiver)
        other_channel, _ = open_channel(calendar, receiver, other)
        receiver.wait_for(other_channel.id, 1)

        calendar.insert_event(
            other, event_id_for(uuid.uuid4()), EventDetails(summary="x", start=T0, end=T0 + timedelta(hours=1))
        )
        assert sandbox.state.wait_for_pushes()
        assert len(receiver.for_channel(other_channel.id)) == 2
        assert len(receiver.for_channel(primary_channel.id)) == 1  # its sync only
        assert primary_channel.resource_id != other_channel.resource_id

    def test_stop_channel_stops_pushes(self, sandbox, calendar, receiver):
        channel, _ = open_channel(calendar, receiver)
        receiver.wait_for(channel.id, 1)

        assert calendar.stop_channel(channel.id, channel.resource_id) is True
        calendar.insert_event(
            "primary", event_id_for(uuid.uuid4()), EventDetails(summary="x", start=T0, end=T0 + timedelta(hours=1))
        )
        assert sandbox.state.wait_for_pushes()
        assert len(receiver.for_channel(channel.id)) == 1
        assert calendar.stop_channel(channel.id, channel.resource_id) is False

    def test_channel_ids_are_unique(self, calendar, receiver):
        channel, token = open_channel(calendar, receiver)
        with pytest.raises(PermanentProviderError) as refused:
            calendar.watch("primary", channel_id=channel.id, address=receiver.url, token=token)
        assert refused.value.status == 400


class TestHttpsOnly:
    """Google delivers to HTTPS receivers only; the sandbox, to http:// ones it was told are local."""

    def test_an_http_address_elsewhere_is_refused_as_google_refuses_it(self, sandbox, calendar):
        address = "http://hooks.clinic.example/webhooks/google_calendar"
        with pytest.raises(PermanentProviderError) as refused:
            calendar.watch("primary", channel_id=str(uuid.uuid4()), address=address, token="t")
        assert refused.value.status == 400 and refused.value.code == "push.webhookUrlNotHttps"
        assert refused.value.message == f"WebHook callback must be HTTPS: {address}"
        assert not any(c.address == address for c in sandbox.state.channels.values())

    def test_https_is_accepted_and_a_trusted_local_origin_too(self, sandbox, calendar, receiver):
        https = calendar.watch("primary", channel_id=str(uuid.uuid4()), address="https://hooks.clinic.example/g",
                               token="t")
        local = calendar.watch("primary", channel_id=str(uuid.uuid4()), address=receiver.url, token="t")
        assert https.resource_id and local.resource_id
        # the same host on another port is another origin
        other_port = receiver.url.replace(receiver.url.split(":")[2].split("/")[0], "9")
        with pytest.raises(PermanentProviderError):
            calendar.watch("primary", channel_id=str(uuid.uuid4()), address=other_port, token="t")


class TestWebhookSide:
    def test_route_verify_and_parse_real_pushes(self, calendar, receiver):
        channel, token = open_channel(calendar, receiver)
        calendar.insert_event(
            "primary", event_id_for(uuid.uuid4()), EventDetails(summary="x", start=T0, end=T0 + timedelta(hours=1))
        )
        sync, change = receiver.wait_for(channel.id, 2)

        assert GoogleCalendarConnector.route_keys(change) == [channel.id]
        assert GoogleCalendarConnector.verify(change, token)
        assert not GoogleCalendarConnector.verify(change, token[:-1] + "x")
        assert not GoogleCalendarConnector.verify(change, "")

        (handshake,) = GoogleCalendarConnector.parse(sync)
        (changed,) = GoogleCalendarConnector.parse(change)
        assert {handshake.type, changed.type} <= GoogleCalendarConnector.event_types == {CALENDAR_CHANGED}
        assert handshake.provider_event_id == f"{channel.id}:1" and handshake.data["handshake"] is True
        assert changed.provider_event_id == f"{channel.id}:2"
        assert changed.data == {
            "channel_id": channel.id,
            "resource_id": channel.resource_id,
            "resource_uri": channel.resource_uri,
            "resource_state": "exists",
            "message_number": 2,
            "handshake": False,
            "channel_expiration": changed.data["channel_expiration"],
        }
        assert datetime.fromisoformat(changed.data["channel_expiration"]) > datetime.now(UTC)

    def test_requests_without_google_headers(self):
        bare = WebhookRequest(method="POST", url="https://hub.example/webhooks/google_calendar", headers={}, body=b"")
        assert GoogleCalendarConnector.route_keys(bare) == []
        assert not GoogleCalendarConnector.verify(bare, "secret")
        assert GoogleCalendarConnector.parse(bare) == []
