"""Google OAuth 2.0 for the platform's client: consent URL (PKCE S256), code exchange,
refresh, revoke. Tenant-free: the hub keeps the tokens; this only talks to Google."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import httpx
import requests
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError, OAuth2Error
from pydantic import SecretStr

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError
from connectors.google_calendar.credentials import GoogleCalendarCredentials, GoogleOAuthClient
from connectors.google_calendar.errors import AuthorizationCodeRejected, GrantRevoked, translated_errors
from connectors.google_calendar.transport import calendar_service


class AccessToken(NamedTuple):
    token: str
    expiry: datetime  # aware UTC


class _PlainHttpAllowance:
    """Lets oauthlib speak plain http while at least one sandbox call is in flight.

    oauthlib reads ``OAUTHLIB_INSECURE_TRANSPORT`` from the process environment on every
    check, so it cannot be scoped to one call; it is set for the span of sandbox calls
    and restored after the last one ends. The flag only permits ``http://`` URLs, so a
    production call (always https) that overlaps such a span is unaffected.
    ``OAUTHLIB_RELAX_TOKEN_SCOPE`` is not needed: the sandbox grants exactly what was asked.
    """

    _NAME = "OAUTHLIB_INSECURE_TRANSPORT"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: str | None = None

    @contextmanager
    def __call__(self, enabled: bool) -> Iterator[None]:
        if not enabled:
            yield
            return
        with self._lock:
            if self._users == 0:
                self._saved = os.environ.get(self._NAME)
                os.environ[self._NAME] = "1"
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    if self._saved is None:
                        os.environ.pop(self._NAME, None)
                    else:
                        os.environ[self._NAME] = self._saved


_plain_http_allowed = _PlainHttpAllowance()


class _TimedRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport, with our timeout instead of its 120 s default."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(url, method, body, headers, timeout=timeout or self._timeout, **kwargs)


def _refresh_error(exc: google.auth.exceptions.RefreshError) -> ProviderError:
    data = exc.args[1] if len(exc.args) > 1 else None
    error = data.get("error") if isinstance(data, dict) else None
    description = (data.get("error_description") if isinstance(data, dict) else None) or str(exc.args[0])
    if error == "invalid_grant":
        return GrantRevoked(description, code=error, status=400)
    if exc.retryable or error is None:
        # retryable per google-auth (500/503/504/408/429 after its own retries), or a
        # non-OAuth body such as an HTML error page: the endpoint itself is in trouble
        return TransientProviderError(description, code=error or "token_endpoint_unavailable")
    return PermanentProviderError(description, code=error)


class GoogleOAuth:
    """OAuth calls for one platform client."""

    def __init__(self, client: GoogleOAuthClient, *, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout

    def _flow(self, *, code_verifier: str | None) -> Flow:
        config = {
            "web": {
                "client_id": self.client.client_id,
                "client_secret": self.client.client_secret.get_secret_value(),
                "auth_uri": self.client.auth_uri,
                "token_uri": self.client.token_uri,
                "redirect_uris": [self.client.redirect_uri],
            }
        }
        return Flow.from_client_config(
            config,
            scopes=list(self.client.scopes),
            redirect_uri=self.client.redirect_uri,
            code_verifier=code_verifier,
            autogenerate_code_verifier=code_verifier is None,
        )

    def authorization_url(self, state: str, *, login_hint: str | None = None) -> tuple[str, str]:
        """(consent URL, PKCE code verifier). Keep the verifier server-side for the callback.

        ``access_type=offline`` + ``prompt=consent`` make Google return a refresh token
        even when the account had consented before.
        """
        flow = self._flow(code_verifier=None)
        extra = {"login_hint": login_hint} if login_hint else {}
        with _plain_http_allowed(self.client.sandbox):
            url, _ = flow.authorization_url(state=state, access_type="offline", prompt="consent", **extra)
        return url, flow.code_verifier

    def exchange_code(self, code: str, code_verifier: str) -> GoogleCalendarCredentials:
        """Trade the callback's code for tokens, learn the account e-mail, and return
        credentials ready for the vault (with a fresh ``channel_token``)."""
        flow = self._flow(code_verifier=code_verifier)

        def reject_unavailable(response: requests.Response) -> requests.Response:
            # oauthlib would report a 5xx page as a malformed token answer
            if response.status_code >= 500 or response.status_code == 429:
                raise TransientProviderError(
                    f"token endpoint answered {response.status_code}",
                    status=response.status_code,
                    retry_after=_seconds(response.headers.get("Retry-After")),
                )
            return response

        flow.oauth2session.register_compliance_hook("access_token_response", reject_unavailable)
        with _plain_http_allowed(self.client.sandbox):
            try:
                token: dict[str, Any] = flow.fetch_token(code=code, timeout=self.timeout)
            except InvalidGrantError as exc:
                raise AuthorizationCodeRejected(exc.description or "invalid_grant", code=exc.error) from exc
            except OAuth2Error as exc:
                raise PermanentProviderError(exc.description or exc.error, code=exc.error) from exc
            except Warning as exc:
                # oauthlib raises when Google grants other scopes than asked (the user may
                # untick some); the token is valid, the scope check below decides
                if not hasattr(exc, "token"):
                    raise
                token = exc.token
            except requests.RequestException as exc:
                raise TransientProviderError(f"token endpoint unreachable: {exc}", code="network") from exc
        scopes = _scopes(token.get("scope"))
        missing = [s for s in self.client.scopes if s not in scopes]
        if missing:
            raise PermanentProviderError(f"scopes not granted: {' '.join(missing)}", code="insufficient_scope")
        if not token.get("refresh_token"):
            raise PermanentProviderError("Google returned no refresh token", code="no_refresh_token")
        expiry = datetime.fromtimestamp(float(token["expires_at"]), UTC)
        return GoogleCalendarCredentials(
            account_email=self._account_email(token["access_token"]),
            refresh_token=SecretStr(token["refresh_token"]),
            access_token=SecretStr(token["access_token"]),
            expiry=expiry,
            scopes=scopes,
            channel_token=SecretStr(secrets.token_urlsafe(32)),
        )

    def _account_email(self, access_token: str) -> str:
        # The primary calendar's id is the account e-mail; asking the Calendar API avoids
        # requesting the extra openid/email scopes a userinfo call would need.
        credentials = google.oauth2.credentials.Credentials(access_token)
        service = calendar_service(self.client.api_base, credentials, timeout=self.timeout)
        with translated_errors():
            return str(service.calendars().get(calendarId="primary").execute()["id"])

    def refresh(self, refresh_token: str) -> AccessToken:
        """A new access token; ``GrantRevoked`` when Google answers ``invalid_grant``."""
        credentials = google.oauth2.credentials.Credentials(
            None,
            refresh_token=refresh_token,
            token_uri=self.client.token_uri,
            client_id=self.client.client_id,
            client_secret=self.client.client_secret.get_secret_value(),
        )
        try:
            credentials.refresh(_TimedRequest(self.timeout))
        except google.auth.exceptions.RefreshError as exc:
            raise _refresh_error(exc) from exc
        except google.auth.exceptions.TransportError as exc:
            raise TransientProviderError(f"token endpoint unreachable: {exc}", code="network") from exc
        # google-auth keeps naive UTC; Google always sends expires_in, the default is a guard
        expiry = credentials.expiry or (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None)
        return AccessToken(credentials.token, expiry.replace(tzinfo=UTC))

    def client_accepted(self) -> bool:
        """Whether the token endpoint knows this client id and secret.

        Google has no API to read a client; the token endpoint is asked to redeem a code
        that cannot exist, and it names bad client credentials (401 ``invalid_client``)
        before a bad code (400 ``invalid_grant``) (RFC 6749 §5.2).
        """
        form = {
            "grant_type": "authorization_code",
            "code": "hub-client-check",
            "redirect_uri": self.client.redirect_uri,
            "client_id": self.client.client_id,
            "client_secret": self.client.client_secret.get_secret_value(),
        }
        try:
            response = httpx.post(self.client.token_uri, data=form, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TransientProviderError(f"token endpoint unreachable: {exc}", code="network") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientProviderError(f"token endpoint answered {response.status_code}", status=response.status_code)
        error = _oauth_error(response)
        if error == "invalid_client":
            return False
        if error == "invalid_grant":
            return True
        raise PermanentProviderError(f"token endpoint answered {response.status_code} {error or ''}".strip(),
                                     code=error, status=response.status_code)

    def revoke(self, token: str) -> bool:
        """Revoke the grant behind a refresh or access token. False when already revoked."""
        try:
            response = httpx.post(
                self.client.revoke_uri,
                params={"token": token},
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise TransientProviderError(f"revoke endpoint unreachable: {exc}", code="network") from exc
        if response.status_code == 200:
            return True
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientProviderError(f"revoke answered {response.status_code}", status=response.status_code)
        if response.status_code == 400 and _oauth_error(response) == "invalid_token":
            return False
        raise PermanentProviderError(f"revoke answered {response.status_code}", status=response.status_code)


def _scopes(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return raw.split()
    return [str(s) for s in raw or []]


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None
