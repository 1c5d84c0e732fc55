"""Recurring events made in Google: every occurrence is busy time and a line of the sync
log, an EXDATE'd or moved occurrence frees its slot, and a full sync reads a bounded
window that moves on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calendar_support import book, connected_tenant, eventually, map_resource, resource_row, sync_log
from sqlalchemy import select, update

from hub.calendar.flows import sync_resource
from hub.calendar.flows.sync import SYNC_WINDOW
from hub.calendar.models import BusyBlock, CalendarResource
from hub.db import utcnow

SP = ZoneInfo("America/Sao_Paulo")
LIST = "/calendar/v3/calendars/{}/events"


def next_monday(hour: int = 10) -> datetime:
    today = datetime.now(SP).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today + timedelta(days=7 - today.weekday())


def instance_id(series_id: str, start: datetime) -> str:
    return f"{series_id}_{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def busy_blocks(hub, tenant, resource_id: str) -> dict[str, tuple[datetime, datetime]]:
    pk = resource_row(hub, tenant, resource_id).id
    with hub.runtime.session_factory() as session:
        return {b.google_event_id: (b.start_at, b.end_at)
                for b in session.scalars(select(BusyBlock).where(BusyBlock.resource_pk == pk))}


def list_requests(hub, calendar_id: str) -> list[dict[str, str]]:
    path = LIST.format(calendar_id)
    return [query for method, p, query in list(hub.sandbox.google.requests) if method == "GET" and p == path]


def test_a_weekly_series_with_an_exception_blocks_each_occurrence_and_logs_each(live_hub):
    tenant = connected_tenant(live_hub, "recorrente")
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
    google = live_hub.sandbox.google
    first = next_monday()
    weeks = [first + timedelta(weeks=n) for n in range(6)]
    series = google.create_event(tenant.calendars[1], {
        "summary": "Plantão no hospital",
        "start": {"dateTime": first.isoformat(), "timeZone": "America/Sao_Paulo"},
        "end": {"dateTime": (first + timedelta(hours=2)).isoformat(), "timeZone": "America/Sao_Paulo"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=6", f"EXDATE;TZID=America/Sao_Paulo:{weeks[2]:%Y%m%dT%H%M%S}"],
    })["id"]
    # the fourth occurrence moved to the afternoon, in Google, by a person
    moved_to = weeks[3] + timedelta(hours=5)
    google.edit_event(tenant.calendars[1], instance_id(series, weeks[3]), {
        "start": {"dateTime": moved_to.isoformat(), "timeZone": "America/Sao_Paulo"},
        "end": {"dateTime": (moved_to + timedelta(hours=2)).isoformat(), "timeZone": "America/Sao_Paulo"}})
    expected = {instance_id(series, w): (w.astimezone(UTC), (w + timedelta(hours=2)).astimezone(UTC))
                for w in (weeks[0], weeks[1], weeks[4], weeks[5])}
    expected[instance_id(series, weeks[3])] = (moved_to.astimezone(UTC),
                                               (moved_to + timedelta(hours=2)).astimezone(UTC))

    eventually(lambda: busy_blocks(live_hub, tenant, "dr-ana") == expected, what="one busy block per occurrence")

    lines = [e for e in sync_log(live_hub, tenant, "dr-ana") if e["action"] in ("busy.added", "busy.moved")]
    assert {e["google_event_id"] for e in lines} == set(expected)
    assert all(e["details"]["recurring_event_id"] == series for e in lines)
    latest = {}
    for entry in reversed(lines):  # oldest first: the latest line per occurrence wins
        latest[entry["google_event_id"]] = (entry["details"]["start"], entry["details"]["end"])
    assert latest == {k: (s.isoformat(), e.isoformat()) for k, (s, e) in expected.items()}
    # each occurrence blocks its slot; the EXDATE'd one and the moved one's old slot are free
    clash = book(live_hub, tenant, "dr-ana", weeks[1].astimezone(UTC) + timedelta(minutes=30))
    assert clash.status_code == 409 and clash.json()["error"]["details"]["busy"][0]["source"] == "google"
    assert book(live_hub, tenant, "dr-ana", moved_to.astimezone(UTC)).status_code == 409
    assert book(live_hub, tenant, "dr-ana", weeks[2].astimezone(UTC)).status_code == 201
    assert book(live_hub, tenant, "dr-ana", weeks[3].astimezone(UTC)).status_code == 201
    # the series ends: every occurrence leaves the cache, one log line each
    google.remove_event(tenant.calendars[1], series)
    eventually(lambda: busy_blocks(live_hub, tenant, "dr-ana") == {}, what="the occurrences to go")
    removed = {e["google_event_id"] for e in sync_log(live_hub, tenant, "dr-ana", "busy.removed")}
    assert removed == set(expected)


def test_a_full_sync_reads_a_bounded_window_of_instances(live_hub):
    tenant = connected_tenant(live_hub, "janela")
    google = live_hub.sandbox.google
    calendar_id = tenant.calendars[1]
    now = utcnow().replace(microsecond=0)
    for label, start in (("passado", now - timedelta(days=30)), ("próximo", now + timedelta(days=3)),
                         ("distante", now + SYNC_WINDOW + timedelta(days=30))):
        google.create_event(calendar_id, {"summary": label, "start": {"dateTime": start.isoformat()},
                                          "end": {"dateTime": (start + timedelta(hours=1)).isoformat()}})

    map_resource(live_hub, tenant, "dr-ana", calendar_id)

    (full,) = sync_log(live_hub, tenant, "dr-ana", "sync.full")
    window = full["details"]["window"]
    assert datetime.fromisoformat(window["from"]) <= now - timedelta(hours=23)
    assert abs(datetime.fromisoformat(window["until"]) - (now + SYNC_WINDOW)) < timedelta(minutes=5)
    # only the event inside the window is busy time: not the past one, not the one beyond it
    assert [s for s, _ in busy_blocks(live_hub, tenant, "dr-ana").values()] == [now + timedelta(days=3)]
    (asked,) = [q for q in list_requests(live_hub, calendar_id) if "syncToken" not in q]
    assert asked["singleEvents"] == "true" and asked["timeMin"] and asked["timeMax"]
    assert datetime.fromisoformat(asked["timeMax"]) == datetime.fromisoformat(window["until"])

    # later changes come incrementally, with the token and without a window (Google refuses both)
    google.create_event(calendar_id, {"summary": "nova", "start": {"dateTime": (now + timedelta(days=4)).isoformat()},
                                      "end": {"dateTime": (now + timedelta(days=4, hours=1)).isoformat()}})
    eventually(lambda: len(busy_blocks(live_hub, tenant, "dr-ana")) == 2, what="the incremental sync")
    incremental = [q for q in list_requests(live_hub, calendar_id) if "syncToken" in q]
    assert incremental and not any("timeMin" in q or "timeMax" in q for q in incremental)
    assert all(q["singleEvents"] == "true" for q in incremental)


def test_the_window_moves_on_with_a_full_sync_once_it_is_a_day_old(live_hub):
    tenant = connected_tenant(live_hub, "rolante")
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
    pk = resource_row(live_hub, tenant, "dr-ana").id
    with live_hub.runtime.session_factory() as session, session.begin():
        session.execute(update(CalendarResource).where(CalendarResource.id == pk).values(
            sync_window_end=utcnow() + SYNC_WINDOW - timedelta(days=2), sync_wanted=CalendarResource.sync_wanted + 1))

    assert sync_resource(runtime=live_hub.runtime, resource_pk=pk) == "synced"

    reasons = [e["details"]["reason"] for e in sync_log(live_hub, tenant, "dr-ana", "sync.full")]
    assert reasons == ["window_moved", "initial"]
    assert resource_row(live_hub, tenant, "dr-ana").sync_window_end > utcnow() + SYNC_WINDOW - timedelta(minutes=5)
