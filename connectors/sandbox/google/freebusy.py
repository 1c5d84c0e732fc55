"""Calendar v3 ``freebusy.query``: merged busy intervals per requested calendar, cut at
the query's window; transparent and cancelled events are free time; a calendar the
caller cannot see answers ``notFound`` inside its entry, not as an HTTP error.

Sources: https://developers.google.com/workspace/calendar/api/v3/reference/freebusy/query
(request and response shapes, ``calendars.(key).errors[]``) and
https://developers.google.com/workspace/calendar/api/guides/errors (400
``timeRangeEmpty``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.errors import GoogleApiError, bad_request
from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import FREEBUSY
from connectors.sandbox.google.state import SandboxState
from connectors.sandbox.google.wire import json_body, parse_instant, rfc3339_seconds


class FreeBusy(SandboxState):
    def freebusy(self, account: str, body: Mapping[str, Any]) -> dict[str, Any]:
        time_min = parse_instant(body.get("timeMin"), "timeMin")
        time_max = parse_instant(body.get("timeMax"), "timeMax")
        if time_max <= time_min:
            raise bad_request("The specified time range is empty.", location="timeMax")
        calendars: dict[str, Any] = {}
        with self._lock:
            for item in body.get("items") or []:
                requested = item.get("id", "")
                try:
                    cal = self._owned_calendar(account, requested)
                except GoogleApiError:
                    calendars[requested] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                    continue
                spans = sorted(
                    (max(e.starts_at, time_min), min(e.ends_at, time_max))
                    for e in cal.events.values()
                    if not e.cancelled
                    and e.resource.get("transparency") != "transparent"
                    and e.ends_at > time_min
                    and e.starts_at < time_max
                )
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
