"""The sandbox against Google's own documentation: the error bodies the errors guide
prints, the examples of the push, recurring-events and OAuth guides
(``connectors/google_calendar/fixtures/``), and the discovery document's schemas for
every resource the sandbox returns. Where they differ, the sandbox is wrong."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from googleapiclient import discovery_cache

import connectors.google_calendar
from connectors.base import CALENDAR_CHANGED, WebhookRequest
from connectors.google_calendar import GoogleCalendarConnector, event_id_for

FIXTURES = Path(connectors.google_calendar.__file__).parent / "fixtures"
DISCOVERY = json.loads((Path(discovery_cache.__file__).parent / "documents" / "calendar.v3.json").read_text())


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


ERRORS = fixture("errors")["errors"]


def api(sandbox, calendar) -> httpx.Client:
    token = calendar.credentials.access_token.get_secret_value()
    return httpx.Client(base_url=f"{sandbox.url}/calendar/v3", headers={"Authorization": f"Bearer {token}"},
                        timeout=5.0, trust_env=False)


def slot(hours: int = 0) -> dict[str, dict[str, str]]:
    start = datetime(2031, 4, 7, 13, 0, tzinfo=UTC) + timedelta(hours=hours)
    return {"start": {"dateTime": start.isoformat()}, "end": {"dateTime": (start + timedelta(hours=1)).isoformat()}}


def assert_documented(response: httpx.Response, name: str) -> None:
    documented = ERRORS[name]
    assert (response.status_code, response.json()) == (documented["status"], documented["body"]), name


class TestDocumentedErrors:
    """Every error the sandbox can produce, byte for byte the guide's JSON."""

    def test_time_range_empty(self, sandbox, calendar):
        with api(sandbox, calendar) as google:
            listed = google.get("/calendars/primary/events", params={"timeMin": "2031-01-02T00:00:00Z",
                                                                     "timeMax": "2031-01-01T00:00:00Z"})
            busy = google.post("/freeBusy", json={"timeMin": "2031-01-02T00:00:00Z",
                                                  "timeMax": "2031-01-01T00:00:00Z", "items": [{"id": "primary"}]})
        assert_documented(listed, "timeRangeEmpty")
        assert_documented(busy, "timeRangeEmpty")

    def test_invalid_credentials(self, sandbox, calendar):
        with httpx.Client(trust_env=False) as google:
            r = google.get(f"{sandbox.url}/calendar/v3/calendars/primary/events",
                           headers={"Authorization": "Bearer ya29.not-a-token"})
        assert_documented(r, "authError")

    def test_not_found(self, sandbox, calendar):
        with api(sandbox, calendar) as google:
            assert_documented(google.get("/calendars/primary/events/nosuchevent0"), "notFound")
            assert_documented(google.get("/calendars/someone-else%40example.com/events"), "notFound")

    def test_duplicate(self, sandbox, calendar):
        body = {"id": event_id_for(uuid.uuid4()), "summary": "x"} | slot()
        with api(sandbox, calendar) as google:
            assert google.post("/calendars/primary/events", json=body).status_code == 200
            assert_documented(google.post("/calendars/primary/events", json=body), "duplicate")

    def test_full_sync_required(self, sandbox, calendar):
        with api(sandbox, calendar) as google:
            token = google.get("/calendars/primary/events").json()["nextSyncToken"]
            sandbox.state.invalidate_sync_tokens(calendar.credentials.account_email)
            assert_documented(google.get("/calendars/primary/events", params={"syncToken": token}),
                              "fullSyncRequired")

    def test_deleted(self, sandbox, calendar):
        with api(sandbox, calendar) as google:
            made = google.post("/calendars/primary/events", json={"summary": "x"} | slot()).json()
            assert google.delete(f"/calendars/primary/events/{made['id']}").status_code == 204
            assert_documented(google.delete(f"/calendars/primary/events/{made['id']}"), "deleted")

    def test_precondition_failed(self, sandbox, calendar):
        with api(sandbox, calendar) as google:
            made = google.post("/calendars/primary/events", json={"summary": "x"} | slot()).json()
            google.patch(f"/calendars/primary/events/{made['id']}", json={"summary": "changed"})
            stale = google.patch(f"/calendars/primary/events/{made['id']}", json={"summary": "mine"},
                                 headers={"If-Match": made["etag"]})
        assert_documented(stale, "conditionNotMet")

    @pytest.mark.parametrize(("status", "name"), [(429, "rateLimitExceeded"), (500, "backendError")])
    def test_injected_failures_answer_as_google_fails(self, sandbox, calendar, status, name):
        sandbox.state.inject_failure(status, path_prefix="/calendar/v3/users/me/calendarList")
        with api(sandbox, calendar) as google:
            assert_documented(google.get("/users/me/calendarList"), name)


