"""Provider webhooks: one path for every connector kind (``POST /webhooks/{kind}``)
plus the two URLs the onboarding gives Twilio.

The handlers read the raw body themselves (FastAPI parses nothing: signatures are
over the exact bytes and fields the provider sent) and run the short database work in
the thread pool. They are outside the per-IP rate limit (providers share addresses)
but the body is capped. Signatures are checked against ``HUB_PUBLIC_URL`` + path +
query, the URL the provider called, never the internal one a proxy forwards to.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from connectors.base import WebhookRequest
from hub.errors import ErrorBody, HubError
from hub.metrics import WEBHOOKS_REJECTED, webhook_received
from hub.runtime import Runtime
from hub.webhooks import ingest
from hub.webhooks import service as webhooks
from hub.webhooks.schemas import TWILIO_FORM_SCHEMA, WebhookReceipt

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
log = structlog.get_logger("hub.webhooks")

MAX_BODY_BYTES = 1_000_000
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class PayloadTooLarge(HubError):
    status_code, code = 413, "payload_too_large"


def _errors(**texts: str) -> dict[int | str, dict[str, Any]]:
    return {int(status[1:]): {"model": ErrorBody, "description": text} for status, text in texts.items()}


_ERRORS = _errors(
    s400="the provider's payload could not be read",
    s403="the signature does not verify with the integration's secret (nothing stored)",
    s404="no connector of this kind, or no integration owns the number / id (nothing stored)",
    s413="body larger than 1 MB",
)
_TWIML_OK = {200: {"description": "stored (or already stored): an empty TwiML answer",
                   "content": {"application/xml": {"schema": {"type": "string"}}}}}
_TWILIO_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": TWILIO_FORM_SCHEMA}},
    },
    "parameters": [{"name": "X-Twilio-Signature", "in": "header", "required": False, "schema": {"type": "string"},
                    "description": "Twilio's HMAC-SHA1 signature of the public URL and the form"}],
}
_ANY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object",
                                                             "additionalProperties": {"type": "string"}}},
        },
    },
}


async def read_body(receive: Any) -> bytes:
    """The raw body from the ASGI channel, refused past MAX_BODY_BYTES."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge("webhook body larger than 1 MB")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def webhook_request(runtime: Runtime, scope: dict, body: bytes) -> WebhookRequest:
    """What the connector sees; the URL is the public one the provider signed."""
    path = scope["path"]
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root):]
    query = scope.get("query_string", b"").decode("latin-1")
    return WebhookRequest(
        method=scope["method"],
        url=runtime.settings.effective_public_url + path + (f"?{query}" if query else ""),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        body=body,
        query=dict(parse_qsl(query, keep_blank_values=True)),
    )


def _store_sync(runtime: Runtime, kind: str, webhook: WebhookRequest) -> webhooks.Receipt:
    return webhooks.receive_webhook(runtime=runtime, kind=kind, request=webhook)


async def store(runtime: Runtime, kind: str, webhook: WebhookRequest) -> webhooks.Receipt:
    """Route, verify, store: on the event loop with PostgreSQL, in a thread with SQLite."""
    if runtime.engine.dialect.name == "postgresql":
        receipt = await ingest.receive_webhook_async(runtime=runtime, kind=kind, request=webhook)
    else:
        receipt = await run_in_threadpool(_store_sync, runtime, kind, webhook)
    if receipt.stored:
        runtime.wake_relay()  # committed: the relay hands it to a worker soon, not at its next tick
    return receipt


async def handle(runtime: Runtime, kind: str, scope: dict, receive: Any) -> Response:
    """One webhook, start to answer (raises HubError for 4xx)."""
    declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge("webhook body larger than 1 MB")
    receipt = await store(runtime, kind, webhook_request(runtime, scope, await read_body(receive)))
    if kind == "twilio":
        return Response(TWIML_EMPTY, media_type="application/xml")
    return JSONResponse(WebhookReceipt(stored=receipt.stored, duplicates=receipt.duplicates).model_dump())


# Meta's app settings name one callback URL; /webhooks/whatsapp is the documented one
_PATH_KINDS = {"/webhooks/twilio/messaging": "twilio", "/webhooks/twilio/status": "twilio",
               "/webhooks/whatsapp": "whatsapp_cloud"}
_KIND = re.compile(r"^/webhooks/([a-z][a-z0-9_]{0,63})$")


