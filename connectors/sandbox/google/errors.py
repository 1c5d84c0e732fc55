"""Google's two error wire shapes: the APIs' ``{"error": {"errors": [...], "code", "message"}}``
and the OAuth endpoints' ``{"error", "error_description"}`` (RFC 6749 §5.2).

Sources: https://developers.google.com/workspace/calendar/api/guides/errors (every body
below is shaped like the examples there) and
https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse

# Injected failures answer with Google's own reason for the status
# (https://developers.google.com/workspace/calendar/api/guides/errors: 429, 500, 503).
ERROR_REASONS = {
    429: ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("global", "backendError", "Backend Error"),
    502: ("global", "backendError", "Bad Gateway"),
    503: ("global", "backendError", "Service Unavailable"),
    504: ("global", "backendError", "Gateway Timeout"),
}


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
        location_type: str = "parameter",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.domain = domain
        self.location = location
        self.location_type = location_type
        self.headers = dict(headers or {})

    def body(self) -> dict:
        error: dict[str, str] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location:
            error |= {"locationType": self.location_type, "location": self.location}
        return {"error": {"errors": [error], "code": self.status, "message": self.message}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class OAuthError(Exception):
    """A token/revoke endpoint error: ``{"error", "error_description"}`` (RFC 6749 §5.2)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "error_description": self.description}, status_code=self.status)


def not_found(what: str = "Not Found") -> GoogleApiError:
    return GoogleApiError(404, what, "notFound")


def bad_request(message: str, *, location: str | None = None) -> GoogleApiError:
    return GoogleApiError(400, message, "invalid", location=location)