def schema_problems(value: Any, schema_id: str, path: str = "") -> list[str]:
    """Keys the sandbox returns that the discovery document's schema does not have."""
    schema = DISCOVERY["schemas"][schema_id]
    problems = []
    for key, item in value.items():
        spec = schema.get("properties", {}).get(key)
        if spec is None:
            problems.append(f"{schema_id}{path}.{key}")
            continue
        problems += _check(item, spec, f"{path}.{key}")
    return problems


def _check(value: Any, spec: dict[str, Any], path: str) -> list[str]:
    if "$ref" in spec and isinstance(value, dict):
        return schema_problems(value, spec["$ref"], path)
    if spec.get("type") == "array" and isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _check(item, spec["items"], f"{path}[{i}]")]
    if spec.get("type") == "object" and isinstance(value, dict):
        if "additionalProperties" in spec:
            return [p for k, item in value.items() for p in _check(item, spec["additionalProperties"], f"{path}.{k}")]
        return [f"{path}.{k}" for k in value if k not in spec.get("properties", {})] + [
            p for k, item in value.items() if k in spec.get("properties", {})
            for p in _check(item, spec["properties"][k], f"{path}.{k}")]
    return []


class TestDiscoveryDocument:
    """Every field the sandbox returns is one the discovery document defines."""

    def test_events_calendar_list_freebusy_and_channels(self, sandbox, calendar, receiver):
        recurring = fixture("recurring")["insert_request"]["body"]
        with api(sandbox, calendar) as google:
            single = google.post("/calendars/primary/events", json={
                "summary": "x", "extendedProperties": {"private": {"hub": "1"}}} | slot()).json()
            series = google.post("/calendars/primary/events", json=recurring).json()
            listing = google.get("/calendars/primary/events", params={"singleEvents": "true"}).json()
            instances = google.get(f"/calendars/primary/events/{series['id']}/instances").json()
            calendars = google.get("/users/me/calendarList").json()
            primary = google.get("/calendars/primary").json()
            busy = google.post("/freeBusy", json={"timeMin": "2011-06-01T00:00:00Z", "timeMax": "2031-12-31T00:00:00Z",
                                                  "items": [{"id": "primary"}, {"id": "nobody@example.com"}]}).json()
            channel = google.post("/calendars/primary/events/watch", json={
                "id": str(uuid.uuid4()), "type": "web_hook", "address": receiver.url, "token": "t"}).json()
        problems = (schema_problems(single, "Event") + schema_problems(series, "Event")
                    + schema_problems(listing, "Events") + schema_problems(instances, "Events")
                    + schema_problems(calendars, "CalendarList") + schema_problems(primary, "Calendar")
                    + schema_problems(busy, "FreeBusyResponse") + schema_problems(channel, "Channel"))
        assert problems == []
        assert listing["items"] and all(i["kind"] == "calendar#event" for i in listing["items"])


