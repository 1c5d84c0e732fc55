"""Google failures as the hub's typed provider errors.

Retry policy lives in the hub; this module only says which failures are worth retrying:
5xx, 429, Google's 403 rate-limit reasons and network errors are transient, the rest
permanent. Errors that call for a specific reaction get their own type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import google.auth.exceptions
import httplib2
from googleapiclient.errors import HttpError

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError

# Google answers quota trouble with 403 as often as with 429.
_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})


class GrantRevoked(PermanentProviderError):
    """The refresh token was revoked or expired (``invalid_grant``): the integration
    needs the tenant to connect Google again."""


class AuthorizationCodeRejected(PermanentProviderError):
    """The code exchange failed: wrong, reused or expired code, or a PKCE verifier mismatch."""


class SyncTokenInvalid(PermanentProviderError):
    """410 ``fullSyncRequired``: drop the stored token and sync from scratch."""


class EventNotFound(PermanentProviderError):
    """The event (or calendar) does not exist for this account."""


class StaleEtag(PermanentProviderError):
    """412: the event changed since the etag given in ``if_match`` was read."""


def _google_reason(content: bytes) -> tuple[str | None, str | None]:
    """(reason, message) from ``{"error": {"errors": [{"reason"}], "message"}}``."""
    try:
        body: Any = json.loads(content.decode("utf-8"))
        error = body["error"]
        errors = error.get("errors") or [{}]
        return errors[0].get("reason"), error.get("message")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError, IndexError):
        return None, None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from Google, and the hub's backoff covers it


def error_from_http(exc: HttpError) -> ProviderError:
    status = int(exc.resp.status)
    reason, message = _google_reason(exc.content or b"")
    text = message or str(exc.reason) or f"HTTP {status}"
    retry_after = _retry_after(exc.resp.get("retry-after"))
    if status >= 500 or status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS):
        return TransientProviderError(text, code=reason, status=status, retry_after=retry_after)
    error_type: type[PermanentProviderError] = PermanentProviderError
    if status == 410 and reason == "fullSyncRequired":
        error_type = SyncTokenInvalid
    elif status == 404:
        error_type = EventNotFound
    elif status == 412:
        error_type = StaleEtag
    return error_type(text, code=reason, status=status)


@contextmanager
def translated_errors() -> Iterator[None]:
    """Raise what a Calendar API call fails with as a ProviderError."""
    try:
        yield
    except HttpError as exc:
        raise error_from_http(exc) from exc
    except google.auth.exceptions.RefreshError as exc:
        # our refresh path raises GrantRevoked itself; this is google-auth refusing the
        # token it was handed (e.g. already expired)
        raise PermanentProviderError(f"access token refused: {exc}", code="refresh_error") from exc
    except (OSError, httplib2.HttpLib2Error) as exc:
        # connection refused/reset, DNS, timeouts (socket.timeout is an OSError)
        raise TransientProviderError(f"Google unreachable: {exc}", code="network") from exc
