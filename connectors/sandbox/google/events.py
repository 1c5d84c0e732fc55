"""Calendar v3 ``events``: insert, get, patch, update and delete, of single events,
recurring events and their instances (listing is in ``listing``).

Sources:
- https://developers.google.com/workspace/calendar/api/v3/reference/events (the
  resource; ids are base32hex ``[a-v0-9]{5,1024}``; a deleted event keeps its id, so a
  second insert with it is a 409 ``duplicate``; ``If-Match`` with a stale etag is a 412);
- https://developers.google.com/workspace/calendar/api/guides/recurringevents (an
  instance is changed or cancelled on its own through its instance id; it keeps
  ``recurringEventId`` and ``originalStartTime``); deleting the recurring event deletes
  its instances.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.errors import GoogleApiError, bad_request, not_found
from connectors.sandbox.google.recurrence import Series, parse_series, series_id_of
from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import READ_EVENTS, WRITE_EVENTS
from connectors.sandbox.google.state import Calendar, SandboxState, StoredEvent
from connectors.sandbox.google.wire import (
    event_bounds,
    json_body,
    merge,
    now,
    rfc3339,
    validate_times,
)

EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
# Fields a client may write; everything else on an event is the server's.
WRITABLE = (
    "summary",
    "description",
    "location",
    "start",
    "end",
    "status",
    "transparency",
    "visibility",
    "attendees",
    "extendedProperties",
    "recurrence",
    "reminders",
    "colorId",
    "source",
)


class EventStore(SandboxState):
    """Events of every calendar, with a change log per calendar for incremental sync.

    A recurring event is stored once, with its rule; its instances are generated from
    it, except the ones changed or cancelled on their own (exceptions), which are
    stored under their instance id like any event and indexed in ``Calendar.exceptions``.
    """

    def _store(
        self,
        cal: Calendar,
        event_id: str,
        fields: Mapping[str, Any],
        at: datetime,
        *,
        created: str | None,
        sequence: int,
        instance_of: Mapping[str, Any] | None = None,
    ) -> StoredEvent:
        series = parse_series(fields) if instance_of is None else None
        starts_at, ends_at = event_bounds(fields)
        seq = self._next_seq()
        resource: dict[str, Any] = {
            "kind": "calendar#event",
            "etag": f'"{seq:016d}"',
            "id": event_id,
            "status": fields.get("status") or "confirmed",
            "htmlLink": f"https://calendar.sandbox.local/event?eid={event_id}",
            "created": created or rfc3339(at),
            "updated": rfc3339(at),
            "creator": {"email": cal.account, "self": True},
            "organizer": {"email": cal.id, "displayName": cal.summary, "self": True},
            "iCalUID": f"{event_id}@google.com",
            "sequence": sequence,
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
        resource |= {k: fields[k] for k in WRITABLE if k in fields and k != "status"}
        if instance_of is not None:
            # an instance has no rule of its own, and keeps its place in the series
            resource.pop("recurrence", None)
            resource |= dict(instance_of)
            resource["iCalUID"] = f"{instance_of['recurringEventId']}@google.com"
            cal.exceptions.setdefault(instance_of["recurringEventId"], set()).add(event_id)
        stored = StoredEvent(resource, seq, starts_at, ends_at, series, self._dropped(cal.events.get(event_id),
                                                                                     series, resource, at))
        cal.events[event_id] = stored
        cal.log_seqs.append(seq)
        cal.log_ids.append(event_id)
        if len(cal.log_seqs) > 1024 and len(cal.log_seqs) > 2 * len(cal.events):
            live = sorted((e.seq, eid) for eid, e in cal.events.items())
            cal.log_seqs = [s for s, _ in live]
            cal.log_ids = [eid for _, eid in live]
        return stored

    @staticmethod
    def _dropped(old: StoredEvent | None, series: Series | None, resource: Mapping[str, Any],
                 at: datetime) -> frozenset[str]:
        """Instance ids the previous versions had that this one does not (a rule changed,
        or the series was deleted): incremental sync reports them cancelled."""
        if old is None or old.series is None:
            return frozenset()
        had = set(old.dropped) | {old.series.instance_id(resource["id"], s)
                                  for s in old.series.original_starts(None, None)}
        has = set() if series is None or resource["status"] == "cancelled" else {
            series.instance_id(resource["id"], s) for s in series.original_starts(None, None)}
        return frozenset(had - has)

    def instance_resource(self, master: StoredEvent, original_start: datetime, *,
                          status: str | None = None) -> dict[str, Any]:
        """One generated occurrence of a recurring event, as events.instances shows it."""
        series = master.series
        assert series is not None
        resource = {k: v for k, v in master.resource.items() if k != "recurrence"}
        start = series.utc(original_start)
        resource |= {
            "id": series.instance_id(master.resource["id"], original_start),
            "recurringEventId": master.resource["id"],
            "originalStartTime": series.event_time(original_start),
            "start": series.event_time(original_start),
            "end": series.event_time(start + series.duration if series.zone else original_start + series.duration),
        }
        if status is not None:
            resource["status"] = status
        return resource

    def generated_instances(self, cal: Calendar, master: StoredEvent, after: datetime | None,
                            before: datetime | None) -> list[tuple[dict[str, Any], datetime, datetime]]:
        """The occurrences of a recurring event in a window that are not stored on their own:
        (resource, start, end) in UTC."""
        series = master.series
        assert series is not None
        own = cal.exceptions.get(master.resource["id"], set())
        found = []
        for original_start in series.original_starts(after, before):
            instance_id = series.instance_id(master.resource["id"], original_start)
            if instance_id in own:
                continue
            start = series.utc(original_start)
            found.append((self.instance_resource(master, original_start), start, start + series.duration))
        return found

    def _generated(self, cal: Calendar, event_id: str) -> tuple[StoredEvent, datetime] | None:
        """(its recurring event, original start) when ``event_id`` names an occurrence of a
        live recurring event that is not stored on its own."""
        master = cal.events.get(series_id_of(event_id) or "")
        if master is None or master.series is None or master.cancelled:
            return None
        original_start = master.series.original_start_of(event_id)
        if original_start is None or not master.series.occurs_at(original_start):
            return None
        return master, original_start

    def _materialize(self, cal: Calendar, event_id: str) -> StoredEvent | None:
        """Store a generated occurrence on its own, as Google does before changing one instance."""
        generated = self._generated(cal, event_id)
        if generated is None:
            return None
        master, original_start = generated
        resource = self.instance_resource(master, original_start)
        fields = {k: resource[k] for k in WRITABLE if k in resource} | {"status": resource["status"]}
        return self._store(cal, event_id, fields, now(), created=master.resource["created"],
                           sequence=master.resource["sequence"], instance_of=_place_in_series(resource))

    def insert_event(self, account: str, calendar_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            event_id = body.get("id") or uuid.uuid4().hex
            if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
                raise bad_request("Invalid resource id value.")
            if event_id in cal.events:
                # deleted events keep their id too, exactly like Google
                raise GoogleApiError(409, "The requested identifier already exists.", "duplicate")
            validate_times(body)
            stored = self._store(cal, event_id, body, now(), created=None, sequence=0)
            self._notify(cal)
            return stored.resource

    def get_event(self, account: str, calendar_id: str, event_id: str) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            stored = cal.events.get(event_id)
            if stored is not None:
                return stored.resource
            generated = self._generated(cal, event_id)
            if generated is None:
                raise not_found()
            return self.instance_resource(*generated)

    def _change_event(
        self,
        account: str,
        calendar_id: str,
        event_id: str,
        fields: Mapping[str, Any],
        if_match: str | None,
        *,
        replace: bool,
    ) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            stored = cal.events.get(event_id) or self._materialize(cal, event_id)
            if stored is None:
                raise not_found()
            old = stored.resource
            if if_match and if_match not in ("*", old["etag"]):
                raise GoogleApiError(412, "Precondition Failed", "conditionNotMet", location="If-Match",
                                     location_type="header")
            if replace:
                merged = {k: fields[k] for k in WRITABLE if k in fields}
            else:
                merged = {k: old[k] for k in WRITABLE if k in old}
                for key in WRITABLE:
                    if key in fields:
                        merged[key] = merge(merged.get(key), fields[key], key)
            merged.setdefault("status", old["status"])
            validate_times(merged)
            moved = merged.get("start") != old.get("start") or merged.get("end") != old.get("end")
            sequence = old["sequence"] + (1 if moved else 0)
            stored = self._store(cal, event_id, merged, now(), created=old["created"], sequence=sequence,
                                 instance_of=_place_in_series(old) if stored.series_id else None)
            self._notify(cal)
            return stored.resource

    def patch_event(
        self,
        account: str,
        calendar_id: str,
        event_id: str,
        changes: Mapping[str, Any],
        if_match: str | None = None,
    ) -> dict[str, Any]:
        return self._change_event(account, calendar_id, event_id, changes, if_match, replace=False)

    def update_event(
        self,
        account: str,
        calendar_id: str,
        event_id: str,
        body: Mapping[str, Any],
        if_match: str | None = None,
    ) -> dict[str, Any]:
        return self._change_event(account, calendar_id, event_id, body, if_match, replace=True)

    def delete_event(self, account: str, calendar_id: str, event_id: str, if_match: str | None = None) -> None:
        """Mark cancelled and keep it: incremental sync must report the deletion. One
        instance of a series is cancelled on its own; deleting a series cancels its
        instances with it."""
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            stored = cal.events.get(event_id) or self._materialize(cal, event_id)
            if stored is None:
                raise not_found()
            if stored.cancelled:
                raise GoogleApiError(410, "Resource has been deleted", "deleted")
            if if_match and if_match not in ("*", stored.resource["etag"]):
                raise GoogleApiError(412, "Precondition Failed", "conditionNotMet", location="If-Match",
                                     location_type="header")
            at = now()
            for victim in [stored, *self._live_exceptions(cal, stored)]:
                old = victim.resource
                fields = {k: old[k] for k in WRITABLE if k in old} | {"status": "cancelled"}
                self._store(cal, old["id"], fields, at, created=old["created"], sequence=old["sequence"],
                            instance_of=_place_in_series(old) if victim.series_id else None)
            self._notify(cal)

    def _live_exceptions(self, cal: Calendar, stored: StoredEvent) -> list[StoredEvent]:
        if stored.series is None:
            return []
        own = cal.exceptions.get(stored.resource["id"], set())
        return [cal.events[i] for i in sorted(own) if not cal.events[i].cancelled]


def _place_in_series(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {"recurringEventId": resource["recurringEventId"], "originalStartTime": resource["originalStartTime"]}


def add_routes(api: APIRouter, state: EventStore) -> None:
    """``/calendar/v3/calendars/{calendarId}/events`` and ``…/events/{eventId}``."""
    cal = "/calendar/v3"

    @api.post(cal + "/calendars/{calendarId}/events", include_in_schema=False)
    async def events_insert(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(state, request, WRITE_EVENTS)
        return JSONResponse(state.insert_event(account, calendarId, await json_body(request)))

    @api.get(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_get(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        return JSONResponse(state.get_event(bearer(state, request, READ_EVENTS), calendarId, eventId))

    @api.patch(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_patch(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        account = bearer(state, request, WRITE_EVENTS)
        body = await json_body(request)
        return JSONResponse(state.patch_event(account, calendarId, eventId, body, request.headers.get("if-match")))

    @api.put(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_update(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        account = bearer(state, request, WRITE_EVENTS)
        body = await json_body(request)
        return JSONResponse(state.update_event(account, calendarId, eventId, body, request.headers.get("if-match")))

    @api.delete(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_delete(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        account = bearer(state, request, WRITE_EVENTS)
        state.delete_event(account, calendarId, eventId, request.headers.get("if-match"))
        return Response(status_code=204)
