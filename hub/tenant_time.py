"""Times as tenants mean them: one place for zones, naive input, DST and overflow.

Every route that takes a time goes through here, so the same input gets the same
answer everywhere (``send_at`` of a message or a broadcast, ``since``/``until``
filters, business hours, reminders):

- an aware time is converted to UTC; a naive one is the tenant's wall clock;
- a wall-clock time the zone skips (the hour lost when DST starts) is refused, since
  no instant matches it; one the zone repeats (DST ends) is its first occurrence;
- a time that cannot be represented once converted (year 1 at +14:00, year 9999 in
  a zone west of UTC) is a 422 naming the field, never an ``OverflowError``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime

from hub.errors import Invalid

DEFAULT_ZONE = "America/Sao_Paulo"


@lru_cache(maxsize=256)
def zone_of(name: str | None) -> ZoneInfo:
    """The IANA zone ``name`` (a tenant's stored zone is validated on write; an
    unknown one, which can only be an old row, reads as the platform default)."""
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def as_utc(value: datetime, *, zone: ZoneInfo | str | None = None, field: str = "time") -> datetime:
    """``value`` as an aware UTC datetime; naive values are wall-clock times in ``zone``."""
    if value.tzinfo is None:
        tz = zone if isinstance(zone, ZoneInfo) else zone_of(zone)
        local = value.replace(tzinfo=tz, fold=0)
        try:
            utc = local.astimezone(UTC)
            round_trip = utc.astimezone(tz).replace(tzinfo=None)
        except (OverflowError, ValueError):
            raise _out_of_range(field) from None
        if round_trip != value.replace(fold=0):
            raise Invalid(f"{field}: {value.isoformat()} does not exist in {tz.key} (the clock skips it when "
                          "daylight saving time starts); give another time or an offset", code="time_in_dst_gap")
        return utc
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _out_of_range(field) from None


def schedule_time(value: datetime | None, *, zone: ZoneInfo | str | None, field: str, now: datetime,
                  max_ahead: timedelta) -> datetime | None:
    """A time to do something later: in UTC, not in the past, at most ``max_ahead`` away."""
    if value is None:
        return None
    at = as_utc(value, zone=zone, field=field)
    if at <= now:
        raise Invalid(f"{field}: {at.isoformat()} is in the past", code=f"{field}_in_past")
    if at > now + max_ahead:
        raise Invalid(f"{field}: at most {max_ahead.days} days ahead", code=f"{field}_too_far")
    return at


def _out_of_range(field: str) -> Invalid:
    return Invalid(f"{field}: out of range once converted to UTC (years 1 to 9999)", code="time_out_of_range")


def _query_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        # pydantic turns a ValueError raised here into a 422 naming the parameter
        raise ValueError("out of range once converted to UTC (years 1 to 9999)") from None


# A query parameter such as ``since``: an offset is required, and it is held in UTC.
UtcQueryTime = Annotated[AwareDatetime, AfterValidator(_query_utc)]
