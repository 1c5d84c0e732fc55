"""Calendar v3 ``calendarList.list`` and ``calendars.get``: the account's calendars,
primary first (its id is the account e-mail).

Sources: https://developers.google.com/workspace/calendar/api/v3/reference/calendarList/list
and https://developers.google.com/workspace/calendar/api/v3/reference/calendars/get;
another owner's calendar is a 404 like a missing one
(https://developers.google.com/workspace/calendar/api/guides/errors, 404).
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import READ_CALENDARS, READ_EVENTS
from connectors.sandbox.google.state import SandboxState


class CalendarDirectory(SandboxState):
    def list_calendar_entries(self, account: str) -> dict[str, Any]:
        with self._lock:
            items = []
            for cid in self.accounts.get(account, []):
                cal = self.calendars[cid]
                entry = {
                    "kind": "calendar#calendarListEntry",
                    "etag": f'"{hashlib.sha1(cid.encode(), usedforsecurity=False).hexdigest()[:16]}"',
                    "id": cid,
                    "summary": cal.summary,
                    "timeZone": cal.time_zone,
                    "accessRole": "owner",
                    "selected": True,
                    "defaultReminders": [],
                }
                if cal.primary:
                    entry["primary"] = True
                items.append(entry)
            return {"kind": "calendar#calendarList", "etag": '"sandbox"', "items": items}

    def get_calendar(self, account: str, calendar_id: str) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            return {
                "kind": "calendar#calendar",
                "etag": '"sandbox"',
                "id": cal.id,
                "summary": cal.summary,
                "timeZone": cal.time_zone,
            }


def add_routes(api: APIRouter, state: CalendarDirectory) -> None:
    """``/calendar/v3/users/me/calendarList`` and ``/calendar/v3/calendars/{calendarId}``."""
    cal = "/calendar/v3"

    @api.get(cal + "/users/me/calendarList", include_in_schema=False)
    async def calendar_list(request: Request) -> Response:
        return JSONResponse(state.list_calendar_entries(bearer(state, request, READ_CALENDARS)))

    @api.get(cal + "/calendars/{calendarId}", include_in_schema=False)
    async def calendars_get(request: Request, calendarId: str) -> Response:  # noqa: N803 - Google's name
        return JSONResponse(state.get_calendar(bearer(state, request, READ_EVENTS), calendarId))