def webhook_kind(path: str) -> str | None:
    """The connector kind a POST to ``path`` is for, or None when it is no webhook URL."""
    if path in _PATH_KINDS:
        return _PATH_KINDS[path]
    match = _KIND.match(path)
    return match.group(1) if match else None


async def webhook_lane(runtime: Runtime, kind: str, scope: dict, receive: Any, send: Any) -> None:
    """The webhook routes served ahead of the framework's middleware stack.

    Webhooks are the one path measured in thousands a second, and the generic stack
    (exception, telemetry, body-limit, request-context and rate-limit middleware,
    dependency resolution) cost more than the webhook itself; the routes below stay
    declared for the OpenAPI document and behave the same.
    """
    request_id = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
    if not request_id or len(request_id) > 128:
        request_id = uuid.uuid4().hex
    # a label per connector kind, not per path anyone may POST to
    counted = runtime.settings.metrics_enabled
    label = kind if kind in runtime.registry else "unknown"
    if counted:
        webhook_received(label)
    try:
        response = await handle(runtime, kind, scope, receive)
    except HubError as exc:
        if counted:
            WEBHOOKS_REJECTED.labels(label, exc.code).inc()
        log.info("webhook refused", kind=kind, status=exc.status_code, code=exc.code, request_id=request_id)
        response = JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
    except Exception:
        if counted:
            WEBHOOKS_REJECTED.labels(label, "internal_error").inc()
        log.exception("webhook failed", kind=kind, request_id=request_id)
        response = JSONResponse({"error": {"code": "internal_error",
                                           "message": "internal error; quote the request id to support"}},
                                status_code=500)
    response.headers["x-request-id"] = request_id
    response.headers["x-content-type-options"] = "nosniff"  # as hub.security_headers does for the rest
    await response(scope, receive, send)


async def _receive(request: Request, kind: str) -> Response:
    return await handle(request.app.state.runtime, kind, request.scope, request.receive)


@router.post("/twilio/messaging", response_class=Response, responses={**_TWIML_OK, **_ERRORS},
             openapi_extra=_TWILIO_BODY)
async def twilio_messaging(request: Request) -> Response:
    """Twilio's incoming-message webhook (a number's SmsUrl): routed by `To`, then
    `MessagingServiceSid`, then `AccountSid`; verified with the integration's auth
    token; stored once per `MessageSid`; answered with an empty TwiML `<Response/>`.
    The message is threaded into its conversation by a worker afterwards."""
    return await _receive(request, "twilio")


@router.post("/twilio/status", response_class=Response, responses={**_TWIML_OK, **_ERRORS},
             openapi_extra=_TWILIO_BODY)
async def twilio_status(request: Request) -> Response:
    """Twilio's message status callback: routed by our number (`From`), verified, stored
    once per `MessageSid` and status. A worker moves the message forward, never back."""
    return await _receive(request, "twilio")


@router.post("/whatsapp", response_class=Response,
             responses={200: {"description": "stored (or already stored)",
                              "content": {"application/json": {"schema": WebhookReceipt.model_json_schema()}}},
                        **_ERRORS},
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": {"type": "object"}}}},
                            "parameters": [{"name": "X-Hub-Signature-256", "in": "header", "required": False,
                                            "schema": {"type": "string"},
                                            "description": "sha256=<hex HMAC-SHA256(app secret, raw body)>"}]})
async def whatsapp_messages(request: Request) -> Response:
    """Meta's WhatsApp Cloud API `messages` webhook (same as `POST /webhooks/whatsapp_cloud`):
    verified with the app secret over the raw body; each change of a batched POST is
    stored for the tenant owning its `metadata.phone_number_id` (a body that does not
    verify for every tenant it names is a 403 and nothing is stored)."""
    return await _receive(request, "whatsapp_cloud")


@router.post(
    "/{kind}",
    response_class=Response,
    responses={
        200: {"description": "stored (or already stored); Twilio gets an empty TwiML answer instead",
              "content": {"application/json": {"schema": WebhookReceipt.model_json_schema()},
                          "application/xml": {"schema": {"type": "string"}}}},
        **_ERRORS,
    },
    openapi_extra=_ANY_BODY,
)
async def receive(kind: str, request: Request) -> Response:
    """Any connector's webhook (`twilio`, `whatsapp_cloud`, `google_calendar` …): the
    connector names the route, the integration's secret verifies the provider's
    signature (403 and nothing stored on a mismatch), each event is stored once per
    provider event id (a repeat is a 200 and a no-op), then a worker handles it."""
    return await _receive(request, kind)
