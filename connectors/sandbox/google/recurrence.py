"""Recurring events as Google keeps them: a recurring event carries ``recurrence`` (RFC 5545
``RRULE``/``EXRULE``/``RDATE``/``EXDATE`` lines) and is expanded in its ``start.timeZone``;
each occurrence is an instance whose id is ``<recurring id>_<original start>`` and which
names its series in ``recurringEventId`` and its place in it in ``originalStartTime``.

Sources:
- https://developers.google.com/workspace/calendar/api/guides/recurringevents (creating
  a series, reading its instances, changing one instance);
- https://developers.google.com/workspace/calendar/api/concepts/events-calendars#recurring_events;
- the discovery document ``calendar.v3.json``: ``Event.recurrence`` ("DTSTART and DTEND
  lines are not allowed"), ``Event.recurringEventId``, ``Event.originalStartTime`` and
  ``EventDateTime.timeZone`` ("For recurring events this field is required and specifies
  the time zone in which the recurrence is expanded").

Google refuses a rule it cannot read with 400 ``invalid`` "Invalid recurrence rule."
(reported from the live API, e.g. https://github.com/derekantrican/GAS-ICS-Sync/issues/466
and https://github.com/openclaw/gogcli/issues/120) and a recurring event without a time
zone with "Missing time zone definition for start time." Google counts the event's own
start as an occurrence even when the rule would not produce it
(https://github.com/googleapis/google-api-nodejs-client/issues/2214).

Expansion uses python-dateutil's ``rrule`` (RFC 5545). How far Google expands a series
with no end when nothing bounds the query is not documented; the sandbox stops at
``EXPANSION_HORIZON`` after now and at ``MAX_INSTANCES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rruleset, rrulestr

from connectors.sandbox.google.errors import GoogleApiError, bad_request

EXPANSION_HORIZON = timedelta(days=730)
MAX_INSTANCES = 2500
_LINE = re.compile(r"^(RRULE|EXRULE|RDATE|EXDATE)[;:]", re.IGNORECASE)
_UNTIL = re.compile(r"UNTIL=(\d{8})(T\d{6})?(Z)?", re.IGNORECASE)
_COUNT = re.compile(r"COUNT=(-?\d+)", re.IGNORECASE)
_TIMED_ID = re.compile(r"^(?P<series>[a-v0-9]{5,1024})_(?P<stamp>\d{8}T\d{6}Z)$")
_DAY_ID = re.compile(r"^(?P<series>[a-v0-9]{5,1024})_(?P<stamp>\d{8})$")


def invalid_rule() -> GoogleApiError:
    return bad_request("Invalid recurrence rule.")


@dataclass(frozen=True)
class Series:
    """One version of a recurring event, parsed once: where and how it repeats."""

    zone: ZoneInfo | None  # None: an all-day series (dates, no zone)
    first_start: datetime  # wall time in ``zone`` (aware), or naive midnight for all-day
    duration: timedelta
    rules: rruleset
    endless: bool  # some rule has neither COUNT nor UNTIL

    @property
    def all_day(self) -> bool:
        return self.zone is None

    def original_starts(self, after: datetime | None, before: datetime | None) -> list[datetime]:
        """Original starts of the occurrences that end after ``after`` and start before
        ``before`` (both aware UTC, None for no bound), at most ``MAX_INSTANCES``; an
        endless series stops ``EXPANSION_HORIZON`` after now (or after its start)."""
        low = (after - self.duration) if after is not None else None
        if before is None and self.endless:
            before = max(datetime.now(UTC), self.utc(self.first_start)) + EXPANSION_HORIZON
        found: list[datetime] = []
        for start in self.rules:
            instant = self.utc(start)
            if (before is not None and instant >= before) or len(found) >= MAX_INSTANCES:
                break
            if low is None or instant > low:
                found.append(start)
        return found

    def utc(self, original_start: datetime) -> datetime:
        """An occurrence's start as aware UTC (all-day occurrences at midnight UTC, like
        the sandbox's single all-day events)."""
        if self.zone is None:
            return original_start.replace(tzinfo=UTC)
        return original_start.astimezone(UTC)

    def instance_id(self, series_id: str, original_start: datetime) -> str:
        if self.zone is None:
            return f"{series_id}_{original_start:%Y%m%d}"
        return f"{series_id}_{original_start.astimezone(UTC):%Y%m%dT%H%M%SZ}"

    def event_time(self, moment: datetime) -> dict[str, str]:
        """``start``/``end``/``originalStartTime`` as Google writes them for an instance."""
        if self.zone is None:
            return {"date": moment.date().isoformat()}
        local = moment.astimezone(self.zone)
        return {"dateTime": local.isoformat(), "timeZone": str(self.zone.key)}

    def original_start_of(self, instance_id: str) -> datetime | None:
        """The original start an instance id names, if it is one of this series' ids."""
        match = (_DAY_ID if self.zone is None else _TIMED_ID).match(instance_id)
        if match is None:
            return None
        stamp = match["stamp"]
        if self.zone is None:
            return datetime.strptime(stamp, "%Y%m%d")
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(self.zone)

    def occurs_at(self, original_start: datetime) -> bool:
        instant = self.utc(original_start)
        return any(self.utc(s) == instant for s in self.rules.between(
            original_start - timedelta(seconds=1), original_start + timedelta(seconds=1), inc=True))


