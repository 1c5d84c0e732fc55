"""Parsing and rendering shared by the emulated endpoints: RFC 3339 instants, event
times, opaque tokens, query parameters and JSON bodies."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request

from connectors.sandbox.google.errors import bad_request


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rfc3339_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_token(payload: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_token(token: str) -> dict[str, Any] | None:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None


def query_of(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}

def int_param(params: Mapping[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise bad_request(f"Invalid value for: {name}", location=name) from None
    if not low <= value:
        raise bad_request(f"Invalid value for: {name}", location=name)
    return min(value, high)


def parse_instant(raw: Any, name: str) -> datetime:
    """An RFC 3339 timestamp with an offset (Google rejects one without)."""
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise bad_request("Bad Request", location=name) from None
    if moment.tzinfo is None:
        raise bad_request("Bad Request", location=name)
    return moment.astimezone(UTC)


def event_time(value: Any, which: str) -> datetime:
    if not isinstance(value, Mapping) or not (value.get("dateTime") or value.get("date")):
        raise bad_request(f"Missing {which} time.")
    try:
        if value.get("dateTime"):
            moment = datetime.fromisoformat(value["dateTime"])
            if moment.tzinfo is None:
                # Google wants an offset in dateTime or a timeZone beside it
                if not value.get("timeZone"):
                    raise bad_request(f"Missing time zone definition for {which} time.")
                moment = moment.replace(tzinfo=ZoneInfo(value["timeZone"]))
            return moment.astimezone(UTC)
        day = date.fromisoformat(value["date"])
    except (ValueError, ZoneInfoNotFoundError):
        raise bad_request(f"Invalid {which} time.") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def event_bounds(fields: Mapping[str, Any]) -> tuple[datetime, datetime]:
    return event_time(fields.get("start"), "start"), event_time(fields.get("end"), "end")


def validate_times(fields: Mapping[str, Any]) -> None:
    start, end = event_bounds(fields)
    if end < start:
        raise bad_request("The specified time range is empty.")


def merge(old: Any, new: Any, key: str) -> Any:
    """Patch semantics: objects merge key by key, except start/end which are replaced
    whole (a ``date`` patched over a ``dateTime`` must not leave both)."""
    if key in ("start", "end") or not isinstance(old, dict) or not isinstance(new, dict):
        return new
    merged = dict(old)
    for name, value in new.items():
        merged[name] = merge(old.get(name), value, name) if value is not None else None
    return {k: v for k, v in merged.items() if v is not None}



async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("Parse Error") from None
    if not isinstance(body, dict):
        raise bad_request("Parse Error")
    return body
