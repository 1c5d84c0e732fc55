"""The sandbox's own controls, for tests and demos (no Google counterpart): seed
accounts, consent without a browser, revoke grants and expire tokens as a user or
Google would, invalidate sync tokens, edit events "in Google" as a person would,
inject failures, and read what was pushed.

Python callers use the methods; a test or demo in another process uses the same
controls over HTTP under ``/_sandbox/google/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.errors import bad_request, not_found
from connectors.sandbox.google.events import WRITABLE, EventStore
from connectors.sandbox.google.push import PushRecord
from connectors.sandbox.google.state import DEFAULT_TIME_ZONE
from connectors.sandbox.google.wire import json_body, now, parse_instant, rfc3339

if TYPE_CHECKING:
    from connectors.sandbox.google import GoogleSandbox


class Controls(EventStore):
    """Edits made "in Google", sync token invalidation, and the push log."""

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        """Every sync token (and page token) issued for the calendar now answers 410."""
        with self._lock:
            self._calendar(calendar_id).sync_epoch += 1

    # --- control: edits made "in Google" ------------------------------------------

    def create_event(self, calendar_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an event as the calendar's owner would in the Google UI (pushes follow)."""
        with self._lock:
            return self.insert_event(self._calendar(calendar_id).account, calendar_id, body)

    def edit_event(self, calendar_id: str, event_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Patch an event as a person would in the Google UI."""
        with self._lock:
            return self.patch_event(self._calendar(calendar_id).account, calendar_id, event_id, changes)

    def move_event(
        self,
        calendar_id: str,
        event_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        destination: str | None = None,
    ) -> dict[str, Any]:
        """Drag an event to a new time, or move it to another calendar of the same owner
        (the source then lists it as cancelled, as Google's events.move does)."""
        with self._lock:
            cal = self._calendar(calendar_id)
            changes: dict[str, Any] = {}
            if start is not None:
                stored = cal.events.get(event_id)
                if stored is None:
                    raise not_found()
                # dragging keeps the duration unless a new end is given
                end = end or start + (stored.ends_at - stored.starts_at)
                changes["start"] = {"dateTime": start.isoformat()}
            if end is not None:
                changes["end"] = {"dateTime": end.isoformat()}
            moved = self.patch_event(cal.account, calendar_id, event_id, changes) if changes else None
            if destination is None:
                return moved or self.get_event(cal.account, calendar_id, event_id)
            target = self._calendar(destination)
            if target.account != cal.account:
                raise bad_request("Cannot move an event to a calendar of another owner.")
            body = {k: v for k, v in cal.events[event_id].resource.items() if k in WRITABLE}
            self.delete_event(cal.account, calendar_id, event_id)
            return self.insert_event(cal.account, destination, body | {"id": event_id})

    def remove_event(self, calendar_id: str, event_id: str) -> None:
        """Delete an event as a person would in the Google UI."""
        with self._lock:
            self.delete_event(self._calendar(calendar_id).account, calendar_id, event_id)

    def bulk_create_events(
        self,
        calendar_id: str,
        count: int,
        *,
        start: datetime | None = None,
        duration: timedelta = timedelta(minutes=30),
        every: timedelta = timedelta(hours=1),
        summary: str = "Consulta",
    ) -> int:
        """Create ``count`` events back to back quickly (benchmarks); one push for the batch."""
        with self._lock:
            cal = self._calendar(calendar_id)
            first = start or now().replace(minute=0, second=0, microsecond=0)
            at = now()
            for n in range(count):
                begins = first + n * every
                self._store(
                    cal,
                    uuid.uuid4().hex,
                    {
                        "summary": f"{summary} {n + 1}",
                        "start": {"dateTime": begins.isoformat()},
                        "end": {"dateTime": (begins + duration).isoformat()},
                    },
                    at,
                    created=None,
                    sequence=0,
                )
            self._notify(cal)
            return count

    # --- control: pushes ------------------------------------------------------------

    @property
    def push_log(self) -> list[PushRecord]:
        return list(self._pushes.log)

    def wait_for_pushes(self, timeout: float = 5.0) -> bool:
        """Block until every queued push was attempted; False on timeout."""
        return self._pushes.wait_idle(timeout)


def add_routes(api: APIRouter, state: GoogleSandbox) -> None:
    """Everything under ``/_sandbox/google/``."""

    ctl = "/_sandbox/google"

    @api.post(ctl + "/accounts", include_in_schema=False)
    async def seed_account(request: Request) -> Response:
        """{"email", "calendars": [summary...], "time_zone"} -> {"calendar_ids": [...]}"""
        body = await json_body(request)
        ids = state.seed_account(
            body["email"], calendars=body.get("calendars") or (), time_zone=body.get("time_zone") or DEFAULT_TIME_ZONE
        )
        return JSONResponse({"calendar_ids": ids})

    @api.post(ctl + "/clients", include_in_schema=False)
    async def register_client(request: Request) -> Response:
        """{"client_id", "client_secret", "redirect_uris": [...]}: an OAuth client, as made
        in the Google Cloud console (a tenant's own client, say)."""
        body = await json_body(request)
        if not body.get("client_id") or not body.get("client_secret"):
            raise bad_request("client_id and client_secret are required")
        state.register_client(body["client_id"], body["client_secret"], body.get("redirect_uris") or ())
        return Response(status_code=204)

    @api.post(ctl + "/local-origins", include_in_schema=False)
    async def trust_local_origin(request: Request) -> Response:
        """{"url"}: pushes may go to this origin over plain http (a local receiver)."""
        body = await json_body(request)
        state.trust_local_origin(str(body.get("url") or ""))
        return Response(status_code=204)

    @api.get(ctl + "/requests", include_in_schema=False)
    async def requests_seen() -> Response:
        """The latest requests the emulated endpoints answered, oldest first."""
        with state._lock:
            rows = [{"method": m, "path": p, "query": q} for m, p, q in state.requests]
        return JSONResponse({"requests": rows})

    @api.post(ctl + "/oauth/decide", include_in_schema=False)
    async def decide(request: Request) -> Response:
        """{"authorization_url", "account"?, "approve": true} -> {"redirect_url"}"""
        body = await json_body(request)
        if body.get("approve", True):
            location = state.approve(body["authorization_url"], account=body.get("account"))
        else:
            location = state.deny(body["authorization_url"])
        return JSONResponse({"redirect_url": location})

    @api.get(ctl + "/grants", include_in_schema=False)
    async def grants() -> Response:
        with state._lock:
            rows = [
                {
                    "refresh_token": g.refresh_token,
                    "account": g.account,
                    "client_id": g.client_id,
                    "scopes": list(g.scopes),
                    "revoked": g.revoked,
                    "refresh_calls": g.refresh_calls,
                }
                for g in state._all_grants()
            ]
        return JSONResponse({"grants": rows})

    @api.post(ctl + "/grants/revoke", include_in_schema=False)
    async def revoke_grants(request: Request) -> Response:
        """{"refresh_token"?, "account"?} -> {"revoked": n}"""
        body = await json_body(request)
        count = state.revoke_grant(refresh_token=body.get("refresh_token"), account=body.get("account"))
        return JSONResponse({"revoked": count})

    @api.post(ctl + "/tokens/expire", include_in_schema=False)
    async def expire_tokens(request: Request) -> Response:
        """{"account"?} -> {"expired": n}"""
        body = await json_body(request)
        return JSONResponse({"expired": state.expire_access_tokens(account=body.get("account"))})

    @api.put(ctl + "/config", include_in_schema=False)
    async def configure(request: Request) -> Response:
        """{"access_token_lifetime"?: seconds}"""
        body = await json_body(request)
        if "access_token_lifetime" in body:
            state.access_token_lifetime = int(body["access_token_lifetime"])
        return JSONResponse({"access_token_lifetime": state.access_token_lifetime})

    @api.post(ctl + "/failures", include_in_schema=False)
    async def inject_failure(request: Request) -> Response:
        """{"status": 503|429|null, "times": 1, "path_prefix": "/calendar/v3/", "retry_after"?, "delay"?}"""
        body = await json_body(request)
        state.inject_failure(
            body.get("status"),
            times=int(body.get("times", 1)),
            path_prefix=body.get("path_prefix") or "/calendar/v3/",
            retry_after=body.get("retry_after"),
            delay=float(body.get("delay", 0.0)),
        )
        return Response(status_code=204)

    @api.delete(ctl + "/failures", include_in_schema=False)
    async def clear_failures() -> Response:
        state.clear_failures()
        return Response(status_code=204)

    @api.post(ctl + "/calendars/{calendar_id}/sync-tokens/invalidate", include_in_schema=False)
    async def invalidate(calendar_id: str) -> Response:
        state.invalidate_sync_tokens(calendar_id)
        return Response(status_code=204)

    @api.post(ctl + "/calendars/{calendar_id}/events", include_in_schema=False)
    async def person_creates(request: Request, calendar_id: str) -> Response:
        return JSONResponse(state.create_event(calendar_id, await json_body(request)))

    @api.post(ctl + "/calendars/{calendar_id}/events/bulk", include_in_schema=False)
    async def person_bulk_creates(request: Request, calendar_id: str) -> Response:
        """{"count", "start"?: RFC 3339, "duration_minutes"?: 30, "every_minutes"?: 60, "summary"?}"""
        body = await json_body(request)
        start = parse_instant(body["start"], "start") if body.get("start") else None
        created = state.bulk_create_events(
            calendar_id,
            int(body["count"]),
            start=start,
            duration=timedelta(minutes=float(body.get("duration_minutes", 30))),
            every=timedelta(minutes=float(body.get("every_minutes", 60))),
            summary=body.get("summary") or "Consulta",
        )
        return JSONResponse({"created": created})

    @api.patch(ctl + "/calendars/{calendar_id}/events/{event_id}", include_in_schema=False)
    async def person_edits(request: Request, calendar_id: str, event_id: str) -> Response:
        return JSONResponse(state.edit_event(calendar_id, event_id, await json_body(request)))

    @api.post(ctl + "/calendars/{calendar_id}/events/{event_id}/move", include_in_schema=False)
    async def person_moves(request: Request, calendar_id: str, event_id: str) -> Response:
        """{"start"?, "end"?: RFC 3339, "destination"?: calendar id}"""
        body = await json_body(request)
        moved = state.move_event(
            calendar_id,
            event_id,
            start=parse_instant(body["start"], "start") if body.get("start") else None,
            end=parse_instant(body["end"], "end") if body.get("end") else None,
            destination=body.get("destination"),
        )
        return JSONResponse(moved)

    @api.delete(ctl + "/calendars/{calendar_id}/events/{event_id}", include_in_schema=False)
    async def person_deletes(calendar_id: str, event_id: str) -> Response:
        state.remove_event(calendar_id, event_id)
        return Response(status_code=204)

    @api.get(ctl + "/pushes", include_in_schema=False)
    async def pushes() -> Response:
        return JSONResponse({"pushes": [vars(p) for p in state.push_log]})

    @api.get(ctl + "/channels", include_in_schema=False)
    async def channels() -> Response:
        moment = now()
        with state._lock:
            rows = [
                {
                    "id": c.id,
                    "resource_id": c.resource_id,
                    "calendar_id": c.calendar_id,
                    "address": c.address,
                    "expiration": rfc3339(c.expiration),
                    "live": c.live(moment),
                    "message_number": c.message_number,
                }
                for c in state.channels.values()
            ]
        return JSONResponse({"channels": rows})

    @api.get(ctl + "/request-counts", include_in_schema=False)
    async def request_counts() -> Response:
        with state._lock:
            return JSONResponse(dict(state.request_counts))

