"""Recurring events in the sandbox, through google-api-python-client: stored once with
their rule, expanded as Google expands them (instances, exceptions, EXDATE), in
listings, incremental sync, events.instances and free/busy; and the refusals Google
makes around them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from googleapiclient.errors import HttpError

from connectors.google_calendar import SyncCheckpoint

SP = ZoneInfo("America/Sao_Paulo")
MONDAY = datetime(2031, 3, 3, 10, 0, tzinfo=SP)  # a Monday, 13:00 UTC


def weekly(count: int = 5, *, extra: tuple[str, ...] = (), start: datetime = MONDAY, **fields) -> dict:
    return {
        "summary": "Plantão",
        "start": {"dateTime": start.isoformat(), "timeZone": "America/Sao_Paulo"},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": "America/Sao_Paulo"},
        "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={count}", *extra],
        **fields,
    }


def events(calendar):
    return calendar._service.events()


def listing(calendar, **params) -> dict:
    items, page_token = [], None
    while True:
        page = events(calendar).list(calendarId="primary", pageToken=page_token, **params).execute()
        items += page.get("items", [])
        page_token = page.get("nextPageToken")
        if not page_token:
            return {"items": items, "nextSyncToken": page.get("nextSyncToken")}


def google_error(call) -> dict:
    with pytest.raises(HttpError) as caught:
        call.execute()
    return json.loads(caught.value.content)["error"] | {"status": caught.value.resp.status}


def starts(items: list[dict]) -> list[datetime]:
    return sorted(datetime.fromisoformat(i["start"]["dateTime"]) for i in items)


class TestExpansion:
    def test_single_events_lists_each_occurrence_and_leaves_out_the_exdate(self, calendar):
        master = events(calendar).insert(calendarId="primary", body=weekly(
            5, extra=("EXDATE;TZID=America/Sao_Paulo:20310317T100000",))).execute()
        assert master["recurrence"] and "recurringEventId" not in master

        items = listing(calendar, singleEvents=True)["items"]

        assert starts(items) == [MONDAY + timedelta(weeks=n) for n in (0, 1, 3, 4)]
        first = min(items, key=lambda i: i["start"]["dateTime"])
        assert first["id"] == f"{master['id']}_20310303T130000Z"
        assert first["recurringEventId"] == master["id"] and "recurrence" not in first
        assert first["originalStartTime"] == {"dateTime": "2031-03-03T10:00:00-03:00",
                                              "timeZone": "America/Sao_Paulo"}
        # without singleEvents the series comes once, with its rule
        assert [i["id"] for i in listing(calendar)["items"]] == [master["id"]]

    def test_the_events_own_start_counts_even_off_the_rule(self, calendar):
        """Google shows DTSTART as an occurrence even when the rule would skip it."""
        body = weekly(2) | {"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=2"]}
        events(calendar).insert(calendarId="primary", body=body).execute()
        assert starts(listing(calendar, singleEvents=True)["items"]) == [
            MONDAY, MONDAY + timedelta(days=1), MONDAY + timedelta(days=8)]

    def test_a_window_bounds_the_expansion_of_an_endless_series(self, calendar):
        body = weekly() | {"recurrence": ["RRULE:FREQ=DAILY"]}
        events(calendar).insert(calendarId="primary", body=body).execute()
        time_min = (MONDAY + timedelta(days=10)).astimezone(UTC)
        items = listing(calendar, singleEvents=True, timeMin=time_min.isoformat(),
                        timeMax=(time_min + timedelta(days=3)).isoformat())["items"]
        assert starts(items) == [MONDAY + timedelta(days=n) for n in (10, 11, 12)]


class TestInstances:
    def test_moving_one_instance_stores_an_exception_that_keeps_its_place(self, calendar):
        master = events(calendar).insert(calendarId="primary", body=weekly(3)).execute()
        second = f"{master['id']}_20310310T130000Z"
        assert events(calendar).get(calendarId="primary", eventId=second).execute()["recurringEventId"] == master["id"]
        later = MONDAY + timedelta(weeks=1, hours=5)

        moved = events(calendar).patch(calendarId="primary", eventId=second, body={
            "start": {"dateTime": later.isoformat(), "timeZone": "America/Sao_Paulo"},
            "end": {"dateTime": (later + timedelta(hours=1)).isoformat(), "timeZone": "America/Sao_Paulo"},
        }).execute()

        assert moved["id"] == second and moved["originalStartTime"]["dateTime"] == "2031-03-10T10:00:00-03:00"
        assert starts(listing(calendar, singleEvents=True)["items"]) == [MONDAY, later, MONDAY + timedelta(weeks=2)]
        # the series view: the recurring event, and the exception beside it
        assert {i["id"] for i in listing(calendar)["items"]} == {master["id"], second}
        instances = events(calendar).instances(calendarId="primary", eventId=master["id"]).execute()["items"]
        assert [i["id"] for i in instances] == [f"{master['id']}_20310303T130000Z", second,
                                                f"{master['id']}_20310317T130000Z"]

    def test_cancelling_one_instance(self, calendar):
        master = events(calendar).insert(calendarId="primary", body=weekly(3)).execute()
        events(calendar).delete(calendarId="primary", eventId=f"{master['id']}_20310310T130000Z").execute()

        assert starts(listing(calendar, singleEvents=True)["items"]) == [MONDAY, MONDAY + timedelta(weeks=2)]
        # "Cancelled instances of recurring events … will still be included if showDeleted and
        # singleEvents are both False"
        series_view = {i["id"]: i["status"] for i in listing(calendar)["items"]}
        assert series_view == {master["id"]: "confirmed", f"{master['id']}_20310310T130000Z": "cancelled"}

    def test_an_id_off_the_rule_is_not_found(self, calendar):
        master = events(calendar).insert(calendarId="primary", body=weekly(3)).execute()
        error = google_error(events(calendar).get(calendarId="primary", eventId=f"{master['id']}_20310311T130000Z"))
        assert error["status"] == 404 and error["errors"][0]["reason"] == "notFound"


class TestIncrementalSync:
    def test_a_changed_series_comes_back_as_its_instances_and_a_shortened_one_cancels_the_rest(self, calendar):
        master = events(calendar).insert(calendarId="primary", body=weekly(4)).execute()
        token = listing(calendar, singleEvents=True)["nextSyncToken"]

        events(calendar).patch(calendarId="primary", eventId=master["id"],
                               body={"recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2"]}).execute()
        changes = listing(calendar, singleEvents=True, syncToken=token)

        status = {i["id"]: i["status"] for i in changes["items"]}
        assert status == {f"{master['id']}_20310303T130000Z": "confirmed", f"{master['id']}_20310310T130000Z":
                          "confirmed", f"{master['id']}_20310317T130000Z": "cancelled",
                          f"{master['id']}_20310324T130000Z": "cancelled"}
        events(calendar).delete(calendarId="primary", eventId=master["id"]).execute()
        gone = listing(calendar, singleEvents=True, syncToken=changes["nextSyncToken"])["items"]
        assert {i["id"] for i in gone} == {f"{master['id']}_20310303T130000Z", f"{master['id']}_20310310T130000Z",
                                           f"{master['id']}_20310317T130000Z", f"{master['id']}_20310324T130000Z"}
        assert {i["status"] for i in gone} == {"cancelled"}

    def test_pages_split_a_series_without_losing_or_repeating_an_instance(self, calendar):
        master = events(calendar).insert(calendarId="primary", body=weekly(7)).execute()
        items = listing(calendar, singleEvents=True, maxResults=3)["items"]
        assert len(items) == 7 and len({i["id"] for i in items}) == 7
        assert all(i["recurringEventId"] == master["id"] for i in items)

    def test_the_connector_streams_instances(self, calendar):
        events(calendar).insert(calendarId="primary", body=weekly(3)).execute()
        *found, checkpoint = calendar.iter_changes("primary", page_size=2, time_min=MONDAY - timedelta(days=1),
                                                   time_max=MONDAY + timedelta(days=30))
        assert isinstance(checkpoint, SyncCheckpoint)
        assert [e.original_start for e in found] == [MONDAY + timedelta(weeks=n) for n in range(3)]


class TestRefusals:
    @pytest.mark.parametrize("restriction", [{"timeMin": "2031-01-01T00:00:00Z"},
                                             {"timeMax": "2031-01-01T00:00:00Z"}, {"orderBy": "updated"},
                                             {"updatedMin": "2031-01-01T00:00:00Z"}, {"q": "x"}])
    def test_a_sync_token_cannot_carry_a_window_or_filter(self, calendar, restriction):
        token = listing(calendar, singleEvents=True)["nextSyncToken"]
        error = google_error(events(calendar).list(calendarId="primary", syncToken=token, **restriction))
        assert error["status"] == 400
        assert error["message"] == "Sync token cannot be used with other request restrictions."

    def test_ordering_by_start_needs_single_events_and_gives_no_sync_token(self, calendar):
        error = google_error(events(calendar).list(calendarId="primary", orderBy="startTime"))
        assert error["status"] == 400
        assert error["message"] == "The requested ordering is not available for the particular query."
        events(calendar).insert(calendarId="primary", body=weekly(3)).execute()
        ordered = listing(calendar, singleEvents=True, orderBy="startTime", maxResults=2)
        assert starts(ordered["items"]) == [MONDAY + timedelta(weeks=n) for n in range(3)]
        assert ordered["nextSyncToken"] is None

    def test_an_empty_window_is_time_range_empty(self, calendar):
        error = google_error(events(calendar).list(calendarId="primary", timeMin="2031-01-02T00:00:00Z",
                                                   timeMax="2031-01-01T00:00:00Z"))
        assert error == {"status": 400, "code": 400, "message": "The specified time range is empty.", "errors": [
            {"domain": "calendar", "reason": "timeRangeEmpty", "message": "The specified time range is empty.",
             "locationType": "parameter", "location": "timeMax"}]}

    @pytest.mark.parametrize(("recurrence", "message"), [
        (["RRULE:FREQ=SOMETIMES"], "Invalid recurrence rule."),
        (["RRULE:FREQ=WEEKLY;COUNT=2;UNTIL=20310401T000000Z"], "Invalid recurrence rule."),
        (["RRULE:FREQ=WEEKLY;COUNT=-1"], "Invalid recurrence rule."),
        (["DTSTART:20310303T130000Z", "RRULE:FREQ=WEEKLY"], "Invalid recurrence rule."),
    ])
    def test_rules_google_cannot_read_are_refused(self, calendar, recurrence, message):
        error = google_error(events(calendar).insert(calendarId="primary", body=weekly() | {
            "recurrence": recurrence}))
        assert error["status"] == 400 and error["message"] == message
        assert error["errors"][0]["reason"] == "invalid"

    def test_a_recurring_event_needs_a_time_zone(self, calendar):
        body = weekly()
        body["start"] = {"dateTime": MONDAY.isoformat()}
        error = google_error(events(calendar).insert(calendarId="primary", body=body))
        assert error["status"] == 400 and error["message"] == "Missing time zone definition for start time."


class TestFreeBusy:
    def test_busy_time_counts_every_occurrence_but_the_cancelled_one(self, calendar):
        master = events(calendar).insert(calendarId="primary", body=weekly(3)).execute()
        events(calendar).delete(calendarId="primary", eventId=f"{master['id']}_20310310T130000Z").execute()
        busy = calendar.freebusy("primary", MONDAY - timedelta(days=1), MONDAY + timedelta(weeks=3))
        assert [b.start for b in busy] == [MONDAY.astimezone(UTC), (MONDAY + timedelta(weeks=2)).astimezone(UTC)]
