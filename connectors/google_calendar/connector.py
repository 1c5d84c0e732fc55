"""Google Calendar connector: one tenant's calendar calls and Google's push webhooks."""

from __future__ import annotations

import base64
import hmac
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google.auth.transport
import google.oauth2.credentials
from pydantic import BaseModel, Field, SecretStr

from connectors.base import (
    CALENDAR_CHANGED,
    HealthCheck,
    InboundEvent,
    PermanentProviderError,
    ProviderError,
    WebhookRequest,
)
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
from connectors.google_calendar.credentials import GOOGLE_API_BASE, GoogleCalendarCredentials, GoogleOAuthClient
from connectors.google_calendar.errors import EventNotFound, GrantRevoked, translated_errors
from connectors.google_calendar.oauth import AccessToken, GoogleOAuth
from connectors.google_calendar.transport import calendar_service
from connectors.netguard import NetworkGuard

# Called with the access token that expired or was refused (None if there was none);
# returns a valid one. The hub passes one that refreshes under a per-connection lock and
# hands back the token another worker just stored instead of refreshing again.
TokenRefresher = Callable[[str | None], AccessToken]


def event_id_for(value: uuid.UUID) -> str:
    """A Google event id for one of our UUIDs: base32hex (``0-9a-v``), 26 characters.

    Deterministic, so a retried insert carries the same id and Google answers 409.
    """
    return base64.b32hexencode(value.bytes).decode("ascii").rstrip("=").lower()


def uuid_for_event_id(event_id: str) -> uuid.UUID | None:
    """The UUID behind an id made by :func:`event_id_for`; None for Google-made ids."""
    if len(event_id) != 26:
        return None
    try:
        return uuid.UUID(bytes=base64.b32hexdecode(event_id.upper() + "======"))
    except ValueError:
        return None


class GoogleCalendarConfig(BaseModel):
    calendar_id: str = Field(
        default="primary", title="Calendar", description="Which of the account's calendars the hub syncs."
    )


