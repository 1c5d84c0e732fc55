"""Calendar v3 push channels: ``events.watch`` and ``channels.stop``, and the
notifications every change to a watched calendar sends (``sync`` when the channel
opens, then ``exists``).

Sources: https://developers.google.com/workspace/calendar/api/guides/push (the watch
request and answer, ``params.ttl``, the notification headers, stopping a channel with
its ``id`` and ``resourceId``) and the discovery document's ``Channel`` schema
(``type`` is ``web_hook`` or ``webhook``).

The receiving URL must be HTTPS ("This is an HTTPS server that handles the API
notification messages", push guide, Overview); Google refuses another address with 400
``push.webhookUrlNotHttps`` "WebHook callback must be HTTPS: <address>" (the reason and
message developers report from the live API and match on in open-source calendar
integrations; the reference itself gives no body). The sandbox does the same, except for an http:// address
on an origin it was told is local (``trust_local_origin``: the hub it was started beside).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox.google.errors import GoogleApiError, bad_request, not_found
from connectors.sandbox.google.push import Push
from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import READ_EVENTS
from connectors.sandbox.google.state import Calendar, Channel, SandboxState, origin_of
from connectors.sandbox.google.wire import int_param, json_body, now

CHANNEL_ID = re.compile(r"^[A-Za-z0-9\-_+/=]{1,64}$")


class Channels(SandboxState):
    def watch(self, account: str, calendar_id: str, body: Mapping[str, Any], base_url: str) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            channel_id = body.get("id") or ""
            if not CHANNEL_ID.match(channel_id):
                raise bad_request("Invalid channel id.", location="id")
            if channel_id in self.channels:
                raise bad_request(f"Channel id {channel_id} not unique")
            if body.get("type") not in ("web_hook", "webhook"):
                raise bad_request("Invalid value for: type.", location="type")
            address = body.get("address") or ""
            parts = urlsplit(address)
            if not parts.scheme or not parts.hostname:
                raise bad_request("Invalid address.", location="address")
            if parts.scheme != "https" and origin_of(address) not in self.local_origins:
                raise GoogleApiError(400, f"WebHook callback must be HTTPS: {address}", "push.webhookUrlNotHttps")
            ttl = int_param(body.get("params") or {}, "ttl", 604800, low=1, high=10**9)
            expiration = now() + timedelta(seconds=ttl)
            if body.get("expiration"):
                requested = datetime.fromtimestamp(int(body["expiration"]) / 1000, UTC)
                expiration = min(expiration, requested)
            resource_uri = f"{base_url.rstrip('/')}/calendar/v3/calendars/{quote(cal.id, safe='')}/events?alt=json"
            channel = Channel(
                channel_id, cal.resource_id, resource_uri, cal.id, account, address, body.get("token"), expiration
            )
            self.channels[channel_id] = channel
            self._push(channel, "sync")
            answer = {
                "kind": "api#channel",
                "id": channel.id,
                "resourceId": channel.resource_id,
                "resourceUri": channel.resource_uri,
                "expiration": str(int(expiration.timestamp() * 1000)),
            }
            if channel.token is not None:
                answer["token"] = channel.token
            return answer

    def stop_channel(self, account: str, body: Mapping[str, Any]) -> None:
        with self._lock:
            channel = self.channels.get(body.get("id") or "")
            if channel is None or channel.stopped or channel.resource_id != body.get("resourceId"):
                raise not_found(f"Channel '{body.get('id')}' not found for project 'sandbox'")
            if channel.account != account:
                raise GoogleApiError(403, "Incorrect OAuth client for this channel.", "forbidden")
            channel.stopped = True

    def _notify(self, cal: Calendar) -> None:
        moment = now()
        for channel in self.channels.values():
            if channel.calendar_id == cal.id and channel.live(moment):
                self._push(channel, "exists")

    def _push(self, channel: Channel, resource_state: str) -> None:
        # numbered under the state lock, so numbers increase in the order pushes are queued
        channel.message_number += 1
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": format_datetime(channel.expiration, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": resource_state,
            "X-Goog-Message-Number": str(channel.message_number),
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        self._pushes.submit(Push(channel.address, headers, channel.id, resource_state, channel.message_number))


def add_routes(api: APIRouter, state: Channels) -> None:
    """``POST …/events/watch`` and ``POST /calendar/v3/channels/stop``."""
    cal = "/calendar/v3"

    @api.post(cal + "/calendars/{calendarId}/events/watch", include_in_schema=False)
    async def events_watch(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(state, request, READ_EVENTS)
        base = str(request.base_url)
        return JSONResponse(state.watch(account, calendarId, await json_body(request), base))

    @api.post(cal + "/channels/stop", include_in_schema=False)
    async def channels_stop(request: Request) -> Response:
        account = bearer(state, request, READ_EVENTS)
        state.stop_channel(account, await json_body(request))
        return Response(status_code=204)
