"""Google emulator: OAuth 2.0 (consent page, token, revoke, userinfo) and Calendar API v3.

Paths are Google's own, so the real libraries only need their base URL changed:

- ``GET  /o/oauth2/v2/auth``       consent page (Approve / Deny forms)          ``oauth``
- ``POST /token``                  authorization_code (PKCE), refresh_token      ``oauth``
- ``POST /revoke?token=``          revokes the whole grant, as Google does       ``oauth``
- ``GET  /oauth2/v3/userinfo``     the account e-mail (``email``/``openid``)     ``oauth``
- ``/calendar/v3/calendars/{id}/events…``  insert, get, patch, update, delete  ``events``
- ``GET …/events``, ``GET …/events/{id}/instances``  list, sync, instances        ``listing``
  (recurring events are stored once and expanded as Google does: ``recurrence``)
- ``POST /calendar/v3/freeBusy``                                                 ``freebusy``
- ``GET  /calendar/v3/users/me/calendarList``, ``calendars/{id}``                ``calendar_list``
- ``POST …/events/watch``, ``POST /calendar/v3/channels/stop``                   ``channels``
- ``/_sandbox/google/…``           controls for tests and demos                  ``control``

State lives in ``state`` (one lock for all of it); pushes leave from ``push``'s thread.
``README.md`` beside this file maps each behaviour to Google's documentation.
"""

from __future__ import annotations

from fastapi import APIRouter

from connectors.sandbox.google import calendar_list, channels, control, events, freebusy, listing, oauth
from connectors.sandbox.google.errors import GoogleApiError, OAuthError
from connectors.sandbox.google.push import PushRecord
from connectors.sandbox.google.routing import google_route_class
from connectors.sandbox.google.state import (
    DEFAULT_ACCOUNT,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TIME_ZONE,
)

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TIME_ZONE",
    "GoogleApiError",
    "GoogleSandbox",
    "OAuthError",
    "PushRecord",
    "router",
]


class GoogleSandbox(
    oauth.OAuthServer,
    control.Controls,
    listing.EventListing,
    freebusy.FreeBusy,
    calendar_list.CalendarDirectory,
    channels.Channels,
):
    """All Google state. Methods are thread-safe: tests call them while the server runs."""


def router(state: GoogleSandbox) -> APIRouter:
    """Google's OAuth and Calendar v3 endpoints plus ``/_sandbox/google/`` controls."""
    api = APIRouter(route_class=google_route_class(state))
    for family in (oauth, calendar_list, listing, events, channels, freebusy, control):
        family.add_routes(api, state)
    return api
