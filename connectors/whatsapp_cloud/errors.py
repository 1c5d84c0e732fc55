"""Graph API error answers -> our Transient/PermanentProviderError.

Meta answers ``{"error": {"message", "type", "code", "error_subcode", "error_data":
{"details"}, "fbtrace_id"}}``. Meta tells integrators to decide on ``code`` rather than
on the HTTP status (its own table puts most throttling codes on HTTP 400), so the
code decides first and the status only settles codes we do not know.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError

# Retrying cannot help: the request, the recipient, the template or the credentials are wrong.
PERMANENT_CODES: dict[int, str] = {
    10: "permission denied",
    100: "invalid parameter",
    190: "access token invalid or expired",
    200: "permission denied",
    368: "temporarily blocked for policy violations",
    131008: "required parameter missing",
    131009: "parameter value is not valid",
    131021: "recipient cannot be the sender",
    131026: "message undeliverable (not a WhatsApp user, or cannot receive it)",
    131030: "recipient not in the allowed list",
    131031: "business account locked",
    131042: "business eligibility or payment issue",
    131045: "phone number certificate is wrong",
    131047: "re-engagement message: more than 24 hours since the customer last replied",
    131051: "unsupported message type",
    131053: "media upload error",
    132000: "template parameter count does not match",
    132001: "template does not exist in this language",
    132005: "template text too long after translation",
    132007: "template format character policy violated",
    132012: "template parameter format mismatch",
    132015: "template is paused",
    132016: "template is disabled",
    133010: "phone number not registered on the Cloud API",
}

# Worth another attempt later: throttling and Meta-side outages.
TRANSIENT_CODES: dict[int, str] = {
    1: "unknown API error",
    2: "temporary API service problem",
    4: "application request limit reached",
    80007: "WhatsApp Business account rate limit reached",
    130429: "Cloud API throughput rate limit hit",
    131000: "something went wrong at Meta",
    131016: "service unavailable",
    131048: "spam rate limit hit",
    131056: "business/consumer pair rate limit hit",
    131057: "business account in maintenance mode",
    133004: "server temporarily unavailable",
}


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date converted to a delay."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def graph_error_body(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of a Graph answer, or ``{}`` when the body is not Graph's."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def provider_error_from_response(response: httpx.Response) -> ProviderError:
    """Map a non-2xx Graph answer to the error the delivery pipeline acts on."""
    error = graph_error_body(response)
    code = _as_int(error.get("code"))
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
    message = str(error.get("message") or f"Graph API answered HTTP {response.status_code}")
    if details and details not in message:
        message = f"{message}: {details}"
    kwargs: dict[str, Any] = {
        "code": str(code) if code is not None else None,
        "status": response.status_code,
        "retry_after": retry_after,
    }
    if code in PERMANENT_CODES:
        return PermanentProviderError(message, **kwargs)
    if code in TRANSIENT_CODES:
        return TransientProviderError(message, **kwargs)
    # Unknown code (or no Graph body, e.g. a proxy's HTML 502): trust Meta's own
    # ``is_transient`` hint, then the HTTP status.
    if error.get("is_transient") is True or response.status_code >= 500 or response.status_code == 429:
        return TransientProviderError(message, **kwargs)
    return PermanentProviderError(message, **kwargs)


def provider_error_from_transport(exc: httpx.TransportError) -> TransientProviderError:
    """Timeouts and connection failures: Meta may never have seen the request."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientProviderError(f"Graph API timed out: {exc!r}", code="timeout")
    return TransientProviderError(f"Graph API unreachable: {exc!r}", code="connection_error")
