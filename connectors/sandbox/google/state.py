"""Everything the Google emulator remembers: OAuth clients, consents, codes, grants and
tokens; accounts, their calendars and events; watch channels; injected failures.

``SandboxState`` holds it under one re-entrant lock (tests call into it while the
server runs); the resource families (``oauth``, ``events``, ``freebusy``,
``calendar_list``, ``channels``, ``control``) add their behaviour as mixins, and
:class:`connectors.sandbox.google.GoogleSandbox` puts them together.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import Response
from fastapi.responses import HTMLResponse

from connectors.sandbox.google.errors import ERROR_REASONS, GoogleApiError, not_found
from connectors.sandbox.google.push import PushSender
from connectors.sandbox.google.recurrence import Series

DEFAULT_CLIENT_ID = "sandbox-client.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
DEFAULT_ACCOUNT = "agenda@clinica-sandbox.example"
DEFAULT_TIME_ZONE = "America/Sao_Paulo"


@dataclass
class OAuthClientRecord:
    client_id: str
    client_secret: str
    # empty: any redirect URI is accepted (the default sandbox client)
    redirect_uris: tuple[str, ...] = ()


@dataclass
class AuthorizationRequest:
    request_id: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    offline: bool
    login_hint: str | None


@dataclass
class AuthorizationCode:
    code: str
    request: AuthorizationRequest
    account: str
    expires_at: datetime
    used: bool = False


@dataclass
class Grant:
    """One user's consent to one client; revoking it kills its refresh and access tokens."""

    refresh_token: str | None
    client_id: str
    account: str
    scopes: tuple[str, ...]
    revoked: bool = False
    refresh_calls: int = 0


@dataclass
class AccessTokenRecord:
    token: str
    grant: Grant
    expires_at: datetime
    revoked: bool = False

    def usable(self, now: datetime) -> bool:
        return not self.revoked and not self.grant.revoked and now < self.expires_at


@dataclass
class StoredEvent:
    resource: dict[str, Any]  # rendered once per change; list pages reuse it
    seq: int
    starts_at: datetime  # a recurring event: its first occurrence
    ends_at: datetime
    series: Series | None = None  # a recurring event's rule, this version
    # instance ids earlier versions of a recurring event had and this one has not
    dropped: frozenset[str] = frozenset()

    @property
    def cancelled(self) -> bool:
        return self.resource["status"] == "cancelled"

    @property
    def series_id(self) -> str | None:
        """For an instance (an exception stored on its own): its recurring event's id."""
        return self.resource.get("recurringEventId")


@dataclass
class Calendar:
    id: str
    account: str
    summary: str
    time_zone: str
    primary: bool
    events: dict[str, StoredEvent] = field(default_factory=dict)
    # change log in sequence order; an entry is stale once its event has a newer seq
    log_seqs: list[int] = field(default_factory=list)
    log_ids: list[str] = field(default_factory=list)
    # bumping it invalidates every sync token and page token issued before
    sync_epoch: int = 0
    # recurring event id -> ids of its instances stored on their own (changed or cancelled)
    exceptions: dict[str, set[str]] = field(default_factory=dict)

    @property
    def resource_id(self) -> str:
        return hashlib.sha1(self.id.encode(), usedforsecurity=False).hexdigest()[:27]


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    calendar_id: str
    account: str
    address: str
    token: str | None
    expiration: datetime
    message_number: int = 0
    stopped: bool = False

    def live(self, now: datetime) -> bool:
        return not self.stopped and now < self.expiration


@dataclass
class InjectedFailure:
    status: int | None  # None: only the delay
    remaining: int
    path_prefix: str
    retry_after: float | None = None
    delay: float = 0.0

    def response(self, path: str) -> Response:
        headers = {"Retry-After": f"{self.retry_after:g}"} if self.retry_after is not None else {}
        status = self.status or 500
        if not path.startswith("/calendar/"):
            # Google's OAuth servers fail with an HTML page, not JSON
            return HTMLResponse(f"<html><body>Error {status}</body></html>", status, headers=headers)
        domain, reason, message = ERROR_REASONS.get(status, ("global", "backendError", "Backend Error"))
        return GoogleApiError(status, message, reason, domain=domain, headers=headers).response()


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL, lower-cased, the port made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


