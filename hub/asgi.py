"""A small base for ASGI middlewares that only add response headers.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: no body buffering, no task per
request, and event streams pass through untouched."""

from __future__ import annotations

from typing import Any

Headers = list[tuple[bytes, bytes]]


def add_missing(headers: Headers, extra: dict[str, str]) -> Headers:
    """``headers`` plus each of ``extra`` the response does not set already."""
    present = {name.lower() for name, _ in headers}
    added = [(name.lower().encode(), value.encode()) for name, value in extra.items()
             if name.lower().encode() not in present]
    return [*headers, *added] if added else headers


class ResponseHeadersMiddleware:
    """Calls ``headers_for(scope, headers)`` on every HTTP response's start message."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def headers_for(self, scope: dict, headers: Headers) -> Headers:
        raise NotImplementedError

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self.headers_for(scope, list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, send_with_headers)