class GoogleCalendarConnector(CalendarConnector):
    """Google Calendar v3 through google-api-python-client.

    Build one per call from the tenant's credentials. Pass ``oauth_client`` (the platform's
    OAuth client) so expired tokens can be refreshed; with only ``base_url`` the sandbox's
    default client is assumed. After a refresh done here, ``self.credentials`` holds the
    new access token for the hub to store; pass ``token_refresher`` to own refreshing.
    """

    kind: ClassVar[str] = "google_calendar"
    display_name: ClassVar[str] = "Google Calendar"
    credentials_model: ClassVar[type[BaseModel]] = GoogleCalendarCredentials
    config_model: ClassVar[type[BaseModel] | None] = GoogleCalendarConfig
    webhook_secret_field: ClassVar[str | None] = "channel_token"
    event_types: ClassVar[frozenset[str]] = frozenset({CALENDAR_CHANGED})

    credentials: GoogleCalendarCredentials

    def __init__(
        self,
        *,
        credentials: BaseModel,
        config: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
        network: NetworkGuard | None = None,
        oauth_client: GoogleOAuthClient | None = None,
        token_refresher: TokenRefresher | None = None,
    ) -> None:
        super().__init__(credentials=credentials, config=config, base_url=base_url, timeout=timeout,
                         network=network)
        if oauth_client is None and base_url is not None:
            oauth_client = GoogleOAuthClient.for_sandbox(base_url)
        if oauth_client is None and token_refresher is None:
            raise ValueError("GoogleCalendarConnector needs oauth_client or token_refresher to refresh tokens")
        self.oauth_client = oauth_client
        self._token_refresher = token_refresher
        if base_url is not None:
            self.api_base = f"{base_url.rstrip('/')}/calendar/v3/"
        else:
            self.api_base = oauth_client.api_base if oauth_client else GOOGLE_API_BASE

    # --- tokens -------------------------------------------------------------------------

    @cached_property
    def _google_credentials(self) -> google.oauth2.credentials.Credentials:
        # No refresh token on purpose: google-auth then refreshes through our handler,
        # which the hub can route through its lock.
        access = self.credentials.access_token
        expiry = self.credentials.expiry
        return google.oauth2.credentials.Credentials(
            access.get_secret_value() if access else None,
            expiry=expiry.astimezone(UTC).replace(tzinfo=None) if expiry else None,
            scopes=list(self.credentials.scopes),
            refresh_handler=self._refresh_handler,
        )

    def _refresh_handler(self, request: google.auth.transport.Request, scopes: Any) -> tuple[str, datetime]:
        stale = self._google_credentials.token
        if self._token_refresher is not None:
            fresh = self._token_refresher(stale)
        else:
            assert self.oauth_client is not None  # checked in __init__
            oauth = GoogleOAuth(self.oauth_client, timeout=self.timeout)
            fresh = oauth.refresh(self.credentials.refresh_token.get_secret_value())
        self.credentials = self.credentials.model_copy(
            update={"access_token": SecretStr(fresh.token), "expiry": fresh.expiry}
        )
        return fresh.token, fresh.expiry.astimezone(UTC).replace(tzinfo=None)

    @cached_property
    def _service(self) -> Any:
        return calendar_service(self.api_base, self._google_credentials, timeout=self.timeout)

    def _execute(self, request: Any, *, if_match: str | None = None) -> Any:
        if if_match is not None:
            request.headers["If-Match"] = if_match
        with translated_errors():
            return request.execute()

    # --- provider calls ------------------------------------------------------------------

    def check(self) -> HealthCheck:
        try:
            calendars = self.list_calendars()
        except GrantRevoked:
            return HealthCheck(False, "Google access was revoked; the tenant must reconnect")
        except ProviderError as exc:
            return HealthCheck(False, f"Google Calendar unavailable: {exc.message}")
        return HealthCheck(True, f"{len(calendars)} calendars visible to {self.credentials.account_email}")

    def list_calendars(self) -> list[CalendarInfo]:
        calendars: list[CalendarInfo] = []
        page_token: str | None = None
        while True:
            page = self._execute(self._service.calendarList().list(pageToken=page_token))
            calendars += [
                CalendarInfo(
                    id=item["id"],
                    summary=item.get("summaryOverride") or item.get("summary", ""),
                    time_zone=item.get("timeZone"),
                    primary=bool(item.get("primary")),
                    access_role=item.get("accessRole", ""),
                )
                for item in page.get("items", [])
            ]
            page_token = page.get("nextPageToken")
            if not page_token:
                return calendars

    def get_event(self, calendar_id: str, event_id: str) -> CalendarEvent | None:
        try:
            resource = self._execute(self._service.events().get(calendarId=calendar_id, eventId=event_id))
        except EventNotFound:
            return None
        return event_from_google(resource)

    def insert_event(self, calendar_id: str, event_id: str, details: EventDetails) -> InsertOutcome:
        body = event_to_google(details) | {"id": event_id}
        request = self._service.events().insert(calendarId=calendar_id, body=body)
        try:
            return InsertOutcome(event_from_google(self._execute(request)), created=True)
        except PermanentProviderError as exc:
            if exc.status != 409:
                raise
        # 409: the id exists, most likely our own earlier attempt whose answer was lost
        existing = self.get_event(calendar_id, event_id)
        if existing is None:
            raise PermanentProviderError(f"event id {event_id} is taken but unreadable", code="duplicate", status=409)
        return InsertOutcome(existing, created=False)

    def patch_event(
        self, calendar_id: str, event_id: str, details: EventDetails, *, if_match: str | None = None
    ) -> CalendarEvent:
        request = self._service.events().patch(calendarId=calendar_id, eventId=event_id, body=event_to_google(details))
        return event_from_google(self._execute(request, if_match=if_match))

    def delete_event(self, calendar_id: str, event_id: str, *, if_match: str | None = None) -> bool:
        request = self._service.events().delete(calendarId=calendar_id, eventId=event_id)
        try:
            self._execute(request, if_match=if_match)
        except EventNotFound:
            return False
        except PermanentProviderError as exc:
            if exc.status == 410:  # "Resource has been deleted"
                return False
            raise
        return True

    def freebusy(self, calendar_id: str, time_min: datetime, time_max: datetime) -> list[BusyInterval]:
        body = {
            "timeMin": _instant(time_min),
            "timeMax": _instant(time_max),
            "timeZone": "UTC",
            "items": [{"id": calendar_id}],
        }
        answer = self._execute(self._service.freebusy().query(body=body))
        calendar = answer.get("calendars", {}).get(calendar_id, {})
        if calendar.get("errors"):
            reason = calendar["errors"][0].get("reason")
            error_type = EventNotFound if reason == "notFound" else PermanentProviderError
            raise error_type(f"free/busy refused for {calendar_id}: {reason}", code=reason)
        return [BusyInterval(_parse_instant(b["start"]), _parse_instant(b["end"])) for b in calendar.get("busy", [])]

    def iter_changes(
        self,
        calendar_id: str,
        sync_token: str | None = None,
        *,
        page_size: int = 250,
        include_cancelled: bool = False,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        single_events: bool = True,
    ) -> Iterator[CalendarEvent | SyncCheckpoint]:
        """Stream events page by page, then one :class:`SyncCheckpoint`.

        Without ``sync_token`` this is a full sync of the window ``time_min``–``time_max``
        (cancelled events only with ``include_cancelled``: events deleted long ago may be
        gone, so reconcile by absence); with one, everything changed since, deletions
        included, and no window: Google refuses ``timeMin``/``timeMax`` with a sync token,
        so a token keeps the window of the full sync that began it. ``single_events``
        expands recurring events into their instances (Google's ``singleEvents``), keep
        it the same for a full sync and the incremental ones after it. Raises
        ``SyncTokenInvalid`` on 410: discard the token and call again without one. Only
        the current page is held: the next is fetched when this one is consumed.
        """
        if sync_token is not None and (time_min is not None or time_max is not None):
            raise ValueError("a sync token cannot be combined with a time window")
        page_token: str | None = None
        while True:
            request = self._service.events().list(
                calendarId=calendar_id,
                maxResults=page_size,
                pageToken=page_token,
                syncToken=sync_token,
                showDeleted=include_cancelled if sync_token is None else None,
                singleEvents=single_events or None,
                timeMin=_instant(time_min) if time_min is not None else None,
                timeMax=_instant(time_max) if time_max is not None else None,
            )
            page = self._execute(request)
            items: list[dict[str, Any]] = page.get("items", [])
            page_token = page.get("nextPageToken")
            next_sync_token = page.get("nextSyncToken")
            del page, request
            # pop as we go, so consumed events can be freed before the page ends
            items.reverse()
            while items:
                yield event_from_google(items.pop())
            if page_token is None:
                if not next_sync_token:
                    raise PermanentProviderError("last page carried no nextSyncToken", code="no_sync_token")
                yield SyncCheckpoint(next_sync_token)
                return

    def watch(
        self,
        calendar_id: str,
        *,
        channel_id: str,
        address: str,
        token: str,
        ttl: timedelta = timedelta(days=7),
    ) -> WatchChannel:
        """Open a push channel; register ``channel_id`` as the route key before calling,
        since Google sends the first (``sync``) notification at once."""
        body = {
            "id": channel_id,
            "type": "web_hook",
            "address": address,
            "token": token,
            "params": {"ttl": str(int(ttl.total_seconds()))},
        }
        answer = self._execute(self._service.events().watch(calendarId=calendar_id, body=body))
        expiration = answer.get("expiration")
        return WatchChannel(
            id=answer["id"],
            resource_id=answer["resourceId"],
            resource_uri=answer.get("resourceUri", ""),
            expiration=datetime.fromtimestamp(int(expiration) / 1000, UTC) if expiration else None,
        )

    def stop_channel(self, channel_id: str, resource_id: str) -> bool:
        """Stop pushes on a channel. False when Google no longer knows it (expired)."""
        try:
            self._execute(self._service.channels().stop(body={"id": channel_id, "resourceId": resource_id}))
        except EventNotFound:
            return False
        return True

    # --- webhooks ------------------------------------------------------------------------

    @classmethod
    def route_keys(cls, request: WebhookRequest) -> list[str]:
        channel_id = request.headers.get("x-goog-channel-id")
        return [channel_id] if channel_id else []

    @classmethod
    def verify(cls, request: WebhookRequest, secret: str) -> bool:
        """Google signs nothing: the channel token we chose comes back in a header."""
        token = request.headers.get("x-goog-channel-token")
        if not token or not secret:
            return False
        return hmac.compare_digest(token.encode(), secret.encode())

    @classmethod
    def parse(cls, request: WebhookRequest) -> list[InboundEvent]:
        """One ``calendar.changed`` per notification. Google says only *that* something
        changed; the hub pulls with its sync token. The first message of a channel
        (``resource_state == "sync"``) announces the channel and changes nothing: it
        comes through flagged ``handshake: True`` so the hub can acknowledge and skip it.
        """
        headers = request.headers
        channel_id = headers.get("x-goog-channel-id")
        number = headers.get("x-goog-message-number", "")
        if not channel_id or not number.isdigit():
            return []
        state = headers.get("x-goog-resource-state", "")
        data: dict[str, Any] = {
            "channel_id": channel_id,
            "resource_id": headers.get("x-goog-resource-id"),
            "resource_uri": headers.get("x-goog-resource-uri"),
            "resource_state": state,
            "message_number": int(number),
            "handshake": state == "sync",
            "channel_expiration": _expiration(headers.get("x-goog-channel-expiration")),
        }
        return [InboundEvent(CALENDAR_CHANGED, f"{channel_id}:{number}", data)]