class TestPushGuide:
    def test_the_documented_watch_request_and_answer(self, sandbox, calendar, receiver):
        documented = fixture("push")
        # the guide's receiver is on the internet; tests deliver to the local one, and its
        # 2015 expiration is long past, so the channel asks for its default lifetime
        body = documented["watch_request"]["body"] | {"address": receiver.url, "id": str(uuid.uuid4())}
        del body["expiration"]
        with api(sandbox, calendar) as google:
            answer = google.post("/calendars/primary/events/watch", json=body)
        assert answer.status_code == 200
        assert set(answer.json()) == set(documented["watch_response"])
        assert answer.json()["token"] == body["token"] and answer.json()["id"] == body["id"]
        assert int(answer.json()["expiration"]) > datetime.now(UTC).timestamp() * 1000

        sync, = receiver.wait_for(body["id"], 1)
        expected = {k.lower() for k in documented["sync_notification"]["headers"]}
        assert expected <= set(sync.headers)
        assert sync.headers["x-goog-resource-state"] == "sync" and sync.headers["x-goog-message-number"] == "1"

        with api(sandbox, calendar) as google:
            google.post("/calendars/primary/events", json={"summary": "x"} | slot())
        _, change = receiver.wait_for(body["id"], 2)
        expected = {k.lower() for k in documented["change_notification"]["headers"] if k.startswith("X-Goog")}
        assert {k for k in change.headers if k.startswith("x-goog")} == expected
        assert change.headers["x-goog-resource-state"] == "exists" and change.body == b""

        stop = documented["stop_request"]["body"] | {"id": body["id"], "resourceId": answer.json()["resourceId"]}
        with api(sandbox, calendar) as google:
            assert google.post("/channels/stop", json=stop).status_code == 204

    def test_the_documented_notification_is_read_by_the_connector(self):
        change = fixture("push")["change_notification"]
        request = WebhookRequest(method="POST", url="https://mydomain.com/notifications",
                                 headers={k.lower(): v for k, v in change["headers"].items()}, body=b"", query={})
        assert GoogleCalendarConnector.route_keys(request) == ["4ba78bf0-6a47-11e2-bcfd-0800200c9a66"]
        assert GoogleCalendarConnector.verify(request, "398348u3tu83ut8uu38")
        assert not GoogleCalendarConnector.verify(request, "another-token")
        (event,) = GoogleCalendarConnector.parse(request)
        assert event.type == CALENDAR_CHANGED and event.data["message_number"] == 10
        assert event.data["resource_state"] == "exists" and not event.data["handshake"]
        assert event.data["channel_expiration"] == "2013-11-19T01:13:52+00:00"


class TestRecurringEventsGuide:
    def test_the_documented_series_has_five_fridays(self, sandbox, calendar):
        documented = fixture("recurring")["insert_request"]["body"]
        with api(sandbox, calendar) as google:
            series = google.post("/calendars/primary/events", json=documented)
            assert series.status_code == 200, series.text
            items = google.get("/calendars/primary/events", params={
                "singleEvents": "true", "timeMin": "2011-06-01T00:00:00Z", "timeMax": "2011-08-01T00:00:00Z"}).json()
        starts = sorted(i["start"]["dateTime"] for i in items["items"])
        assert starts == [f"2011-{d}T10:00:00-07:00" for d in ("06-03", "06-10", "06-17", "06-24", "07-01")]
        assert all(i["recurringEventId"] == series.json()["id"] for i in items["items"])
        assert all(i["start"]["timeZone"] == "America/Los_Angeles" for i in items["items"])


class TestOAuthGuide:
    def test_token_answers_have_the_documented_fields(self, sandbox, oauth, oauth_client):
        documented = fixture("oauth")
        email = f"oauth-{uuid.uuid4().hex[:8]}@sandbox.example"
        sandbox.state.seed_account(email)
        url, verifier = oauth.authorization_url(state="s", login_hint=email)
        code = dict(httpx.URL(sandbox.state.approve(url)).params)["code"]
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": oauth_client.redirect_uri, "client_id": oauth_client.client_id,
                "client_secret": oauth_client.client_secret.get_secret_value()}
        with httpx.Client(trust_env=False) as google:
            exchanged = google.post(oauth_client.token_uri, data=form)
            assert exchanged.status_code == 200
            assert set(exchanged.json()) == set(documented["code_exchange_response"]["body"])
            assert exchanged.json()["token_type"] == "Bearer"
            refreshed = google.post(oauth_client.token_uri, data={
                "grant_type": "refresh_token", "refresh_token": exchanged.json()["refresh_token"],
                "client_id": oauth_client.client_id, "client_secret": oauth_client.client_secret.get_secret_value()})
            assert set(refreshed.json()) == set(documented["refresh_response"]["body"])
            again = google.post(oauth_client.token_uri, data=form)  # a code works once
            assert again.status_code == documented["code_exchange_error"]["status"]
            assert again.json()["error"] == documented["code_exchange_error"]["error"]
            revoke = documented["revoke"]
            token = exchanged.json()["access_token"]
            assert google.post(oauth_client.revoke_uri, params={"token": token}).status_code == revoke["ok_status"]
            assert google.post(oauth_client.revoke_uri, params={"token": token}).status_code == revoke["error_status"]
