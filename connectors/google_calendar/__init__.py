"""Google Calendar: per-tenant OAuth connection, two-way event sync, push channels.

The hub calls :class:`GoogleOAuth` to connect a tenant and :class:`GoogleCalendarConnector`
(built per call from the sealed :class:`GoogleCalendarCredentials`) for everything else.
"""

from connectors.google_calendar.calendar import (
    BusyInterval,
    CalendarConnector,
    CalendarEvent,
    CalendarInfo,
    EventDetails,
    InsertOutcome,
    SyncCheckpoint,
    WatchChannel,
)
from connectors.google_calendar.connector import (
    GoogleCalendarConfig,
    GoogleCalendarConnector,
    TokenRefresher,
    event_from_google,
    event_id_for,
    event_to_google,
    uuid_for_event_id,
)
from connectors.google_calendar.credentials import DEFAULT_SCOPES, GoogleCalendarCredentials, GoogleOAuthClient
from connectors.google_calendar.errors import (
    AuthorizationCodeRejected,
    EventNotFound,
    GrantRevoked,
    StaleEtag,
    SyncTokenInvalid,
)
from connectors.google_calendar.oauth import AccessToken, GoogleOAuth

__all__ = [
    "DEFAULT_SCOPES",
    "AccessToken",
    "AuthorizationCodeRejected",
    "BusyInterval",
    "CalendarConnector",
    "CalendarEvent",
    "CalendarInfo",
    "EventDetails",
    "EventNotFound",
    "GoogleCalendarConfig",
    "GoogleCalendarConnector",
    "GoogleCalendarCredentials",
    "GoogleOAuth",
    "GoogleOAuthClient",
    "GrantRevoked",
    "InsertOutcome",
    "StaleEtag",
    "SyncCheckpoint",
    "SyncTokenInvalid",
    "TokenRefresher",
    "WatchChannel",
    "event_from_google",
    "event_id_for",
    "event_to_google",
    "uuid_for_event_id",
]
