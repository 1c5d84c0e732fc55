"""Nothing reads a request body before its token checks out, and no body is read past
its cap.

FastAPI reads and parses a route's body before it solves the route's dependencies,
so ``authenticate`` alone ran after a 50 MB JSON body had been read (and the NUL
guard reads JSON bodies even earlier, as middleware). This middleware, outside both,
finds the route a request is for; when the route takes a token (``authenticate`` is
among its dependencies) and the request may carry a body, the token is verified here
first (``verify_bearer``: 401 or 429 without reading a byte) and the principal handed
to ``authenticate``. Then the body is capped while it streams: ``HUB_MAX_BODY_BYTES``
unless the route declares its own ``max_body_size`` (FastAPI's route option); a
declared ``Content-Length`` past the cap is refused at once, a chunked body as soon as
its bytes pass it, with ``413 payload_too_large``.

Starlette's own ``RequestBodyLimitMiddleware`` answers in plain text from outside the
hub's middleware (no error envelope, request id or security headers), hence this one.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import routing
from fastapi.dependencies.models import Dependant
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from hub.auth.deps import authenticate, bearer_token, verify_bearer
from hub.errors import HubError

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` past the cap. An HTTPException, so FastAPI's body
    reading lets it through to the error handlers (it turns anything else into 400)."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, f"request body larger than {cap} bytes")


def _too_large(cap: int) -> JSONResponse:
    return JSONResponse({"error": {"code": "payload_too_large", "message": f"request body larger than {cap} bytes"}},
                        status_code=413, headers={"Connection": "close"})


def _takes_token(dependant: Dependant) -> bool:
    stack = [dependant]
    while stack:
        current = stack.pop()
        if current.call is authenticate:
            return True
        stack.extend(current.dependencies)
    return False


def route_table(app: Any) -> list[tuple[re.Pattern[str], frozenset[str], bool, int | None]]:
    """(path pattern, methods, takes a token, declared body cap) of every API route, in
    the order the router tries them: a route takes a token when ``authenticate`` is
    among its dependencies; FastAPI's ``max_body_size=`` on a route raises its cap."""
    table = []
    for route in routing.iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None or getattr(route, "path_regex", None) is None:
            continue
        table.append((route.path_regex, frozenset(route.methods or ()), _takes_token(dependant),
                      getattr(route, "max_body_size", None)))
    return table


class AuthenticateBeforeBody:
    """ASGI middleware: the bearer check before any body is read, then the body cap."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._table: list[tuple[re.Pattern[str], frozenset[str], bool, int | None]] | None = None

    def _route(self, scope: dict) -> tuple[bool, int | None]:
        """(takes a token, its declared body cap) of the route ``scope`` is for."""
        if self._table is None:
            self._table = route_table(scope["app"])
        path, method = scope["path"], scope["method"]
        for pattern, methods, takes_token, cap in self._table:
            if method in methods and pattern.match(path):
                return takes_token, cap
        return False, None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        takes_token, declared_cap = self._route(scope)
        runtime = scope["app"].state.runtime
        if takes_token:
            request = Request(scope)
            try:
                principal = await run_in_threadpool(self._verify, runtime, request)
            except HubError as exc:
                await JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        cap = declared_cap or runtime.settings.max_body_bytes
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            await _too_large(cap)(scope, receive, send)
            return
        received = 0
        started = False

        async def capped_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except BodyTooLarge:
            # read by a middleware (the NUL guard) before any route could answer it
            if started:
                raise
            await _too_large(cap)(scope, receive, send)

    @staticmethod
    def _verify(runtime: Any, request: Request) -> Any:
        with runtime.session_factory() as session:
            return verify_bearer(runtime, request, session, bearer_token(request.headers.get("authorization")))
