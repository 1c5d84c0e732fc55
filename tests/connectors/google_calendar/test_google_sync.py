"""Full and incremental sync: paging, sync tokens, 410, and streaming in bounded memory."""

from __future__ import annotations

import math
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.google_calendar import (
    CalendarEvent,
    EventDetails,
    SyncCheckpoint,
    SyncTokenInvalid,
    event_id_for,
)

LIST = "GET /calendar/v3/calendars/{calendarId}/events"
T0 = datetime(2031, 5, 5, 12, 0, tzinfo=UTC)


def drain(stream) -> tuple[list[CalendarEvent], SyncCheckpoint]:
    items = list(stream)
    *events, checkpoint = items
    assert isinstance(checkpoint, SyncCheckpoint)
    assert all(isinstance(e, CalendarEvent) for e in events)
    return events, checkpoint


def add_events(calendar, count: int) -> list[str]:
    ids = []
    for n in range(count):
        event_id = event_id_for(uuid.uuid4())
        start = T0 + timedelta(hours=n)
        calendar.insert_event(
            "primary", event_id, EventDetails(summary=f"e{n}", start=start, end=start + timedelta(minutes=30))
        )
        ids.append(event_id)
    return ids


class TestFullAndIncrementalSync:
    def test_full_sync_pages_then_incremental_reports_changes_and_deletions(self, sandbox, calendar):
        ids = add_events(calendar, 5)
        pages_before = sandbox.state.request_counts[LIST]

        events, checkpoint = drain(calendar.iter_changes("primary", page_size=2))
        assert sorted(e.id for e in events) == sorted(ids)
        assert sandbox.state.request_counts[LIST] - pages_before == 3  # 2 + 2 + 1, token on the last

        email = calendar.credentials.account_email
        calendar.patch_event("primary", ids[0], EventDetails(summary="moved"))
        calendar.delete_event("primary", ids[1])
        made_in_google = sandbox.state.create_event(
            email,
            {
                "summary": "by hand",
                "start": {"dateTime": T0.isoformat()},
                "end": {"dateTime": (T0 + timedelta(hours=1)).isoformat()},
            },
        )["id"]

        changes, second = drain(calendar.iter_changes("primary", checkpoint.next_sync_token, page_size=2))
        by_id = {e.id: e for e in changes}
        assert set(by_id) == {ids[0], ids[1], made_in_google}
        assert by_id[ids[0]].summary == "moved"
        assert by_id[ids[1]].cancelled

        nothing, third = drain(calendar.iter_changes("primary", second.next_sync_token))
        assert nothing == [] and third.next_sync_token

    def test_full_sync_leaves_out_cancelled_unless_asked(self, calendar):
        ids = add_events(calendar, 2)
        calendar.delete_event("primary", ids[0])
        live, _ = drain(calendar.iter_changes("primary"))
        assert [e.id for e in live] == [ids[1]]
        everything, _ = drain(calendar.iter_changes("primary", include_cancelled=True))
        assert {e.id: e.cancelled for e in everything} == {ids[0]: True, ids[1]: False}

    def test_an_edit_during_paging_is_caught_by_the_next_incremental_sync(self, sandbox, calendar):
        ids = add_events(calendar, 4)
        stream = calendar.iter_changes("primary", page_size=2)
        first_page = [next(stream), next(stream)]
        late = next(i for i in ids if i not in {e.id for e in first_page})
        sandbox.state.edit_event(calendar.credentials.account_email, late, {"summary": "edited mid-sync"})

        rest, checkpoint = drain(stream)
        changes, _ = drain(calendar.iter_changes("primary", checkpoint.next_sync_token))
        assert [e.summary for e in changes] == ["edited mid-sync"]
        assert {e.id for e in first_page + rest} | {late} == set(ids)

    def test_invalidated_sync_token_raises_and_a_full_sync_recovers(self, sandbox, calendar):
        add_events(calendar, 3)
        _, checkpoint = drain(calendar.iter_changes("primary"))
        httpx.post(
            f"{sandbox.url}/_sandbox/google/calendars/{calendar.credentials.account_email}/sync-tokens/invalidate",
            timeout=15.0,
        ).raise_for_status()

        with pytest.raises(SyncTokenInvalid) as gone:
            next(calendar.iter_changes("primary", checkpoint.next_sync_token))
        assert gone.value.status == 410 and gone.value.code == "fullSyncRequired"
        events, fresh = drain(calendar.iter_changes("primary"))
        assert len(events) == 3
        assert drain(calendar.iter_changes("primary", fresh.next_sync_token))[0] == []


def held_while_consuming(stream, on_event=None) -> tuple[int, int]:
    """(events seen, most traced memory held at any point while consuming them)."""
    seen, held_max = 0, 0
    tracemalloc.start()
    try:
        for item in stream:
            if isinstance(item, SyncCheckpoint):
                break
            seen += 1
            if on_event is not None:
                on_event(seen)
            held_max = max(held_max, tracemalloc.get_traced_memory()[0])
            del item
    finally:
        tracemalloc.stop()
    return seen, held_max


class TestStreaming:
    def test_2000_events_stream_one_page_at_a_time(self, sandbox, connect, connector_for):
        credentials = connect(calendars=("Sala 1",))
        calendar = connector_for(credentials)
        small = next(c.id for c in calendar.list_calendars() if not c.primary)  # also builds the client
        page_size = 250
        sandbox.state.bulk_create_events(small, page_size)
        httpx.post(
            f"{sandbox.url}/_sandbox/google/calendars/{credentials.account_email}/events/bulk",
            json={"count": 2000},
            timeout=10.0,
        ).raise_for_status()

        # the yardstick: what holding exactly one page costs
        one_page = held_while_consuming(calendar.iter_changes(small, page_size=page_size))
        assert one_page[0] == page_size

        pages_before = sandbox.state.request_counts[LIST]

        def fetched_lazily(seen: int) -> None:
            # the next page is requested only once the previous one is used up
            assert sandbox.state.request_counts[LIST] - pages_before == math.ceil(seen / page_size)

        seen, held = held_while_consuming(calendar.iter_changes("primary", page_size=page_size), fetched_lazily)
        assert seen == 2000
        assert sandbox.state.request_counts[LIST] - pages_before == 8
        # 8 pages held at once would cost ~8x the yardstick
        assert held < 2 * one_page[1], (one_page[1], held)