class SandboxState:
    """All Google state. Methods are thread-safe: tests call them while the server runs."""

    def __init__(self, *, access_token_lifetime: int = 3600, push_timeout: float = 5.0,
                 local_origins: Iterable[str] = ()) -> None:
        # seconds; keep it above google-auth's 225 s refresh margin or every call refreshes
        self.access_token_lifetime = access_token_lifetime
        self.code_lifetime = 600
        self._lock = threading.RLock()
        self._seq = 0
        self.clients: dict[str, OAuthClientRecord] = {}
        self.auth_requests: dict[str, AuthorizationRequest] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.grants: dict[str, Grant] = {}  # by refresh token
        self.access_tokens: dict[str, AccessTokenRecord] = {}
        self.accounts: dict[str, list[str]] = {}  # e-mail -> calendar ids, primary first
        self.calendars: dict[str, Calendar] = {}
        self.channels: dict[str, Channel] = {}
        self.failures: list[InjectedFailure] = []
        # "METHOD path-template" -> calls, e.g. "GET /calendar/v3/calendars/{calendarId}/events"
        self.request_counts: Counter[str] = Counter()
        # the latest requests, oldest first: (method, path, query) as the client sent them
        self.requests: deque[tuple[str, str, dict[str, str]]] = deque(maxlen=500)
        # receivers the sandbox was told are local (the hub beside it): only these may
        # take pushes over plain http; Google itself delivers to HTTPS addresses only
        self.local_origins: set[str] = {origin_of(url) for url in local_origins}
        self._pushes = PushSender(push_timeout)
        self.register_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)

    def close(self) -> None:
        """Stop the push delivery thread."""
        self._pushes.close()

    def trust_local_origin(self, url: str) -> None:
        """Accept watch channels whose http:// address is on ``url``'s origin (a local receiver)."""
        with self._lock:
            self.local_origins.add(origin_of(url))

    # --- accounts and clients -------------------------------------------------------

    def register_client(
        self, client_id: str, client_secret: str, redirect_uris: Iterable[str] = ()
    ) -> OAuthClientRecord:
        with self._lock:
            record = OAuthClientRecord(client_id, client_secret, tuple(redirect_uris))
            self.clients[client_id] = record
            return record

    def seed_account(
        self,
        email: str,
        *,
        calendars: Iterable[str] = (),
        time_zone: str = DEFAULT_TIME_ZONE,
    ) -> list[str]:
        """Create the account (its primary calendar's id is the e-mail) plus secondary
        calendars named by ``calendars``; returns all its calendar ids. Idempotent."""
        with self._lock:
            if email not in self.accounts:
                self.accounts[email] = [email]
                self.calendars[email] = Calendar(email, email, email, time_zone, primary=True)
            for summary in calendars:
                existing = [cid for cid in self.accounts[email] if self.calendars[cid].summary == summary]
                if existing:
                    continue
                cid = f"{uuid.uuid4().hex[:26]}@group.calendar.google.com"
                self.calendars[cid] = Calendar(cid, email, summary, time_zone, primary=False)
                self.accounts[email].append(cid)
            return list(self.accounts[email])

    # --- lookups ----------------------------------------------------------------------

    def _calendar(self, calendar_id: str) -> Calendar:
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise not_found()
        return cal

    def _owned_calendar(self, account: str, calendar_id: str) -> Calendar:
        cal = self.calendars.get(account if calendar_id == "primary" else calendar_id)
        # another owner's calendar is indistinguishable from a missing one, as on Google
        if cal is None or cal.account != account:
            raise not_found()
        return cal

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _notify(self, cal: Calendar) -> None:
        """Tell the calendar's live channels that it changed (the channels mixin)."""
        raise NotImplementedError

    # --- injected failures ------------------------------------------------------------

    def inject_failure(
        self,
        status: int | None,
        *,
        times: int = 1,
        path_prefix: str = "/calendar/v3/",
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests whose path starts with ``path_prefix`` with
        ``status`` (5xx, 429 …) after ``delay`` seconds; ``status=None`` only delays (timeouts)."""
        with self._lock:
            self.failures.append(InjectedFailure(status, times, path_prefix, retry_after, delay))

    def clear_failures(self) -> None:
        with self._lock:
            self.failures.clear()

    def _take_failure(self, path: str) -> InjectedFailure | None:
        with self._lock:
            for failure in self.failures:
                if path.startswith(failure.path_prefix):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self.failures.remove(failure)
                    return failure
            return None
