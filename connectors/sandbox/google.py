"""Google emulator: OAuth 2.0 (consent page, token, revoke, userinfo) and Calendar API v3.

Paths are Google's own, so the real libraries only need their base URL changed:

- ``GET  /o/oauth2/v2/auth``       consent page (Approve / Deny forms)
- ``POST /token``                  authorization_code (PKCE) and refresh_token grants
- ``POST /revoke?token=``          revokes the whole grant, as Google does
- ``GET  /oauth2/v3/userinfo``     the account e-mail (needs an ``email``/``openid`` scope, like Google)
- ``/calendar/v3/...``             calendarList, calendars.get, events (insert, get, patch,
                                   update, delete, list, watch), freeBusy, channels.stop

Control, for tests and demos, lives on :class:`GoogleSandbox` (Python) and under
``/_sandbox/google/`` (HTTP): seed accounts and calendars, edit events "in Google" as a
person would, revoke grants, expire tokens, invalidate sync tokens, inject failures.
Every change to a watched calendar is pushed to its channels from a delivery thread, so
neither the event loop nor the caller waits on the receiver.

Deliberate simplifications: recurring events are stored but never expanded
(``singleEvents`` is accepted and ignored); all-day events are placed in UTC for
``timeMin``/``timeMax`` and free/busy; a failed push is logged, not retried.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import html
import json
import queue
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute

DEFAULT_CLIENT_ID = "sandbox-client.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
DEFAULT_ACCOUNT = "agenda@clinica-sandbox.example"
DEFAULT_TIME_ZONE = "America/Sao_Paulo"

SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"
SCOPE_CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"
SCOPE_EVENTS_READONLY = "https://www.googleapis.com/auth/calendar.events.readonly"
SCOPE_FREEBUSY = "https://www.googleapis.com/auth/calendar.freebusy"

# Any one of a set is enough, as in Google's per-method scope lists.
_READ_EVENTS = frozenset({SCOPE_CALENDAR, SCOPE_CALENDAR_READONLY, SCOPE_EVENTS, SCOPE_EVENTS_READONLY})
_WRITE_EVENTS = frozenset({SCOPE_CALENDAR, SCOPE_EVENTS})
_READ_CALENDARS = frozenset({SCOPE_CALENDAR, SCOPE_CALENDAR_READONLY})
_FREEBUSY = _READ_EVENTS | {SCOPE_FREEBUSY}
_USERINFO = frozenset({"openid", "email", "https://www.googleapis.com/auth/userinfo.email"})

_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9\-_+/=]{1,64}$")
# Fields a client may write; everything else on an event is the server's.
_WRITABLE = (
    "summary",
    "description",
    "location",
    "start",
    "end",
    "status",
    "transparency",
    "visibility",
    "attendees",
    "extendedProperties",
    "recurrence",
    "reminders",
    "colorId",
    "source",
)
_FORBIDDEN_WITH_SYNC_TOKEN = (
    "timeMin",
    "timeMax",
    "updatedMin",
    "iCalUID",
    "orderBy",
    "q",
    "privateExtendedProperty",
    "sharedExtendedProperty",
)
_ERROR_REASONS = {
    429: ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("global", "backendError", "Backend Error"),
    502: ("global", "backendError", "Bad Gateway"),
    503: ("global", "backendError", "Service Unavailable"),
    504: ("global", "backendError", "Gateway Timeout"),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _rfc3339_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode_token(payload: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _decode_token(token: str) -> dict[str, Any] | None:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None


# --- errors in Google's two wire shapes --------------------------------------------


class GoogleApiError(Exception):
    """An API error as googleapis.com answers it: ``{"error": {"errors": [...], "code", "message"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        *,
        domain: str = "global",
        location: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.domain = domain
        self.location = location
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        error: dict[str, str] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location:
            error |= {"locationType": "parameter", "location": self.location}
        body = {"error": {"errors": [error], "code": self.status, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class OAuthError(Exception):
    """A token/revoke endpoint error: ``{"error", "error_description"}`` (RFC 6749 §5.2)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "error_description": self.description}, status_code=self.status)


def _not_found(what: str = "Not Found") -> GoogleApiError:
    return GoogleApiError(404, what, "notFound")


def _bad_request(message: str, *, location: str | None = None) -> GoogleApiError:
    return GoogleApiError(400, message, "invalid", location=location)


# --- state --------------------------------------------------------------------------


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
    starts_at: datetime
    ends_at: datetime

    @property
    def cancelled(self) -> bool:
        return self.resource["status"] == "cancelled"


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
        domain, reason, message = _ERROR_REASONS.get(status, ("global", "backendError", "Backend Error"))
        return GoogleApiError(status, message, reason, domain=domain, headers=headers).response()


@dataclass(frozen=True)
class PushRecord:
    channel_id: str
    address: str
    resource_state: str
    message_number: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class _Push:
    address: str
    headers: dict[str, str]
    channel_id: str
    resource_state: str
    message_number: int


class _PushSender:
    """Delivers push notifications in order from one daemon thread."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._queue: queue.Queue[_Push | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Condition()
        self.log: list[PushRecord] = []

    def submit(self, push: _Push) -> None:
        with self._idle:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="google-sandbox-push", daemon=True)
                self._thread.start()
            self._pending += 1
        self._queue.put(push)

    def _run(self) -> None:
        # trust_env=False: a proxy from the environment must not intercept local deliveries
        with httpx.Client(timeout=self._timeout, trust_env=False) as client:
            while (push := self._queue.get()) is not None:
                status: int | None = None
                error: str | None = None
                try:
                    status = client.post(push.address, headers=push.headers, content=b"").status_code
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                record = PushRecord(
                    push.channel_id, push.address, push.resource_state, push.message_number, status, error
                )
                with self._idle:
                    self.log.append(record)
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(self._timeout + 1)


class GoogleSandbox:
    """All Google state. Methods are thread-safe: tests call them while the server runs."""

    def __init__(self, *, access_token_lifetime: int = 3600, push_timeout: float = 5.0) -> None:
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
        self._pushes = _PushSender(push_timeout)
        self.register_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)

    def close(self) -> None:
        """Stop the push delivery thread."""
        self._pushes.close()

    # --- control: accounts, clients ---------------------------------------------

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

    # --- control: OAuth ----------------------------------------------------------

    def approve(self, authorization_url: str, *, account: str | None = None) -> str:
        """Consent as ``account`` to an authorization URL; returns the redirect URL
        carrying ``code`` and ``state``."""
        request = self._authorization_request(_query_of(authorization_url))
        return self._decide(request.request_id, account=account, approved=True)

    def deny(self, authorization_url: str) -> str:
        """Refuse consent; returns the redirect URL carrying ``error=access_denied``."""
        request = self._authorization_request(_query_of(authorization_url))
        return self._decide(request.request_id, account=None, approved=False)

    def revoke_grant(self, *, refresh_token: str | None = None, account: str | None = None) -> int:
        """Revoke grants (by refresh token, or every grant of an account), as a user does
        at myaccount.google.com. Returns how many were revoked."""
        with self._lock:
            hits = [
                g
                for g in self._all_grants()
                if not g.revoked
                and (refresh_token is None or g.refresh_token == refresh_token)
                and (account is None or g.account == account)
            ]
            for grant in hits:
                grant.revoked = True
            return len(hits)

    def expire_access_tokens(self, *, account: str | None = None) -> int:
        """Make current access tokens expire now (the next API call gets 401)."""
        with self._lock:
            hits = [t for t in self.access_tokens.values() if account is None or t.grant.account == account]
            past = _now() - timedelta(seconds=1)
            for token in hits:
                token.expires_at = past
            return len(hits)

    def refresh_count(self, refresh_token: str) -> int:
        """How many refresh_token grant requests named this token (failed ones included)."""
        with self._lock:
            grant = self.grants.get(refresh_token)
            return grant.refresh_calls if grant else 0

    # --- control: failures and sync tokens ----------------------------------------

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

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        """Every sync token (and page token) issued for the calendar now answers 410."""
        with self._lock:
            self._calendar(calendar_id).sync_epoch += 1

    def _take_failure(self, path: str) -> InjectedFailure | None:
        with self._lock:
            for failure in self.failures:
                if path.startswith(failure.path_prefix):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self.failures.remove(failure)
                    return failure
            return None

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
                    raise _not_found()
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
                raise _bad_request("Cannot move an event to a calendar of another owner.")
            body = {k: v for k, v in cal.events[event_id].resource.items() if k in _WRITABLE}
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
            first = start or _now().replace(minute=0, second=0, microsecond=0)
            now = _now()
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
                    now,
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

    # --- OAuth internals --------------------------------------------------------------

    def _all_grants(self) -> Iterable[Grant]:
        seen: dict[int, Grant] = {id(g): g for g in self.grants.values()}
        seen |= {id(t.grant): t.grant for t in self.access_tokens.values()}
        return seen.values()

    def _authorization_request(self, query: Mapping[str, str]) -> AuthorizationRequest:
        with self._lock:
            client = self.clients.get(query.get("client_id", ""))
            if client is None:
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            redirect_uri = query.get("redirect_uri", "")
            if not redirect_uri or (client.redirect_uris and redirect_uri not in client.redirect_uris):
                raise OAuthError(400, "redirect_uri_mismatch", "Invalid redirect_uri for this client.")
            if query.get("response_type") != "code":
                raise OAuthError(400, "unsupported_response_type", "response_type must be 'code'.")
            scopes = tuple(query.get("scope", "").split())
            if not scopes:
                raise OAuthError(400, "invalid_request", "Missing required parameter: scope")
            method = query.get("code_challenge_method")
            if query.get("code_challenge") and method not in (None, "S256", "plain"):
                raise OAuthError(400, "invalid_request", "Unsupported code_challenge_method.")
            request = AuthorizationRequest(
                request_id=secrets.token_urlsafe(12),
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                state=query.get("state"),
                code_challenge=query.get("code_challenge"),
                code_challenge_method=(method or "plain") if query.get("code_challenge") else None,
                offline=query.get("access_type") == "offline",
                login_hint=query.get("login_hint"),
            )
            self.auth_requests[request.request_id] = request
            return request

    def _decide(self, request_id: str, *, account: str | None, approved: bool) -> str:
        with self._lock:
            request = self.auth_requests.pop(request_id, None)
            if request is None:
                raise OAuthError(400, "invalid_request", "Unknown or already answered consent request.")
            params: dict[str, str] = {}
            if approved:
                email = account or request.login_hint or DEFAULT_ACCOUNT
                self.seed_account(email)
                code = "4/" + secrets.token_urlsafe(24)
                expires = _now() + timedelta(seconds=self.code_lifetime)
                self.codes[code] = AuthorizationCode(code, request, email, expires)
                params |= {"code": code, "scope": " ".join(request.scopes)}
            else:
                params["error"] = "access_denied"
            if request.state is not None:
                params["state"] = request.state
            separator = "&" if urlsplit(request.redirect_uri).query else "?"
            return f"{request.redirect_uri}{separator}{urlencode(params)}"

    def _client_from(self, headers: Mapping[str, str], form: Mapping[str, str]) -> OAuthClientRecord:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "Malformed Basic credentials.") from None
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, client_secret = unquote(raw_id), unquote(raw_secret)
        client = self.clients.get(client_id or "")
        if client is None or not secrets.compare_digest(client.client_secret, client_secret or ""):
            raise OAuthError(401, "invalid_client", "Unauthorized")
        return client

    def _issue_access_token(self, grant: Grant) -> AccessTokenRecord:
        token = "ya29." + secrets.token_urlsafe(32)
        expires = _now() + timedelta(seconds=self.access_token_lifetime)
        record = AccessTokenRecord(token, grant, expires)
        self.access_tokens[token] = record
        return record

    def _token_answer(self, record: AccessTokenRecord, *, refresh_token: str | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "access_token": record.token,
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(record.grant.scopes),
            "token_type": "Bearer",
        }
        if refresh_token is not None:
            answer["refresh_token"] = refresh_token
        return answer

    def token_grant(self, headers: Mapping[str, str], form: Mapping[str, str]) -> dict[str, Any]:
        """The token endpoint (authorization_code and refresh_token grants)."""
        with self._lock:
            grant_type = form.get("grant_type")
            if grant_type == "refresh_token":
                # counted before any check: the hub measures attempts, not successes
                grant = self.grants.get(form.get("refresh_token", ""))
                if grant is not None:
                    grant.refresh_calls += 1
            client = self._client_from(headers, form)
            if grant_type == "authorization_code":
                return self._exchange_code(client, form)
            if grant_type == "refresh_token":
                return self._refresh(client, form)
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _exchange_code(self, client: OAuthClientRecord, form: Mapping[str, str]) -> dict[str, Any]:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used or _now() >= code.expires_at:
            raise OAuthError(400, "invalid_grant", "Malformed auth code.")
        if code.request.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Unauthorized client for this code.")
        if form.get("redirect_uri") != code.request.redirect_uri:
            raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
        if code.request.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError(400, "invalid_request", "code_verifier is required.")
            if code.request.code_challenge_method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            else:
                computed = verifier
            if not secrets.compare_digest(computed, code.request.code_challenge):
                raise OAuthError(400, "invalid_grant", "Invalid code verifier.")
        code.used = True  # single use; a wrong verifier above leaves it to its rightful holder
        refresh_token = ("1//" + secrets.token_urlsafe(32)) if code.request.offline else None
        grant = Grant(refresh_token, client.client_id, code.account, code.request.scopes)
        if refresh_token is not None:
            self.grants[refresh_token] = grant
        return self._token_answer(self._issue_access_token(grant), refresh_token=refresh_token)

    def _refresh(self, client: OAuthClientRecord, form: Mapping[str, str]) -> dict[str, Any]:
        grant = self.grants.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        if grant.client_id != client.client_id:
            raise OAuthError(400, "unauthorized_client", "Unauthorized")
        asked = set(form.get("scope", "").split())
        if asked - set(grant.scopes):
            raise OAuthError(400, "invalid_scope", "Scope not granted for this refresh token.")
        return self._token_answer(self._issue_access_token(grant), refresh_token=None)

    def revoke_token(self, token: str) -> None:
        """The revoke endpoint: either token of a grant revokes the whole grant."""
        with self._lock:
            grant = self.grants.get(token)
            if grant is None and token in self.access_tokens:
                grant = self.access_tokens[token].grant
            if grant is None or grant.revoked:
                raise OAuthError(400, "invalid_token", "Token expired or revoked")
            grant.revoked = True

    def authenticate(self, authorization: str | None, allowed: frozenset[str]) -> AccessTokenRecord:
        """The bearer token of an API call, checked for life and scope."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise GoogleApiError(
                401,
                "Request is missing required authentication credential.",
                "required",
                location="Authorization",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        with self._lock:
            record = self.access_tokens.get(authorization[7:].strip())
            if record is None or not record.usable(_now()):
                raise GoogleApiError(
                    401,
                    "Invalid Credentials",
                    "authError",
                    location="Authorization",
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
                )
            if not allowed & set(record.grant.scopes):
                raise GoogleApiError(403, "Request had insufficient authentication scopes.", "insufficientPermissions")
            return record

    # --- Calendar internals ------------------------------------------------------------

    def _calendar(self, calendar_id: str) -> Calendar:
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise _not_found()
        return cal

    def _owned_calendar(self, account: str, calendar_id: str) -> Calendar:
        cal = self.calendars.get(account if calendar_id == "primary" else calendar_id)
        # another owner's calendar is indistinguishable from a missing one, as on Google
        if cal is None or cal.account != account:
            raise _not_found()
        return cal

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _store(
        self,
        cal: Calendar,
        event_id: str,
        fields: Mapping[str, Any],
        now: datetime,
        *,
        created: str | None,
        sequence: int,
    ) -> StoredEvent:
        starts_at, ends_at = _event_bounds(fields)
        seq = self._next_seq()
        resource: dict[str, Any] = {
            "kind": "calendar#event",
            "etag": f'"{seq:016d}"',
            "id": event_id,
            "status": fields.get("status") or "confirmed",
            "htmlLink": f"https://calendar.sandbox.local/event?eid={event_id}",
            "created": created or _rfc3339(now),
            "updated": _rfc3339(now),
            "creator": {"email": cal.account, "self": True},
            "organizer": {"email": cal.id, "displayName": cal.summary, "self": True},
            "iCalUID": f"{event_id}@google.com",
            "sequence": sequence,
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
        resource |= {k: fields[k] for k in _WRITABLE if k in fields and k != "status"}
        stored = StoredEvent(resource, seq, starts_at, ends_at)
        cal.events[event_id] = stored
        cal.log_seqs.append(seq)
        cal.log_ids.append(event_id)
        if len(cal.log_seqs) > 1024 and len(cal.log_seqs) > 2 * len(cal.events):
            live = sorted((e.seq, eid) for eid, e in cal.events.items())
            cal.log_seqs = [s for s, _ in live]
            cal.log_ids = [eid for _, eid in live]
        return stored

    def insert_event(self, account: str, calendar_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            event_id = body.get("id") or uuid.uuid4().hex
            if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
                raise _bad_request("Invalid resource id value.")
            if event_id in cal.events:
                # deleted events keep their id too, exactly like Google
                raise GoogleApiError(409, "The requested identifier already exists.", "duplicate")
            _validate_times(body)
            stored = self._store(cal, event_id, body, _now(), created=None, sequence=0)
            self._notify(cal)
            return stored.resource

    def get_event(self, account: str, calendar_id: str, event_id: str) -> dict[str, Any]:
        with self._lock:
            stored = self._owned_calendar(account, calendar_id).events.get(event_id)
            if stored is None:
                raise _not_found()
            return stored.resource

    def _change_event(
        self,
        account: str,
        calendar_id: str,
        event_id: str,
        fields: Mapping[str, Any],
        if_match: str | None,
        *,
        replace: bool,
    ) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            stored = cal.events.get(event_id)
            if stored is None:
                raise _not_found()
            old = stored.resource
            if if_match and if_match not in ("*", old["etag"]):
                raise GoogleApiError(412, "Precondition Failed", "conditionNotMet", location="If-Match")
            if replace:
                merged = {k: fields[k] for k in _WRITABLE if k in fields}
            else:
                merged = {k: old[k] for k in _WRITABLE if k in old}
                for key in _WRITABLE:
                    if key in fields:
                        merged[key] = _merge(merged.get(key), fields[key], key)
            merged.setdefault("status", old["status"])
            _validate_times(merged)
            moved = merged.get("start") != old.get("start") or merged.get("end") != old.get("end")
            sequence = old["sequence"] + (1 if moved else 0)
            stored = self._store(cal, event_id, merged, _now(), created=old["created"], sequence=sequence)
            self._notify(cal)
            return stored.resource

    def patch_event(
        self,
        account: str,
        calendar_id: str,
        event_id: str,
        changes: Mapping[str, Any],
        if_match: str | None = None,
    ) -> dict[str, Any]:
        return self._change_event(account, calendar_id, event_id, changes, if_match, replace=False)

    def update_event(
        self,
        account: str,
        calendar_id: str,
        event_id: str,
        body: Mapping[str, Any],
        if_match: str | None = None,
    ) -> dict[str, Any]:
        return self._change_event(account, calendar_id, event_id, body, if_match, replace=True)

    def delete_event(self, account: str, calendar_id: str, event_id: str, if_match: str | None = None) -> None:
        """Mark cancelled and keep it: incremental sync must report the deletion."""
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            stored = cal.events.get(event_id)
            if stored is None:
                raise _not_found()
            if stored.cancelled:
                raise GoogleApiError(410, "Resource has been deleted", "deleted")
            if if_match and if_match not in ("*", stored.resource["etag"]):
                raise GoogleApiError(412, "Precondition Failed", "conditionNotMet", location="If-Match")
            fields = {k: stored.resource[k] for k in _WRITABLE if k in stored.resource} | {"status": "cancelled"}
            old = stored.resource
            self._store(cal, event_id, fields, _now(), created=old["created"], sequence=old["sequence"])
            self._notify(cal)

    def list_events(self, account: str, calendar_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """events.list: full listing, or the changes since ``syncToken``; paged by ``pageToken``."""
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            max_results = _int_param(params, "maxResults", 250, low=1, high=2500)
            page = _decode_token(params["pageToken"]) if params.get("pageToken") else None
            if params.get("pageToken") and (page is None or page.get("c") != cal.id):
                raise _bad_request("Invalid page token value.", location="pageToken")
            sync_token = params.get("syncToken")
            if sync_token:
                for name in _FORBIDDEN_WITH_SYNC_TOKEN:
                    if name in params:
                        raise _bad_request(f"{name} is not compatible with syncToken.", location=name)
            if page is not None:
                after, upto, epoch, incremental = page["a"], page["u"], page["e"], page["i"]
            elif sync_token:
                decoded = _decode_token(sync_token)
                if decoded is None or decoded.get("c") != cal.id:
                    raise _bad_request("Invalid sync token value.", location="syncToken")
                after, upto, epoch, incremental = decoded["s"], self._seq, decoded["e"], True
            else:
                after, upto, epoch, incremental = 0, self._seq, cal.sync_epoch, False
            if epoch != cal.sync_epoch:
                raise GoogleApiError(
                    410,
                    "Sync token is no longer valid, a full sync is required.",
                    "fullSyncRequired",
                    domain="calendar",
                    location="syncToken",
                )
            accept = _event_filter(params, incremental)
            items: list[dict[str, Any]] = []
            last_seq, more = after, False
            for index in range(bisect.bisect_right(cal.log_seqs, after), len(cal.log_seqs)):
                seq = cal.log_seqs[index]
                if seq > upto:
                    break
                stored = cal.events[cal.log_ids[index]]
                if stored.seq != seq or not accept(stored):
                    continue
                if len(items) == max_results:
                    more = True  # one more match exists: a next page is worth a token
                    break
                items.append(stored.resource)
                last_seq = seq
            answer: dict[str, Any] = {
                "kind": "calendar#events",
                "etag": f'"p{upto:016d}"',
                "summary": cal.summary,
                "updated": _rfc3339(_now()),
                "timeZone": cal.time_zone,
                "accessRole": "owner",
                "defaultReminders": [],
                "items": items,
            }
            if more:
                answer["nextPageToken"] = _encode_token(
                    {"c": cal.id, "a": last_seq, "u": upto, "e": epoch, "i": incremental}
                )
            else:
                answer["nextSyncToken"] = _encode_token({"c": cal.id, "s": upto, "e": epoch})
            return answer

    def freebusy(self, account: str, body: Mapping[str, Any]) -> dict[str, Any]:
        time_min = _parse_instant(body.get("timeMin"), "timeMin")
        time_max = _parse_instant(body.get("timeMax"), "timeMax")
        if time_max <= time_min:
            raise _bad_request("The specified time range is empty.", location="timeMax")
        calendars: dict[str, Any] = {}
        with self._lock:
            for item in body.get("items") or []:
                requested = item.get("id", "")
                try:
                    cal = self._owned_calendar(account, requested)
                except GoogleApiError:
                    calendars[requested] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                    continue
                spans = sorted(
                    (max(e.starts_at, time_min), min(e.ends_at, time_max))
                    for e in cal.events.values()
                    if not e.cancelled
                    and e.resource.get("transparency") != "transparent"
                    and e.ends_at > time_min
                    and e.starts_at < time_max
                )
                merged: list[list[datetime]] = []
                for start, end in spans:
                    if merged and start <= merged[-1][1]:
                        merged[-1][1] = max(merged[-1][1], end)
                    else:
                        merged.append([start, end])
                calendars[requested] = {
                    "busy": [{"start": _rfc3339_seconds(s), "end": _rfc3339_seconds(e)} for s, e in merged]
                }
        return {
            "kind": "calendar#freeBusy",
            "timeMin": body["timeMin"],
            "timeMax": body["timeMax"],
            "calendars": calendars,
        }

    def watch(self, account: str, calendar_id: str, body: Mapping[str, Any], base_url: str) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            channel_id = body.get("id") or ""
            if not _CHANNEL_ID.match(channel_id):
                raise _bad_request("Invalid channel id.", location="id")
            if channel_id in self.channels:
                raise _bad_request(f"Channel id {channel_id} not unique")
            if body.get("type") not in ("web_hook", "webhook"):
                raise _bad_request("Invalid value for: type.", location="type")
            address = body.get("address") or ""
            if urlsplit(address).scheme not in ("http", "https"):
                raise _bad_request("Invalid address.", location="address")
            ttl = _int_param(body.get("params") or {}, "ttl", 604800, low=1, high=10**9)
            expiration = _now() + timedelta(seconds=ttl)
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
                raise _not_found(f"Channel '{body.get('id')}' not found for project 'sandbox'")
            if channel.account != account:
                raise GoogleApiError(403, "Incorrect OAuth client for this channel.", "forbidden")
            channel.stopped = True

    def list_calendar_entries(self, account: str) -> dict[str, Any]:
        with self._lock:
            items = []
            for cid in self.accounts.get(account, []):
                cal = self.calendars[cid]
                entry = {
                    "kind": "calendar#calendarListEntry",
                    "etag": f'"{hashlib.sha1(cid.encode(), usedforsecurity=False).hexdigest()[:16]}"',
                    "id": cid,
                    "summary": cal.summary,
                    "timeZone": cal.time_zone,
                    "accessRole": "owner",
                    "selected": True,
                    "defaultReminders": [],
                }
                if cal.primary:
                    entry["primary"] = True
                items.append(entry)
            return {"kind": "calendar#calendarList", "etag": '"sandbox"', "items": items}

    def get_calendar(self, account: str, calendar_id: str) -> dict[str, Any]:
        with self._lock:
            cal = self._owned_calendar(account, calendar_id)
            return {
                "kind": "calendar#calendar",
                "etag": '"sandbox"',
                "id": cal.id,
                "summary": cal.summary,
                "timeZone": cal.time_zone,
            }

    # --- pushes -------------------------------------------------------------------------

    def _notify(self, cal: Calendar) -> None:
        now = _now()
        for channel in self.channels.values():
            if channel.calendar_id == cal.id and channel.live(now):
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
        self._pushes.submit(_Push(channel.address, headers, channel.id, resource_state, channel.message_number))


# --- parsing helpers -------------------------------------------------------------------


def _query_of(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def _int_param(params: Mapping[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _bad_request(f"Invalid value for: {name}", location=name) from None
    if not low <= value:
        raise _bad_request(f"Invalid value for: {name}", location=name)
    return min(value, high)


def _parse_instant(raw: Any, name: str) -> datetime:
    """An RFC 3339 timestamp with an offset (Google rejects one without)."""
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise _bad_request("Bad Request", location=name) from None
    if moment.tzinfo is None:
        raise _bad_request("Bad Request", location=name)
    return moment.astimezone(UTC)


def _event_time(value: Any, which: str) -> datetime:
    if not isinstance(value, Mapping) or not (value.get("dateTime") or value.get("date")):
        raise _bad_request(f"Missing {which} time.")
    try:
        if value.get("dateTime"):
            moment = datetime.fromisoformat(value["dateTime"])
            if moment.tzinfo is None:
                # Google wants an offset in dateTime or a timeZone beside it
                if not value.get("timeZone"):
                    raise _bad_request(f"Missing time zone definition for {which} time.")
                moment = moment.replace(tzinfo=ZoneInfo(value["timeZone"]))
            return moment.astimezone(UTC)
        day = date.fromisoformat(value["date"])
    except (ValueError, ZoneInfoNotFoundError):
        raise _bad_request(f"Invalid {which} time.") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _event_bounds(fields: Mapping[str, Any]) -> tuple[datetime, datetime]:
    return _event_time(fields.get("start"), "start"), _event_time(fields.get("end"), "end")


def _validate_times(fields: Mapping[str, Any]) -> None:
    start, end = _event_bounds(fields)
    if end < start:
        raise _bad_request("The specified time range is empty.")


def _merge(old: Any, new: Any, key: str) -> Any:
    """Patch semantics: objects merge key by key, except start/end which are replaced
    whole (a ``date`` patched over a ``dateTime`` must not leave both)."""
    if key in ("start", "end") or not isinstance(old, dict) or not isinstance(new, dict):
        return new
    merged = dict(old)
    for name, value in new.items():
        merged[name] = _merge(old.get(name), value, name) if value is not None else None
    return {k: v for k, v in merged.items() if v is not None}


def _event_filter(params: Mapping[str, str], incremental: bool) -> Callable[[StoredEvent], bool]:
    if incremental:
        return lambda _stored: True  # deletions are part of what changed
    updated_min = _parse_instant(params["updatedMin"], "updatedMin") if params.get("updatedMin") else None
    time_min = _parse_instant(params["timeMin"], "timeMin") if params.get("timeMin") else None
    time_max = _parse_instant(params["timeMax"], "timeMax") if params.get("timeMax") else None
    # updatedMin reports deletions since then whatever showDeleted says, as Google does
    show_deleted = params.get("showDeleted") == "true" or updated_min is not None
    wanted = [tuple(p.split("=", 1)) for p in params.get("privateExtendedProperty", "").split(",") if "=" in p]
    updated_floor = _rfc3339(updated_min) if updated_min else None

    def accept(stored: StoredEvent) -> bool:
        if stored.cancelled and not show_deleted:
            return False
        if time_min is not None and stored.ends_at <= time_min:
            return False
        if time_max is not None and stored.starts_at >= time_max:
            return False
        if updated_floor is not None and stored.resource["updated"] < updated_floor:
            return False
        private = stored.resource.get("extendedProperties", {}).get("private", {})
        return all(private.get(k) == v for k, v in wanted)

    return accept


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad_request("Parse Error") from None
    if not isinstance(body, dict):
        raise _bad_request("Parse Error")
    return body


def _consent_page(request: AuthorizationRequest) -> str:
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in request.scopes)
    account = html.escape(request.login_hint or DEFAULT_ACCOUNT)
    rid = html.escape(request.request_id)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Google Accounts (sandbox)</title></head>
<body>
<h1>{html.escape(request.client_id)} wants to access your Google Account</h1>
<ul>{scopes}</ul>
<form method="post" action="/o/oauth2/v2/auth/decision" id="approve">
  <input type="hidden" name="request_id" value="{rid}">
  <label>Account <input type="email" name="account" value="{account}"></label>
  <button type="submit" name="decision" value="approve">Allow</button>
</form>
<form method="post" action="/o/oauth2/v2/auth/decision" id="deny">
  <input type="hidden" name="request_id" value="{rid}">
  <button type="submit" name="decision" value="deny">Cancel</button>
</form>
</body></html>"""


def _google_route_class(sandbox: GoogleSandbox) -> type[APIRoute]:
    class GoogleRoute(APIRoute):
        """Counts calls, applies injected failures and renders errors in Google's shapes."""

        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()
            label = f"{'/'.join(sorted(self.methods))} {self.path}"

            async def google_route(request: Request) -> Response:
                with sandbox._lock:
                    sandbox.request_counts[label] += 1
                failure = sandbox._take_failure(request.url.path)
                if failure is not None:
                    if failure.delay:
                        await asyncio.sleep(failure.delay)
                    if failure.status is not None:
                        return failure.response(request.url.path)
                try:
                    return await handler(request)
                except (GoogleApiError, OAuthError) as exc:
                    return exc.response()

            return google_route

    return GoogleRoute


def router(state: GoogleSandbox) -> APIRouter:
    """Google's OAuth and Calendar v3 endpoints plus ``/_sandbox/google/`` controls."""
    api = APIRouter(route_class=_google_route_class(state))
    cal = "/calendar/v3"

    def bearer(request: Request, scopes: frozenset[str]) -> str:
        return state.authenticate(request.headers.get("authorization"), scopes).grant.account

    # --- OAuth ---------------------------------------------------------------------

    @api.get("/o/oauth2/v2/auth", include_in_schema=False)
    async def consent_page(request: Request) -> Response:
        try:
            auth_request = state._authorization_request(dict(request.query_params))
        except OAuthError as exc:
            body = f"<h1>Error {exc.status}: {html.escape(exc.error)}</h1><p>{html.escape(exc.description)}</p>"
            return HTMLResponse(body, status_code=exc.status)
        return HTMLResponse(_consent_page(auth_request))

    @api.post("/o/oauth2/v2/auth/decision", include_in_schema=False)
    async def consent_decision(request: Request) -> Response:
        form = await request.form()
        approved = form.get("decision") == "approve"
        account = str(form.get("account") or "") or None
        location = state._decide(str(form.get("request_id") or ""), account=account, approved=approved)
        return RedirectResponse(location, status_code=303)

    @api.post("/token", include_in_schema=False)
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        answer = state.token_grant({k.lower(): v for k, v in request.headers.items()}, form)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    @api.post("/revoke", include_in_schema=False)
    async def revoke(request: Request) -> Response:
        form = await request.form()
        state.revoke_token(request.query_params.get("token") or str(form.get("token") or ""))
        return JSONResponse({})

    @api.get("/oauth2/v3/userinfo", include_in_schema=False)
    async def userinfo(request: Request) -> Response:
        account = bearer(request, _USERINFO)
        sub = str(int(hashlib.sha256(account.encode()).hexdigest()[:15], 16))
        return JSONResponse({"sub": sub, "email": account, "email_verified": True})

    # --- Calendar v3 -------------------------------------------------------------------

    @api.get(cal + "/users/me/calendarList", include_in_schema=False)
    async def calendar_list(request: Request) -> Response:
        return JSONResponse(state.list_calendar_entries(bearer(request, _READ_CALENDARS)))

    @api.get(cal + "/calendars/{calendarId}", include_in_schema=False)
    async def calendars_get(request: Request, calendarId: str) -> Response:  # noqa: N803 - Google's name
        return JSONResponse(state.get_calendar(bearer(request, _READ_EVENTS), calendarId))

    @api.post(cal + "/calendars/{calendarId}/events", include_in_schema=False)
    async def events_insert(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(request, _WRITE_EVENTS)
        return JSONResponse(state.insert_event(account, calendarId, await _json_body(request)))

    @api.get(cal + "/calendars/{calendarId}/events", include_in_schema=False)
    async def events_list(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(request, _READ_EVENTS)
        params = {k: ",".join(request.query_params.getlist(k)) for k in request.query_params}
        return JSONResponse(state.list_events(account, calendarId, params))

    @api.post(cal + "/calendars/{calendarId}/events/watch", include_in_schema=False)
    async def events_watch(request: Request, calendarId: str) -> Response:  # noqa: N803
        account = bearer(request, _READ_EVENTS)
        base = str(request.base_url)
        return JSONResponse(state.watch(account, calendarId, await _json_body(request), base))

    @api.get(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_get(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        return JSONResponse(state.get_event(bearer(request, _READ_EVENTS), calendarId, eventId))

    @api.patch(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_patch(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        account = bearer(request, _WRITE_EVENTS)
        body = await _json_body(request)
        return JSONResponse(state.patch_event(account, calendarId, eventId, body, request.headers.get("if-match")))

    @api.put(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_update(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        account = bearer(request, _WRITE_EVENTS)
        body = await _json_body(request)
        return JSONResponse(state.update_event(account, calendarId, eventId, body, request.headers.get("if-match")))

    @api.delete(cal + "/calendars/{calendarId}/events/{eventId}", include_in_schema=False)
    async def events_delete(request: Request, calendarId: str, eventId: str) -> Response:  # noqa: N803
        account = bearer(request, _WRITE_EVENTS)
        state.delete_event(account, calendarId, eventId, request.headers.get("if-match"))
        return Response(status_code=204)

    @api.post(cal + "/freeBusy", include_in_schema=False)
    async def freebusy(request: Request) -> Response:
        account = bearer(request, _FREEBUSY)
        return JSONResponse(state.freebusy(account, await _json_body(request)))

    @api.post(cal + "/channels/stop", include_in_schema=False)
    async def channels_stop(request: Request) -> Response:
        account = bearer(request, _READ_EVENTS)
        state.stop_channel(account, await _json_body(request))
        return Response(status_code=204)

    # --- control ------------------------------------------------------------------------

    ctl = "/_sandbox/google"

    @api.post(ctl + "/accounts", include_in_schema=False)
    async def seed_account(request: Request) -> Response:
        """{"email", "calendars": [summary...], "time_zone"} -> {"calendar_ids": [...]}"""
        body = await _json_body(request)
        ids = state.seed_account(
            body["email"], calendars=body.get("calendars") or (), time_zone=body.get("time_zone") or DEFAULT_TIME_ZONE
        )
        return JSONResponse({"calendar_ids": ids})

    @api.post(ctl + "/oauth/decide", include_in_schema=False)
    async def decide(request: Request) -> Response:
        """{"authorization_url", "account"?, "approve": true} -> {"redirect_url"}"""
        body = await _json_body(request)
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
        body = await _json_body(request)
        count = state.revoke_grant(refresh_token=body.get("refresh_token"), account=body.get("account"))
        return JSONResponse({"revoked": count})

    @api.post(ctl + "/tokens/expire", include_in_schema=False)
    async def expire_tokens(request: Request) -> Response:
        """{"account"?} -> {"expired": n}"""
        body = await _json_body(request)
        return JSONResponse({"expired": state.expire_access_tokens(account=body.get("account"))})

    @api.put(ctl + "/config", include_in_schema=False)
    async def configure(request: Request) -> Response:
        """{"access_token_lifetime"?: seconds}"""
        body = await _json_body(request)
        if "access_token_lifetime" in body:
            state.access_token_lifetime = int(body["access_token_lifetime"])
        return JSONResponse({"access_token_lifetime": state.access_token_lifetime})

    @api.post(ctl + "/failures", include_in_schema=False)
    async def inject_failure(request: Request) -> Response:
        """{"status": 503|429|null, "times": 1, "path_prefix": "/calendar/v3/", "retry_after"?, "delay"?}"""
        body = await _json_body(request)
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
        return JSONResponse(state.create_event(calendar_id, await _json_body(request)))

    @api.post(ctl + "/calendars/{calendar_id}/events/bulk", include_in_schema=False)
    async def person_bulk_creates(request: Request, calendar_id: str) -> Response:
        """{"count", "start"?: RFC 3339, "duration_minutes"?: 30, "every_minutes"?: 60, "summary"?}"""
        body = await _json_body(request)
        start = _parse_instant(body["start"], "start") if body.get("start") else None
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
        return JSONResponse(state.edit_event(calendar_id, event_id, await _json_body(request)))

    @api.post(ctl + "/calendars/{calendar_id}/events/{event_id}/move", include_in_schema=False)
    async def person_moves(request: Request, calendar_id: str, event_id: str) -> Response:
        """{"start"?, "end"?: RFC 3339, "destination"?: calendar id}"""
        body = await _json_body(request)
        moved = state.move_event(
            calendar_id,
            event_id,
            start=_parse_instant(body["start"], "start") if body.get("start") else None,
            end=_parse_instant(body["end"], "end") if body.get("end") else None,
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
        now = _now()
        with state._lock:
            rows = [
                {
                    "id": c.id,
                    "resource_id": c.resource_id,
                    "calendar_id": c.calendar_id,
                    "address": c.address,
                    "expiration": _rfc3339(c.expiration),
                    "live": c.live(now),
                    "message_number": c.message_number,
                }
                for c in state.channels.values()
            ]
        return JSONResponse({"channels": rows})

    @api.get(ctl + "/request-counts", include_in_schema=False)
    async def request_counts() -> Response:
        with state._lock:
            return JSONResponse(dict(state.request_counts))

    return api
