"""Event calls through google-api-python-client against the sandbox."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from connectors.base import PermanentProviderError, TransientProviderError
from connectors.google_calendar import (
    BusyInterval,
    EventDetails,
    EventNotFound,
    StaleEtag,
    event_id_for,
    uuid_for_event_id,
)

INSERT = "POST /calendar/v3/calendars/{calendarId}/events"
T0 = datetime(2031, 3, 10, 13, 0, tzinfo=UTC)


def appointment(start: datetime = T0, minutes: int = 30, **extra) -> EventDetails:
    return EventDetails(
        summary="Consulta — Maria",
        start=start,
        end=start + timedelta(minutes=minutes),
        time_zone="America/Sao_Paulo",
        **extra,
    )


class TestEventIds:
    def test_event_id_for_is_base32hex_and_reversible(self):
        for _ in range(50):
            value = uuid.uuid4()
            event_id = event_id_for(value)
            assert len(event_id) == 26 and set(event_id) <= set("0123456789abcdefghijklmnopqrstuv")
            assert event_id_for(value) == event_id
            assert uuid_for_event_id(event_id) == value
        assert uuid_for_event_id("google_made_id_0123456789") is None


class TestInsert:
    def test_insert_keeps_fields_and_private_properties(self, calendar):
        event_id = event_id_for(uuid.uuid4())
        outcome = calendar.insert_event(
            "primary", event_id, appointment(private_properties={"hub_appointment": "a-1"}, location="Sala 2")
        )
        assert outcome.created
        event = outcome.event
        assert event.id == event_id and event.status == "confirmed"
        assert event.start == T0 and event.end == T0 + timedelta(minutes=30)
        assert event.private_properties == {"hub_appointment": "a-1"}
        assert event.location == "Sala 2" and event.etag and event.updated

    def test_second_insert_with_the_same_id_returns_the_existing_event(self, sandbox, calendar):
        event_id = event_id_for(uuid.uuid4())
        before = sandbox.state.request_counts[INSERT]
        first = calendar.insert_event("primary", event_id, appointment())
        again = calendar.insert_event("primary", event_id, appointment())

        assert (first.created, again.created) == (True, False)
        assert again.event.etag == first.event.etag  # untouched, not a second copy
        assert sandbox.state.request_counts[INSERT] - before == 2  # the 409 really happened
        listed = [e for e in calendar.iter_changes("primary") if getattr(e, "id", None) == event_id]
        assert len(listed) == 1

    def test_all_day_event(self, calendar):
        outcome = calendar.insert_event(
            "primary",
            event_id_for(uuid.uuid4()),
            EventDetails(summary="Feriado", start=date(2031, 4, 21), end=date(2031, 4, 22)),
        )
        assert outcome.event.all_day and outcome.event.start == date(2031, 4, 21)

    def test_naive_datetimes_are_refused_before_calling_google(self, calendar):
        with pytest.raises(ValueError, match="naive"):
            calendar.insert_event(
                "primary",
                event_id_for(uuid.uuid4()),
                EventDetails(summary="x", start=datetime(2031, 1, 1, 9), end=datetime(2031, 1, 1, 10)),
            )

    def test_bad_event_id_is_permanent(self, calendar):
        with pytest.raises(PermanentProviderError) as refused:
            calendar.insert_event("primary", "UPPER-case", appointment())
        assert refused.value.status == 400


class TestPatchGetDelete:
    def test_patch_changes_only_given_fields_and_merges_private_properties(self, calendar):
        event_id = event_id_for(uuid.uuid4())
        created = calendar.insert_event("primary", event_id, appointment(private_properties={"a": "1"})).event

        patched = calendar.patch_event(
            "primary",
            event_id,
            EventDetails(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2), private_properties={"b": "2"}),
        )
        assert patched.summary == created.summary
        assert patched.start == T0 + timedelta(hours=1)
        assert patched.private_properties == {"a": "1", "b": "2"}
        assert patched.etag != created.etag and patched.updated >= created.updated
        assert calendar.get_event("primary", event_id) == patched

    def test_patch_with_a_stale_etag_is_refused(self, calendar):
        event_id = event_id_for(uuid.uuid4())
        created = calendar.insert_event("primary", event_id, appointment()).event
        calendar.patch_event("primary", event_id, EventDetails(summary="changed in between"))

        with pytest.raises(StaleEtag):
            calendar.patch_event("primary", event_id, EventDetails(summary="ours"), if_match=created.etag)
        current = calendar.get_event("primary", event_id)
        ours = calendar.patch_event("primary", event_id, EventDetails(summary="ours"), if_match=current.etag)
        assert ours.summary == "ours"

    def test_delete_cancels_and_is_idempotent(self, calendar):
        event_id = event_id_for(uuid.uuid4())
        calendar.insert_event("primary", event_id, appointment())

        assert calendar.delete_event("primary", event_id) is True
        assert calendar.delete_event("primary", event_id) is False  # Google: 410 deleted
        assert calendar.get_event("primary", event_id).cancelled  # kept for sync, as Google does
        assert calendar.delete_event("primary", event_id_for(uuid.uuid4())) is False  # 404

    def test_missing_event(self, calendar):
        assert calendar.get_event("primary", event_id_for(uuid.uuid4())) is None
        with pytest.raises(EventNotFound):
            calendar.patch_event("primary", event_id_for(uuid.uuid4()), EventDetails(summary="x"))

    def test_another_accounts_calendar_is_not_found(self, connect, connector_for):
        mine = connector_for(connect())
        theirs = connect()
        assert mine.get_event(theirs.account_email, event_id_for(uuid.uuid4())) is None


class TestCalendarsAndFreeBusy:
    def test_list_calendars(self, connect, connector_for):
        credentials = connect(calendars=("Consultório 2",))
        calendars = connector_for(credentials).list_calendars()
        assert [(c.summary, c.primary) for c in calendars] == [
            (credentials.account_email, True),
            ("Consultório 2", False),
        ]
        assert all(c.access_role == "owner" for c in calendars)

    def test_freebusy_merges_clips_and_skips_free_and_cancelled(self, calendar):
        def add(start: datetime, minutes: int, **extra) -> str:
            event_id = event_id_for(uuid.uuid4())
            calendar.insert_event("primary", event_id, appointment(start, minutes, **extra))
            return event_id

        add(T0, 60)
        add(T0 + timedelta(minutes=30), 60)  # overlaps the first
        add(T0 + timedelta(hours=3), 60, transparency="transparent")
        calendar.delete_event("primary", add(T0 + timedelta(hours=4), 60))
        add(T0 + timedelta(hours=5, minutes=30), 60)  # runs past time_max

        busy = calendar.freebusy("primary", T0 - timedelta(hours=1), T0 + timedelta(hours=6))
        assert busy == [
            BusyInterval(T0, T0 + timedelta(minutes=90)),
            BusyInterval(T0 + timedelta(hours=5, minutes=30), T0 + timedelta(hours=6)),
        ]

    def test_freebusy_on_an_unknown_calendar(self, calendar):
        with pytest.raises(EventNotFound):
            calendar.freebusy("nobody@group.calendar.google.com", T0, T0 + timedelta(hours=1))


class TestErrors:
    def test_5xx_is_transient(self, sandbox, calendar):
        sandbox.state.inject_failure(503, path_prefix="/calendar/v3/calendars/")
        with pytest.raises(TransientProviderError) as failed:
            calendar.insert_event("primary", event_id_for(uuid.uuid4()), appointment())
        assert failed.value.status == 503 and failed.value.code == "backendError"

    def test_429_is_transient_with_retry_after(self, sandbox, calendar):
        sandbox.state.inject_failure(429, path_prefix="/calendar/v3/users/me/", retry_after=7)
        with pytest.raises(TransientProviderError) as failed:
            calendar.list_calendars()
        assert failed.value.retry_after == 7 and failed.value.code == "rateLimitExceeded"
        assert calendar.list_calendars()

    def test_timeout_is_transient(self, sandbox, connect, connector_for):
        connector = connector_for(connect(), timeout=0.3)
        sandbox.state.inject_failure(None, path_prefix="/calendar/v3/users/me/", delay=1.0)
        with pytest.raises(TransientProviderError) as failed:
            connector.list_calendars()
        assert failed.value.code == "network"

    def test_unreachable_google_is_transient(self, connect, connector_for, sandbox):
        from connectors.google_calendar import GoogleCalendarConnector
        from connectors.sandbox.server import free_port

        offline = GoogleCalendarConnector(
            credentials=connect(), base_url=f"http://127.0.0.1:{free_port()}", timeout=2.0
        )
        with pytest.raises(TransientProviderError):
            offline.list_calendars()
