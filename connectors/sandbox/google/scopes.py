"""OAuth scopes, and which of them each Calendar method accepts (any one of a set is
enough), as listed under "Authorization" on each method's reference page, e.g.
https://developers.google.com/workspace/calendar/api/v3/reference/events/list, and in
the discovery document (``calendar.v3.json``, ``scopes`` of each method)."""

from __future__ import annotations

SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"
SCOPE_CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"
SCOPE_EVENTS_READONLY = "https://www.googleapis.com/auth/calendar.events.readonly"
SCOPE_FREEBUSY = "https://www.googleapis.com/auth/calendar.freebusy"

READ_EVENTS = frozenset({SCOPE_CALENDAR, SCOPE_CALENDAR_READONLY, SCOPE_EVENTS, SCOPE_EVENTS_READONLY})
WRITE_EVENTS = frozenset({SCOPE_CALENDAR, SCOPE_EVENTS})
READ_CALENDARS = frozenset({SCOPE_CALENDAR, SCOPE_CALENDAR_READONLY})
FREEBUSY = READ_EVENTS | {SCOPE_FREEBUSY}
USERINFO = frozenset({"openid", "email", "https://www.googleapis.com/auth/userinfo.email"})
