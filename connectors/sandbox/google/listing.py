"""Calendar v3 ``events.list`` and ``events.instances``: full listings, incremental sync
with ``syncToken``, paging with ``pageToken``, recurring events as one series or expanded
(``singleEvents=true``).

Sources:
- https://developers.google.com/workspace/calendar/api/guides/sync: ``nextSyncToken``
  only on the last page; with a sync token, everything changed since, deletions always
  included; 410 ``fullSyncRequired`` when the token is no longer valid (body as in
  https://developers.google.com/workspace/calendar/api/guides/errors#410_gone).
- The discovery document ``calendar.v3.json``, ``events.list.parameters``: ``syncToken``
  cannot be combined with ``iCalUID``, ``orderBy``, ``privateExtendedProperty``, ``q``,
  ``sharedExtendedProperty``, ``timeMin``, ``timeMax`` or ``updatedMin``; ``timeMin`` bounds
  an event's end and ``timeMax`` its start (exclusive); ``singleEvents`` expands recurring
  events into instances and leaves the series out; ``showDeleted``: "Cancelled instances of
  recurring events (but not the underlying recurring event) will still be included if
  showDeleted and singleEvents are both False. If showDeleted and singleEvents are both
  True, only single instances of deleted events (but not the underlying recurring events)
  are returned"; ``orderBy=startTime`` "is only available when querying single events".
- Google's answers where the reference names the rule but not the body, as developers
  recorded them from the live API: a sync token with any of those parameters is 400
  "Sync token cannot be used with other request restrictions." (the reference gives no
  body; this is the message quoted from the live API in public design notes, and Lark's
  calendar API, which copies the contract, names the same error 190009); ``orderBy=startTime``
  without ``singleEvents`` is 400 "The requested ordering is not available for the
  particular query." (https://github.com/googleapis/google-api-nodejs-client/issues/771);
  an ordered listing carries no ``nextSyncToken``
  (https://github.com/googleapis/google-api-ruby-client/issues/312); an empty window is
  400 ``timeRangeEmpty`` (the errors guide's 400 example). With ``singleEvents`` a sync
  token is still returned (the sync guide's own example pages with
  ``singleEvents=true&syncToken=…``), and a changed series comes back as its instances.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.errors import GoogleApiError, bad_request, not_found
from connectors.sandbox.google.events import EventStore
from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import READ_EVENTS
from connectors.sandbox.google.state import Calendar, StoredEvent
from connectors.sandbox.google.wire import (
    decode_token,
    encode_token,
    int_param,
    now,
    parse_instant,
    rfc3339,
)

FORBIDDEN_WITH_SYNC_TOKEN = (
    "timeMin",
    "timeMax",
    "updatedMin",
    "iCalUID",
    "orderBy",
    "q",
    "privateExtendedProperty",
    "sharedExtendedProperty",
)
ORDERINGS = ("startTime", "updated")


@dataclass(frozen=True)
class Listed:
    """One item a listing may return: an event, a recurring event, or an instance."""

    resource: dict[str, Any]
    starts_at: datetime
    ends_at: datetime
    instance: bool = False
    # a recurring event (not expanded): whether any occurrence falls in a window
    occurs: Callable[[datetime | None, datetime | None], bool] | None = None

    @property
    def cancelled(self) -> bool:
        return self.resource["status"] == "cancelled"

    def overlaps(self, time_min: datetime | None, time_max: datetime | None) -> bool:
        if self.occurs is not None:
            return self.occurs(time_min, time_max)
        return (time_min is None or self.ends_at > time_min) and (time_max is None or self.starts_at < time_max)


@dataclass(frozen=True)
class Query:
    """What a listing asked for, read once from its parameters."""

    single: bool
    incremental: bool
    show_deleted: bool
    time_min: datetime | None
    time_max: datetime | None
    updated_floor: str | None
    private: list[tuple[str, str]]

    @classmethod
    def of(cls, params: Mapping[str, str], *, incremental: bool) -> Query:
        updated_min = parse_instant(params["updatedMin"], "updatedMin") if params.get("updatedMin") else None
        time_min = parse_instant(params["timeMin"], "timeMin") if params.get("timeMin") else None
        time_max = parse_instant(params["timeMax"], "timeMax") if params.get("timeMax") else None
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise GoogleApiError(400, "The specified time range is empty.", "timeRangeEmpty", domain="calendar",
                                 location="timeMax")
        wanted = [p.split("=", 1) for p in params.get("privateExtendedProperty", "").split(",") if "=" in p]
        return cls(
            single=params.get("singleEvents") == "true",
            incremental=incremental,
            # updatedMin reports deletions since then whatever showDeleted says, as Google does
            show_deleted=params.get("showDeleted") == "true" or updated_min is not None,
            time_min=time_min,
            time_max=time_max,
            updated_floor=rfc3339(updated_min) if updated_min else None,
            private=[(k, v) for k, v in wanted],
        )

    def accepts(self, item: Listed) -> bool:
        if self.incremental:
            return True  # deletions are part of what changed
        if item.cancelled and not self.show_deleted and not (item.instance and not self.single):
            return False
        if not item.overlaps(self.time_min, self.time_max):
            return False
        if self.updated_floor is not None and item.resource["updated"] < self.updated_floor:
            return False
        private = item.resource.get("extendedProperties", {}).get("private", {})
        return all(private.get(k) == v for k, v in self.private)

    def expansion_window(self) -> tuple[datetime | None, datetime | None]:
        """Where to expand series: the query's window (an endless series stops at the
        sandbox's horizon when the window has no end)."""
        return self.time_min, self.time_max


