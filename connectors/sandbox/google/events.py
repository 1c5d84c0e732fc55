"""Calendar v3 ``events``: insert, get, patch, update, delete and list (full listings,
incremental sync with ``syncToken``, paging with ``pageToken``).

Sources:
- https://developers.google.com/workspace/calendar/api/v3/reference/events (the
  resource; ids are base32hex ``[a-v0-9]{5,1024}``; a deleted event keeps its id, so a
  second insert with it is a 409 ``duplicate``; ``If-Match`` with a stale etag is a 412);
- https://developers.google.com/workspace/calendar/api/guides/sync (full sync, then
  ``syncToken``; deletions always reported; 410 ``fullSyncRequired`` when the token is
  no longer valid);
- the discovery document ``calendar.v3.json`` (``events.list`` parameters: which ones
  cannot be combined with ``syncToken``).
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.errors import GoogleApiError, bad_request, not_found
from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import READ_EVENTS, WRITE_EVENTS
from connectors.sandbox.google.state import Calendar, SandboxState, StoredEvent
from connectors.sandbox.google.wire import (
    decode_token,
    encode_token,
    event_bounds,
    int_param,
    json_body,
    merge,
    now,
    parse_instant,
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


class EventStore(SandboxState):
    """Events of every calendar, with a change log per calendar for incremental sync."""

    def _store(
        self,
        cal: Calendar,
        event_id: str,
        fields: Mapping[str, Any],
        at: datetime,
        *,
        created: str | None,
        sequence: int,
    ) -> StoredEvent:
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
        stored = StoredEvent(resource, seq, starts_at, ends_at)
        cal.events[event_id] = stored
        cal.log_seqs.append(seq)
        cal.log_ids.append(event_id)
        if len(cal.log_seqs) > 1024 and len(cal.log_seqs) > 2 * len(cal.events):
            live = sorted((e.seq, eid) for eid, e in cal.events.items())
            cal.log_seqs = [s for s, _ in live]
            cal.log_ids = [eid for _, eid in live]
        return stored

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
            stored = self._owned_calendar(account, calendar_id).events.get(event_id)
            if stored is None:
                raise not_found()
            return stored.resource

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
            stored = cal.events.get(event_id)
            if stored is None:
                raise not_found()
            old = stored.resource
            if if_match and if_match not in ("*", old["etag"]):
                raise GoogleApiError(412, "Precondition Failed", "conditionNotMet", location="If-Match")
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
            stored = self._store(cal, event_id, merged, now(), created=old["created"], sequence=sequence)
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
        """Mark cancelled and keep it: incremental sync must report the deletion."""
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            stored = cal.events.get(event_id)
            if stored is None:
                raise not_found()
            if stored.cancelled:
                raise GoogleApiError(410, "Resource has been deleted", "deleted")
            if if_match and if_match not in ("*", stored.resource["etag"]):
                raise GoogleApiError(412, "Precondition Failed", "conditionNotMet", location="If-Match")
            fields = {k: stored.resource[k] for k in WRITABLE if k in stored.resource} | {"status": "cancelled"}
            old = stored.resource
            self._store(cal, event_id, fields, now(), created=old["created"], sequence=old["sequence"])
            self._notify(cal)

    def list_events(self, account: str, calendar_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """events.list: full listing, or the changes since ``syncToken``; paged by ``pageToken``."""
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            max_results = int_param(params, "maxResults", 250, low=1, high=2500)
            page = decode_token(params["pageToken"]) if params.get("pageToken") else None
            if params.get("pageToken") and (page is None or page.get("c") != cal.id):
                raise bad_request("Invalid page token value.", location="pageToken")
            sync_token = params.get("syncToken")
            if sync_token:
                for name in FORBIDDEN_WITH_SYNC_TOKEN:
                    if name in params:
                        raise bad_request(f"{name} is not compatible with syncToken.", location=name)
            if page is not None:
                after, upto, epoch, incremental = page["a"], page["u"], page["e"], page["i"]
            elif sync_token:
                decoded = decode_token(sync_token)
                if decoded is None or decoded.get("c") != cal.id:
                    raise bad_request("Invalid sync token value.", location="syncToken")
                after, upto, epoch, incremental = decoded["s"], self._seq, decoded["e"], True
            else:
                after, upto, epoch, incremental = 0, self._seq, cal.sync_epoch, False
            if epoch != cal.sync_epoch:
                raise GoogleApiError(
                    410,
                    "Sync token is no longer valid, a full sync is required.",
                    "fullSyncRequired",
                    domain="calendar",
                    location="syncToken",
                )
            accept = event_filter(params, incremental)
            items: list[dict[str, Any]] = []
            last_seq, more = after, False
            for index in range(bisect.bisect_right(cal.log_seqs, after), len(cal.log_seqs)):
                seq = cal.log_seqs[index]
                if seq > upto:
                    break
                stored = cal.events[cal.log_ids[index]]
                if stored.seq != seq or not accept(stored):
                    continue
                if len(items) == max_results:
                    more = True  # one more match exists: a next page is worth a token
                    break
                items.append(stored.resource)
                last_seq = seq
            answer: dict[str, Any] = {
                "kind": "calendar#events",
                "etag": f'"p{upto:016d}"',
                "summary": cal.summary,
                "updated": rfc3339(now()),
                "timeZone": cal.time_zone,
                "accessRole": "owner",
                "defaultReminders": [],
                "items": items,
            }
            if more:
                answer["nextPageToken"] = encode_token(
                    {"c": cal.id, "a": last_seq, "u": upto, "e": epoch, "i": incremental}
                )
            else:
                answer["nextSyncToken"] = encode_token({"c": cal.id, "s": upto, "e": epoch})
            return answer


def event_filter(params: Mapping[str, str], incremental: bool) -> Callable[[StoredEvent], bool]:
    if incremental:
        return lambda _stored: True  # deletions are part of what changed
    updated_min = parse_instant(params["updatedMin"], "updatedMin") if params.get("updatedMin") else None
    time_min = parse_instant(params["timeMin"], "timeMin") if params.get("timeMin") else None
    time_max = parse_instant(params["timeMax"], "timeMax") if params.get("timeMax") else None
    # updatedMin reports deletions since then whatever showDeleted says, as Google does
    show_deleted = params.get("showDeleted") == "true" or updated_min is not None
    wanted = [tuple(p.split("=", 1)) for p in params.get("privateExtendedProperty", "").split(",") if "=" in p]
    updated_floor = rfc3339(updated_min) if updated_min else None

    def accept(stored: StoredEvent) -> bool:
        if stored.cancelled and not show_deleted:
            return False
        if time_min is not None and stored.ends_at <= time_min:
            return False
        if time_max is not None and stored.starts_at >= time_max:
            return False
        if updated_floor is not None and stored.resource["updated"] < updated_floor:
            return False
        private = stored.resource.get("extendedProperties", {}).get("private", {})
        return all(private.get(k) == v for k, v in wanted)

    return accept



def add_routes(api: APIRouter, state: EventStore) -> None:
    """``/calendar/v3/calendars/{calendarId}/events`` and ``…/events/{eventId}``."""
    cal = "/calendar/v3"

    @api.post(cal + "/calendars/{calendarId}/events", include_in_schema=False)
    async def events_insert(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(state, request, WRITE_EVENTS)
        return JSONResponse(state.insert_event(account, calendarId, await json_body(request)))

    @api.get(cal + "/calendars/{calendarId}/events", include_in_schema=False)
    async def events_list(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(state, request, READ_EVENTS)
        params = {k: ",".join(request.query_params.getlist(k)) for k in request.query_params}
        return JSONResponse(state.list_events(account, calendarId, params))

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