def series_id_of(instance_id: str) -> str | None:
    """The recurring event an instance id belongs to (None for a plain id)."""
    match = _TIMED_ID.match(instance_id) or _DAY_ID.match(instance_id)
    return match["series"] if match else None


def parse_series(fields: Mapping[str, Any]) -> Series | None:
    """The series of an event body, None when it does not recur; Google's 400 when the
    recurrence or its time zone is not acceptable."""
    lines = fields.get("recurrence")
    if not lines:
        return None
    if not isinstance(lines, list) or not all(isinstance(line, str) and _LINE.match(line) for line in lines):
        raise invalid_rule()
    start, end = fields.get("start") or {}, fields.get("end") or {}
    if start.get("dateTime"):
        if not start.get("timeZone"):
            raise bad_request("Missing time zone definition for start time.")
        if not end.get("timeZone"):
            raise bad_request("Missing time zone definition for end time.")
        try:
            zone: ZoneInfo | None = ZoneInfo(start["timeZone"])
            first = datetime.fromisoformat(start["dateTime"])
            last = datetime.fromisoformat(end["dateTime"])
        except (ValueError, KeyError, ZoneInfoNotFoundError):
            raise bad_request("Invalid start time.") from None
        first = first.replace(tzinfo=zone) if first.tzinfo is None else first.astimezone(zone)
        last = last.replace(tzinfo=zone) if last.tzinfo is None else last.astimezone(zone)
    else:
        try:
            zone = None
            day, last_day = date.fromisoformat(start["date"]), date.fromisoformat(end["date"])
        except (ValueError, KeyError, TypeError):
            raise bad_request("Invalid start time.") from None
        first = datetime(day.year, day.month, day.day)
        last = datetime(last_day.year, last_day.month, last_day.day)
    text = "\n".join(_normalized(line, zone) for line in lines)
    endless = any(line.upper().startswith("RRULE") and not _COUNT.search(line) and not _UNTIL.search(line)
                  for line in lines)
    try:
        rules = rrulestr(text, dtstart=first, forceset=True, tzids=_zone_named)
    except (ValueError, TypeError, ZoneInfoNotFoundError):
        raise invalid_rule() from None
    assert isinstance(rules, rruleset)
    rules.rdate(first)  # the event's own start is an occurrence, whatever the rule says
    duration = last.astimezone(UTC) - first.astimezone(UTC) if zone else last - first
    return Series(zone, first, duration, rules, endless)


def _zone_named(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _normalized(line: str, zone: ZoneInfo | None) -> str:
    """A recurrence line dateutil reads as Google does: COUNT and UNTIL never together
    (RFC 5545 §3.3.10), COUNT positive, UNTIL in UTC for a zoned series and a floating
    date for an all-day one."""
    if not line.upper().startswith(("RRULE", "EXRULE")):
        return line
    count = _COUNT.search(line)
    until = _UNTIL.search(line)
    if (count and until) or (count and int(count.group(1)) < 1):
        raise invalid_rule()
    if until is None:
        return line
    day, clock, utc = until.group(1), until.group(2) or "", until.group(3)
    if zone is None:
        replacement = f"UNTIL={day}"
    elif utc:
        replacement = f"UNTIL={day}{clock}Z"
    else:  # a floating UNTIL is a wall time where the series is
        try:
            local = datetime.strptime(day + (clock or "T235959"), "%Y%m%dT%H%M%S").replace(tzinfo=zone)
        except ValueError:
            raise invalid_rule() from None
        replacement = f"UNTIL={local.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return line[: until.start()] + replacement + line[until.end():]
