"""Calendar v3 ``freebusy.query``: merged busy intervals per requested calendar, cut at
the query's window; transparent and cancelled events are free time; a calendar the
caller cannot see answers ``notFound`` inside its entry, not as an HTTP error.

Sources: https://developers.google.com/workspace/calendar/api/v3/reference/freebusy/query
(request and response shapes, ``calendars.(key).errors[]``; recurring events count by
their instances) and
https://developers.google.com/workspace/calendar/api/guides/errors (400
``timeRangeEmpty``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.errors import GoogleApiError
from connectors.sandbox.google.events import EventStore
from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import FREEBUSY
from connectors.sandbox.google.state import Calendar
from connectors.sandbox.google.wire import json_body, parse_instant, rfc3339_seconds


class FreeBusy(EventStore):
    """freeBusy.query over the store, recurring events expanded."""

    def _busy_spans(self, cal: Calendar, time_min: datetime, time_max: datetime) -> list[tuple[datetime, datetime]]:
        spans = []
        for stored in cal.events.values():
            if stored.cancelled or stored.resource.get("transparency") == "transparent":
                continue
            if stored.series is not None:
                spans += [(start, end) for _, start, end in self.generated_instances(cal, stored, time_min, time_max)]
            elif stored.ends_at > time_min and stored.starts_at < time_max:
                spans.append((stored.starts_at, stored.ends_at))
        return sorted((max(start, time_min), min(end, time_max)) for start, end in spans)

    def freebusy(self, account: str, body: Mapping[str, Any]) -> dict[str, Any]:
        time_min = parse_instant(body.get("timeMin"), "timeMin")
        time_max = parse_instant(body.get("timeMax"), "timeMax")
        if time_max <= time_min:
            raise GoogleApiError(400, "The specified time range is empty.", "timeRangeEmpty", domain="calendar",
                                 location="timeMax")
        calendars: dict[str, Any] = {}
        with self._lock:
            for item in body.get("items") or []:
                requested = item.get("id", "")
                try:
                    cal = self._owned_calendar(account, requested)
                except GoogleApiError:
                    calendars[requested] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                    continue
                spans = self._busy_spans(cal, time_min, time_max)
                merged: list[list[datetime]] = []
                for start, end in spans:
                    if merged and start <= merged[-1][1]:
                        merged[-1][1] = max(merged[-1][1], end)
                    else:
                        merged.append([start, end])
                calendars[requested] = {
                    "busy": [{"start": rfc3339_seconds(s), "end": rfc3339_seconds(e)} for s, e in merged]
                }
        return {
            "kind": "calendar#freeBusy",
            "timeMin": body["timeMin"],
            "timeMax": body["timeMax"],
            "calendars": calendars,
        }


def add_routes(api: APIRouter, state: FreeBusy) -> None:
    """``POST /calendar/v3/freeBusy``."""

    @api.post("/calendar/v3/freeBusy", include_in_schema=False)
    async def freebusy(request: Request) -> Response:
        account = bearer(state, request, FREEBUSY)
        return JSONResponse(state.freebusy(account, await json_body(request)))
