"""Typed errors that carry their HTTP status, mapped once to the JSON envelope
``{"error": {"code": …, "message": …}}`` by ``hub.app``."""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class BadRequest(HubError):
    status_code, code = 400, "bad_request"


class Unauthorized(HubError):
    status_code, code = 401, "unauthorized"


class Forbidden(HubError):
    status_code, code = 403, "forbidden"


class NotFound(HubError):
    status_code, code = 404, "not_found"


class Conflict(HubError):
    status_code, code = 409, "conflict"


class Invalid(HubError):
    """Well-formed input that breaks a rule of the domain."""

    status_code, code = 422, "invalid"


class RateLimited(HubError):
    status_code, code = 429, "rate_limited"


class ProviderRejected(HubError):
    """A provider refused what we asked on the caller's behalf."""

    status_code, code = 502, "provider_rejected"


class Unavailable(HubError):
    status_code, code = 503, "unavailable"


# --- the envelope as documented in OpenAPI --------------------------------------------

from pydantic import BaseModel  # noqa: E402


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    texts = {400: "bad request", 401: "missing, invalid or expired token", 403: "missing scope",
             404: "not found (or another tenant's)", 409: "conflict", 422: "invalid input",
             429: "rate limited", 503: "a dependency is unavailable"}
    return {s: {"model": ErrorBody, "description": texts.get(s, "error")} for s in statuses}


# what any authenticated route can answer
AUTHENTICATED_ERRORS = error_responses(400, 401, 403, 404, 422, 429, 503)