# --- wire format ---------------------------------------------------------------------------


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one")
    return moment.isoformat()


def _parse_instant(raw: str) -> datetime:
    return datetime.fromisoformat(raw).astimezone(UTC)


def _expiration(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw).astimezone(UTC).isoformat()
    except (TypeError, ValueError):
        return None


def _time_to_google(value: datetime | date, time_zone: str | None) -> dict[str, str]:
    if isinstance(value, datetime):
        moment = {"dateTime": _instant(value)}
        return moment | {"timeZone": time_zone} if time_zone else moment
    return {"date": value.isoformat()}


def event_to_google(details: EventDetails) -> dict[str, Any]:
    """The Calendar v3 body for the fields set in ``details``."""
    body: dict[str, Any] = {}
    for name in ("summary", "description", "location", "status", "transparency"):
        value = getattr(details, name)
        if value is not None:
            body[name] = value
    if details.start is not None:
        body["start"] = _time_to_google(details.start, details.time_zone)
    if details.end is not None:
        body["end"] = _time_to_google(details.end, details.time_zone)
    if details.attendees is not None:
        body["attendees"] = [{"email": email} for email in details.attendees]
    if details.private_properties is not None:
        body["extendedProperties"] = {"private": dict(details.private_properties)}
    return body


def _time_from_google(value: Mapping[str, Any] | None) -> datetime | date | None:
    if not value:
        return None
    if value.get("dateTime"):
        moment = datetime.fromisoformat(value["dateTime"])
        if moment.tzinfo is None:
            try:
                moment = moment.replace(tzinfo=ZoneInfo(value.get("timeZone") or "UTC"))
            except ZoneInfoNotFoundError:
                moment = moment.replace(tzinfo=UTC)
        return moment
    if value.get("date"):
        return date.fromisoformat(value["date"])
    return None


def event_from_google(resource: Mapping[str, Any]) -> CalendarEvent:
    start = resource.get("start") or {}
    return CalendarEvent(
        id=resource["id"],
        status=resource.get("status", "confirmed"),
        summary=resource.get("summary"),
        description=resource.get("description"),
        location=resource.get("location"),
        start=_time_from_google(resource.get("start")),
        end=_time_from_google(resource.get("end")),
        time_zone=start.get("timeZone"),
        transparency=resource.get("transparency", "opaque"),
        updated=_parse_instant(resource["updated"]) if resource.get("updated") else None,
        etag=resource.get("etag"),
        private_properties=dict((resource.get("extendedProperties") or {}).get("private") or {}),
        recurring_event_id=resource.get("recurringEventId"),
        original_start=_time_from_google(resource.get("originalStartTime")),
        html_link=resource.get("htmlLink"),
        raw=resource,
    )
