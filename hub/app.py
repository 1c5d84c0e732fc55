"""The FastAPI application factory. Nothing happens at import time."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from hub.errors import HubError
from hub.metrics import HTTP_REQUEST_DURATION, status_class
from hub.runtime import Runtime, build_runtime
from hub.settings import Settings, SettingsError

log = structlog.get_logger("hub.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
}


class RequestContextMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` when sane), echoes
    it, binds it to the logs, and writes one access line per request."""

    def __init__(self, app: Any, metrics: bool = True) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        if scope["path"] == "/metrics":  # scrapes are not traffic: no access line, no request figure
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            duration_ms = round(elapsed * 1000, 2)
            # the route template (/v1/messages/{message_id}), never the raw path
            if self.metrics:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                HTTP_REQUEST_DURATION.labels(scope["method"], route, status_class(status)).observe(elapsed)
            # successful requests are the bulk (webhooks at thousands a second): DEBUG;
            # errors and slow answers always reach the log
            level = "info" if status >= 400 or duration_ms > 1000 else "debug"
            getattr(log, level)("request", method=scope["method"], path=scope["path"], status=status,
                                duration_ms=duration_ms)
            structlog.contextvars.clear_contextvars()


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           details: Any = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse(status_code=status, content={"error": error}, headers=headers)


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def _field(loc: list[Any]) -> str:
    """``to``, ``recipients.2.to``, ``query.limit``: the first segment says where, unless body."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        where = _field(err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def _json_position(document: Any, position: int) -> str:
    """``line L column C`` of a character offset into the request body."""
    text = document.decode("utf-8", "replace") if isinstance(document, bytes | bytearray) else str(document or "")
    before = text[:position]
    return f"line {before.count(chr(10)) + 1} column {position - (before.rfind(chr(10)) + 1) + 1}"


def _body_problem(request: Request, exc: RequestValidationError) -> str | None:
    """A clearer word for the two ways a body is unreadable as a whole: malformed JSON,
    and a form (or another type) sent to a JSON route."""
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            loc = err.get("loc", ())
            position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            reason = (err.get("ctx") or {}).get("error", "not JSON")
            return f"malformed JSON at {_json_position(exc.body, position)}: {reason}"
        if list(err.get("loc", ())) == ["body"] and err.get("type") in ("model_attributes_type", "dict_type"):
            sent = request.headers.get("content-type", "").split(";")[0].strip() or "no Content-Type"
            if "json" not in sent:
                return f"the body must be JSON (Content-Type: application/json), not {sent}"
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Every 4xx/5xx leaves as ``{"error": {"code", "message"}}``."""

    @app.exception_handler(HubError)
    async def _hub_error(_request: Request, exc: HubError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.body(), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        problem = _body_problem(request, exc)
        if problem is not None:
            return _error(422, "invalid_body", problem, details=errors)
        return _error(422, "validation_error", _validation_message(errors), details=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error" if exc.status_code < 500 else "server_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return _error(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return _error(500, "internal_error", "internal error; quote the request id to support",
                      headers={"X-Request-ID": request.scope.get("state", {}).get("request_id", "")})


# Where `hub serve` says which port its in-process sandbox took (`hub sandbox-url`
# reads it): a person trying the hub drives the sandbox, e.g. to simulate a reply.
SANDBOX_URL_FILE = "sandbox.url"


class SandboxUrlFile:
    """The in-process sandbox's URL in a file, for as long as the sandbox runs."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(url + "\n")

    def stop(self) -> None:
        self.path.unlink(missing_ok=True)


# What `hub serve` runs in-process (api, worker, relay, beat), for `hub health` without Redis.
SERVICES_FILE = "services.json"


def start_services(runtime: Runtime) -> list[Any]:
    """What runs beside the API in this process: the sandbox providers (sandbox mode
    without HUB_SANDBOX_URL), the embedded worker and beat (no Redis), the relay."""
    started: list[Any] = []
    settings = runtime.settings
    if settings.use_sandbox and not runtime.sandbox_url:
        from connectors.sandbox.app import create_sandbox_app
        from connectors.sandbox.server import ThreadedServer

        sandbox = ThreadedServer(create_sandbox_app(hub_url=settings.effective_public_url)).start()
        runtime.sandbox_url = sandbox.url
        started.append(SandboxUrlFile(settings.var_dir / SANDBOX_URL_FILE, sandbox.url))
        started.append(sandbox)
        log.info("sandbox providers started", url=sandbox.url)
    if settings.use_embedded_worker:
        from hub.queue import EmbeddedWorker

        started.append(EmbeddedWorker(runtime).start())
    if settings.use_embedded_beat:
        from hub.queue import EmbeddedBeat

        started.append(EmbeddedBeat(runtime).start())
    if settings.use_relay_in_process:
        from hub.relay import RelayThread

        runtime.relay = RelayThread(runtime).start()
        started.append(runtime.relay)
    if not settings.redis_url:
        import json
        import os

        kinds = ["api"] + [kind for kind, on in (("worker", settings.use_embedded_worker),
                                                 ("relay", settings.use_relay_in_process),
                                                 ("beat", settings.use_embedded_beat)) if on]
        started.append(SandboxUrlFile(settings.var_dir / SERVICES_FILE, json.dumps(
            {"url": f"http://{settings.host}:{settings.port}", "pid": os.getpid(), "services": kinds})))
    return started


class HubApp(FastAPI):
    """FastAPI, with provider webhooks taken before the middleware stack (see
    hub.webhooks.api.webhook_lane: the hot path)."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/webhooks/"):
            from hub.webhooks.api import webhook_kind, webhook_lane

            kind = webhook_kind(scope["path"])
            if kind is not None:
                await webhook_lane(self.state.runtime, kind, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the hub's ASGI app. Pass ``runtime`` to share one with the caller (tests)."""
    settings = runtime.settings if runtime else (settings or Settings())
    problems = settings.production_problems()
    if problems:
        raise SettingsError("; ".join(problems))
    runtime = runtime or build_runtime(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services = start_services(runtime)
        log.info("hub started", public_url=settings.effective_public_url, sandbox_url=runtime.sandbox_url,
                 embedded_worker=settings.use_embedded_worker, relay_in_process=settings.use_relay_in_process)
        try:
            yield
        finally:
            for service in reversed(services):
                service.stop()
            runtime.relay = None
            from hub.webhooks.ingest import close_event_store

            await close_event_store(runtime)

    app = HubApp(
        lifespan=lifespan,
        title="Integrations Hub",
        version="1.0.0",
        description="One API for a tenant's SMS, WhatsApp, e-mail, calendar and payment integrations.",
        docs_url=None,  # served from local assets by hub.api_docs, not from a CDN
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    from hub.api_docs import install_api_docs

    install_api_docs(app)

    from hub.audit.api import router as audit_router
    from hub.auth.api import router as auth_router
    from hub.auth.perimeter import AuthenticateBeforeBody
    from hub.broadcasts.api import router as broadcasts_router
    from hub.calendar.api import public_router as google_callback_router
    from hub.calendar.api import router as calendar_router
    from hub.contacts.api import router as contacts_router
    from hub.contacts.unsubscribe_api import router as unsubscribe_router
    from hub.events.api import router as events_router
    from hub.health.api import router as health_router
    from hub.input_guard import RejectNulCharacters
    from hub.integrations.api import router as integrations_router
    from hub.messaging.api import router as messaging_router
    from hub.metrics.api import router as metrics_router
    from hub.onboarding.api import router as onboarding_router
    from hub.operations.api import router as operations_router
    from hub.platform.api import router as platform_router
    from hub.ratelimit import RateLimitHeadersMiddleware
    from hub.security_headers import SecurityHeadersMiddleware
    from hub.templates.api import router as templates_router
    from hub.webhooks.api import router as webhooks_router
    from hub.whatsapp.api import router as whatsapp_router
    from hub.whatsapp.api import webhook_router as whatsapp_webhook_router

    # calendar_router before integrations_router: /v1/integrations/google must not match /v1/integrations/{kind}
    # webhooks first: the hot path is not matched against every API route before its own
    for router in (webhooks_router, whatsapp_webhook_router, health_router, metrics_router, auth_router,
                   operations_router, platform_router,
                   calendar_router, google_callback_router, whatsapp_router, integrations_router, onboarding_router,
                   messaging_router, templates_router, contacts_router, broadcasts_router, events_router,
                   audit_router, unsubscribe_router):
        app.include_router(router)
    app.add_middleware(RejectNulCharacters)  # innermost: its refusals carry the request id and limits
    # before anything reads a body: the token checked, then the body capped while it streams
    app.add_middleware(AuthenticateBeforeBody)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=settings.metrics_enabled)
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.trusted_proxy_list:
        # outermost: rate limits and audit rows see the client the trusted proxy names
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    return app