class EventListing(EventStore):
    """events.list and events.instances over the store."""

    def _items(self, cal: Calendar, stored: StoredEvent, query: Query) -> list[Listed]:
        """What one stored event contributes to a listing, in a stable order."""
        resource = stored.resource
        if stored.series is None:
            return [Listed(resource, stored.starts_at, stored.ends_at, instance=stored.series_id is not None)]
        series = stored.series
        if not query.single:
            own = cal.exceptions.get(resource["id"], set())

            def occurs(time_min: datetime | None, time_max: datetime | None) -> bool:
                return any(series.instance_id(resource["id"], s) not in own
                           for s in series.original_starts(time_min, time_max))

            return [Listed(resource, stored.starts_at, stored.ends_at, occurs=occurs)]
        gone = [self._cancelled_instance(stored, instance_id) for instance_id in sorted(stored.dropped)]
        if stored.cancelled:
            return [item for item in gone if item is not None]
        after, before = query.expansion_window()
        live = [Listed(r, s, e, instance=True) for r, s, e in self.generated_instances(cal, stored, after, before)]
        return live + [item for item in gone if item is not None]

    def _cancelled_instance(self, master: StoredEvent, instance_id: str) -> Listed | None:
        assert master.series is not None
        original_start = master.series.original_start_of(instance_id)
        if original_start is None:
            return None
        resource = self.instance_resource(master, original_start, status="cancelled")
        start = master.series.utc(original_start)
        return Listed(resource, start, start + master.series.duration, instance=True)

    def _changes(self, cal: Calendar, after: tuple[int, int], upto: int,
                 query: Query) -> Iterator[tuple[tuple[int, int], Listed]]:
        """Items of events changed after ``after`` (a log sequence and an item index
        within it) up to sequence ``upto``, in log order."""
        after_seq, after_index = after
        for position in range(bisect.bisect_left(cal.log_seqs, after_seq), len(cal.log_seqs)):
            seq = cal.log_seqs[position]
            if seq > upto:
                return
            stored = cal.events[cal.log_ids[position]]
            if stored.seq != seq:
                continue  # a newer version of the event comes later in the log
            for index, item in enumerate(self._items(cal, stored, query)):
                if (seq, index) > (after_seq, after_index):
                    yield (seq, index), item

    def list_events(self, account: str, calendar_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """events.list: full listing, or the changes since ``syncToken``; paged by ``pageToken``."""
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            max_results = int_param(params, "maxResults", 250, low=1, high=2500)
            sync_token = params.get("syncToken")
            if sync_token and any(name in params for name in FORBIDDEN_WITH_SYNC_TOKEN):
                raise bad_request("Sync token cannot be used with other request restrictions.")
            order_by = params.get("orderBy")
            if order_by is not None and order_by not in ORDERINGS:
                raise bad_request(f"Invalid value for: {order_by!r} is not a valid value", location="orderBy")
            if order_by == "startTime" and params.get("singleEvents") != "true":
                raise bad_request("The requested ordering is not available for the particular query.")
            page = decode_token(params["pageToken"]) if params.get("pageToken") else None
            if params.get("pageToken") and (page is None or page.get("c") != cal.id):
                raise bad_request("Invalid page token value.", location="pageToken")
            if page is not None:
                after, upto, epoch, incremental = (page["a"], page["o"]), page["u"], page["e"], page["i"]
            elif sync_token:
                decoded = decode_token(sync_token)
                if decoded is None or decoded.get("c") != cal.id:
                    raise bad_request("Invalid sync token value.", location="syncToken")
                # everything of the token's last sequence was seen
                after, upto, epoch, incremental = (decoded["s"], 1 << 62), self._seq, decoded["e"], True
            else:
                after, upto, epoch, incremental = (0, 0), self._seq, cal.sync_epoch, False
            if epoch != cal.sync_epoch:
                raise GoogleApiError(
                    410,
                    "Sync token is no longer valid, a full sync is required.",
                    "fullSyncRequired",
                    domain="calendar",
                    location="syncToken",
                )
            query = Query.of(params, incremental=incremental)
            if order_by is not None:
                return self._ordered(cal, params, query, order_by, max_results, upto)
            items: list[dict[str, Any]] = []
            last, more = after, False
            for position, item in self._changes(cal, after, upto, query):
                if not query.accepts(item):
                    continue
                if len(items) == max_results:
                    more = True  # one more match exists: a next page is worth a token
                    break
                items.append(item.resource)
                last = position
            answer = _page(cal, upto, items)
            if more:
                answer["nextPageToken"] = encode_token(
                    {"c": cal.id, "a": last[0], "o": last[1], "u": upto, "e": epoch, "i": incremental})
            else:
                answer["nextSyncToken"] = encode_token({"c": cal.id, "s": upto, "e": epoch})
            return answer

    def _ordered(self, cal: Calendar, params: Mapping[str, str], query: Query, order_by: str, max_results: int,
                 upto: int) -> dict[str, Any]:
        """An ordered listing: sorted whole, paged by offset, and no sync token."""
        offset = 0
        if params.get("pageToken"):
            offset = int((decode_token(params["pageToken"]) or {}).get("n", 0))
        matches = [item for _, item in self._changes(cal, (0, 0), upto, query) if query.accepts(item)]
        if order_by == "startTime":
            matches.sort(key=lambda item: (item.starts_at, item.resource["id"]))
        else:
            matches.sort(key=lambda item: (item.resource["updated"], item.resource["id"]))
        answer = _page(cal, upto, [item.resource for item in matches[offset:offset + max_results]])
        if offset + max_results < len(matches):
            answer["nextPageToken"] = encode_token({"c": cal.id, "n": offset + max_results, "a": 0, "o": 0,
                                                    "u": upto, "e": cal.sync_epoch, "i": False})
        return answer

    def list_instances(self, account: str, calendar_id: str, event_id: str,
                       params: Mapping[str, str]) -> dict[str, Any]:
        """events.instances: a recurring event's occurrences, changed ones included."""
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            master = cal.events.get(event_id)
            if master is None or master.series is None:
                raise not_found()
            max_results = int_param(params, "maxResults", 250, low=1, high=2500)
            query = Query.of({k: v for k, v in params.items() if k in ("timeMin", "timeMax", "showDeleted")}
                             | {"singleEvents": "true"}, incremental=False)
            after, before = query.expansion_window()
            found = [Listed(r, s, e, instance=True) for r, s, e in self.generated_instances(cal, master, after, before)]
            found += [Listed(cal.events[i].resource, cal.events[i].starts_at, cal.events[i].ends_at, instance=True)
                      for i in cal.exceptions.get(event_id, set())]
            if master.cancelled:
                found = [item for i in sorted(master.dropped) if (item := self._cancelled_instance(master, i))]
            found = sorted((item for item in found if query.accepts(item)),
                           key=lambda item: (item.resource["originalStartTime"].get("dateTime")
                                             or item.resource["originalStartTime"].get("date"), item.resource["id"]))
            offset = int((decode_token(params["pageToken"]) or {}).get("n", 0)) if params.get("pageToken") else 0
            answer = _page(cal, self._seq, [item.resource for item in found[offset:offset + max_results]])
            if offset + max_results < len(found):
                answer["nextPageToken"] = encode_token({"c": cal.id, "n": offset + max_results})
            return answer


def _page(cal: Calendar, upto: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "calendar#events",
        "etag": f'"p{upto:016d}"',
        "summary": cal.summary,
        "updated": rfc3339(now()),
        "timeZone": cal.time_zone,
        "accessRole": "owner",
        "defaultReminders": [],
        "items": items,
    }


def add_routes(api: APIRouter, state: EventListing) -> None:
    """``GET …/events`` and ``GET …/events/{eventId}/instances``."""
    cal = "/calendar/v3"

    @api.get(cal + "/calendars/{calendarId}/events", include_in_schema=False)
    async def events_list(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(state, request, READ_EVENTS)
        params = {k: ",".join(request.query_params.getlist(k)) for k in request.query_params}
        return JSONResponse(state.list_events(account, calendarId, params))

    @api.get(cal + "/calendars/{calendarId}/events/{eventId}/instances", include_in_schema=False)
    async def events_instances(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        account = bearer(state, request, READ_EVENTS)
        params = {k: ",".join(request.query_params.getlist(k)) for k in request.query_params}
        return JSONResponse(state.list_instances(account, calendarId, eventId, params))
