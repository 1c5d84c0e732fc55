"""Meta's WhatsApp Cloud API, emulated: the Graph ``messages`` and ``message_templates``
endpoints, signed ``messages`` webhooks, and failure injection.

Graph paths are ``/{version}/...`` on the sandbox root; ``version`` only matches Graph's
``vNN.N`` form (a path convertor), so Stripe's ``/v1/...`` and Twilio's ``/2010-04-01/...``
never collide with them. Like Meta, it accepts any phone number ID with any bearer token
(remembered per number) unless ``configure`` pinned a token. After an accepted send it
posts ``sent -> delivered -> read`` (or ``failed``) status webhooks, signed with
``X-Hub-Signature-256``, to the number's webhook URL. Control endpoints live under
``/_sandbox/meta/`` and mirror the ``MetaSandbox`` methods.

Deliberately independent of ``connectors.whatsapp_cloud``: it signs and builds payloads
on its own, so a bug in the connector cannot hide behind the same bug here.

Templates (Meta, "Template fundamentals",
https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/overview): a
send gives exactly as many body parameters as the template has placeholders (else 132000);
a template whose ``parameter_format`` is NAMED (``{{first_name}}``) takes each parameter with
its ``parameter_name``, a POSITIONAL one (``{{1}}``) by position.

WhatsApp usernames (Meta, "Business-scoped user IDs",
https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/):
every inbound message names the user's BSUID (``contacts[].user_id``,
``messages[].from_user_id``); a user with a username and no phone on record comes with
no ``from``/``wa_id`` at all (simulate one with ``user_id`` and no ``from``). A send
reaches a BSUID with ``recipient`` instead of ``to`` (``to`` wins when both are given),
its answer's ``contacts[]`` then carries ``user_id`` and no ``wa_id``, and its status
webhooks carry ``recipient_user_id`` and no ``recipient_id``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor

ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
MAX_INJECTED_DELAY = 10.0  # seconds; a "timeout" failure never holds a request longer
DEFAULT_WABA_ID = "102290129340398"
FailureKind = Literal["131026", "131047", "130429", "131056", "5xx", "timeout"]

# code -> (HTTP status, title, details), as Meta's error-code table lists them: throttling
# codes come back as HTTP 400, not 429 (``http_status`` on a failure overrides this).
_GRAPH_ERRORS: dict[int, tuple[int, str, str]] = {
    100: (400, "Invalid parameter", "Invalid parameter"),
    131000: (500, "Something went wrong", "Something went wrong"),
    131016: (503, "Service unavailable", "A service is temporarily unavailable."),
    131026: (400, "Message undeliverable", "Message Undeliverable."),
    131047: (
        400,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    130429: (400, "Rate limit hit", "Cloud API message throughput has been reached."),
    131056: (
        400,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone number to the "
        "same phone number in a short period of time.",
    ),
    132000: (400, "Number of parameters does not match the expected number of params", ""),
    132001: (404, "Template name does not exist in the translation", ""),
    132015: (400, "Template is Paused", "Template is paused due to low quality."),
    132016: (400, "Template is Disabled", "Template has been disabled."),
}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

DEFAULT_TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "hello_world",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
            {
                "type": "BODY",
                "text": "Welcome and congratulations!! This message demonstrates your ability "
                "to send a WhatsApp message notification from the Cloud API, hosted by Meta.",
            },
        ],
    },
    {
        "name": "appointment_reminder",
        "language": "pt_BR",
        "status": "APPROVED",
        "category": "UTILITY",
        "components": [
            {"type": "BODY", "text": "Olá {{1}}, lembramos da sua consulta em {{2}}. Responda SIM para confirmar."}
        ],
    },
]


class GraphVersionConvertor(Convertor[str]):
    """``v21.0``-style path segments only."""

    regex = r"v[0-9]+\.[0-9]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def _register_graph_version() -> None:
    if "graph_version" not in CONVERTOR_TYPES:
        register_url_convertor("graph_version", GraphVersionConvertor())


def sign(app_secret: str, body: bytes) -> str:
    """The value Meta puts in ``X-Hub-Signature-256``."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _new_wamid(wa_id: str) -> str:
    # Meta's ids are base64 of an opaque binary record that embeds the recipient.
    return "wamid." + base64.b64encode(b"\x1c\x18" + wa_id.encode() + b"\x15\x02" + os.urandom(12)).decode()


def _fbtrace_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=")


# A BSUID: ISO country code, optional "ENT" (a parent BSUID), a period, 1-128 alphanumerics
_BSUID = re.compile(r"\A[A-Z]{2}(?:\.ENT)?\.[A-Za-z0-9]{1,128}\Z")


def _inbound_contact(message: InboundMessage) -> dict[str, Any]:
    """The ``contacts[]`` entry of an inbound message: wa_id only when the phone is shown."""
    profile: dict[str, Any] = {"name": message.profile_name}
    if message.username:
        profile["username"] = message.username
    contact: dict[str, Any] = {"profile": profile}
    if message.from_:
        contact["wa_id"] = message.from_
    if message.user_id:
        contact["user_id"] = message.user_id
    return contact


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _body_placeholders(template: dict[str, Any]) -> list[str]:
    """The BODY's distinct placeholders in order of first appearance."""
    for component in template.get("components") or []:
        if str(component.get("type", "")).upper() == "BODY":
            return list(dict.fromkeys(_PLACEHOLDER.findall(str(component.get("text") or ""))))
    return []


def _body_placeholder_count(template: dict[str, Any]) -> int:
    return len(_body_placeholders(template))


# --- control-plane shapes (Python methods and /_sandbox/meta/ bodies) --------------


class NumberConfig(BaseModel):
    """Where a business phone number's webhooks go and how they are signed."""

    phone_number_id: str
    webhook_url: str | None = None
    app_secret: str
    waba_id: str = DEFAULT_WABA_ID
    display_phone_number: str = "15550783881"
    verified_name: str = "Clínica Sandbox"
    # when set, Graph calls for this number must carry exactly this bearer token
    access_token: str | None = None
    # whether the app is subscribed to the WABA's webhooks (as the dashboard's setup does);
    # False leaves it to POST /{waba_id}/subscribed_apps, as a hub installing it must do
    subscribed: bool = True


class FailureSpec(BaseModel):
    """A failure to inject into sends, for one recipient (``to``) or all of them."""

    kind: FailureKind
    to: str | None = None
    count: int | None = Field(default=None, ge=1, description="how many sends fail; None = until cleared")
    # "async": accept the send, then report it ``failed`` by webhook (how Meta usually
    # surfaces 131026/131047); "sync": answer the POST with the Graph error.
    mode: Literal["sync", "async"] = "sync"
    http_status: int | None = Field(default=None, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    delay: float = Field(default=1.0, ge=0, le=MAX_INJECTED_DELAY, description="hold time of a timeout")


class InboundMessage(BaseModel):
    """A customer's message to simulate; ``type`` picks which fields matter."""

    model_config = ConfigDict(populate_by_name=True)

    phone_number_id: str
    from_: str | None = Field(default=None, alias="from",
                              description="the customer's wa_id; omit (with user_id) for a username-only user")
    user_id: str | None = Field(default=None, description="the customer's business-scoped user id (BSUID)")
    username: str | None = Field(default=None, description="the customer's WhatsApp username")
    type: Literal["text", "image", "audio", "video", "document", "sticker", "interactive", "button", "location"] = (
        "text"
    )
    text: str = Field(default="", description="text body, media caption, or button/reply title")
    profile_name: str = "Cliente Sandbox"
    message_id: str | None = None
    timestamp: int | None = None
    context_message_id: str | None = Field(default=None, description="the business message being answered")
    media_id: str = "1003383421387256"
    mime_type: str | None = None
    filename: str | None = None
    reply_kind: Literal["button_reply", "list_reply"] = "button_reply"
    reply_id: str = "reply-1"
    payload: str | None = Field(default=None, description="quick-reply button payload (defaults to text)")
    latitude: float = -23.5613
    longitude: float = -46.6565
    location_name: str | None = None
    address: str | None = None


_DEFAULT_MIME = {
    "image": "image/jpeg",
    "audio": "audio/ogg; codecs=opus",
    "video": "video/mp4",
    "document": "application/pdf",
    "sticker": "image/webp",
}


@dataclass
class SentMessage:
    message_id: str
    phone_number_id: str
    to: str
    wa_id: str  # empty for a send to a BSUID
    type: str
    payload: dict[str, Any]
    access_token: str
    user_id: str | None = None  # the BSUID a send by ``recipient`` went to
    status: str = "accepted"
    created_at: float = field(default_factory=time.time)


@dataclass
class WebhookDelivery:
    url: str
    kind: Literal["status", "inbound"]
    body: bytes
    signature: str
    status_code: int | None = None
    error: str | None = None


@dataclass
class _Failure:
    spec: FailureSpec
    remaining: int | None


class SandboxNotConfigured(LookupError):
    pass


class NotSubscribed(SandboxNotConfigured):
    """The number's WABA has no subscribed app: Meta would send it no webhook at all."""


SANDBOX_APP_ID = "1234567890123456"  # the app the hub's tokens belong to, as subscribed_apps lists it


class MetaSandbox:
    """State of the emulated Cloud API; shared by the routes and by tests in-process."""

    def __init__(self, *, hub_url: str | None = None, status_delay: float = 0.05) -> None:
        self.hub_url = hub_url
        self.status_delay = status_delay
        # Some Brazilian accounts predate the mobile 9th digit: Meta then reports their
        # wa_id without it. Off by default; turn on to exercise the hub's matching.
        self.drop_brazil_ninth_digit = False
        self._lock = threading.Lock()
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()

    # --- control (mirrored under /_sandbox/meta/) -----------------------------------
    def reset(self) -> None:
        """Forget numbers, sends, deliveries and failures; restore the default templates."""
        with self._lock:
            self._generation += 1  # in-flight status tasks see this and stop
            self._numbers: dict[str, NumberConfig] = {}
            self._tokens: dict[str, str] = {}
            self._sent: list[SentMessage] = []
            self._deliveries: list[WebhookDelivery] = []
            self._failures: list[_Failure] = []
            self._subscribed_wabas: set[str] = set()
            self._templates: dict[str | None, list[dict[str, Any]]] = {None: self._with_ids(DEFAULT_TEMPLATES)}

    def configure(
        self,
        phone_number_id: str,
        webhook_url: str | None,
        app_secret: str,
        *,
        waba_id: str = DEFAULT_WABA_ID,
        display_phone_number: str = "15550783881",
        verified_name: str = "Clínica Sandbox",
        access_token: str | None = None,
        subscribed: bool = True,
    ) -> NumberConfig:
        """Point a phone number's webhooks at ``webhook_url`` (``None``: the hub's
        ``/webhooks/whatsapp_cloud``), signed with ``app_secret``."""
        number = NumberConfig(
            phone_number_id=phone_number_id,
            webhook_url=webhook_url,
            app_secret=app_secret,
            waba_id=waba_id,
            display_phone_number=display_phone_number,
            verified_name=verified_name,
            access_token=access_token,
            subscribed=subscribed,
        )
        with self._lock:
            self._numbers[phone_number_id] = number
            if subscribed:
                self._subscribed_wabas.add(waba_id)
        return number

    def inject_failure(
        self, kind: FailureKind, *, to: str | None = None, count: int | None = None, **options: Any
    ) -> None:
        """Make sends fail (see ``FailureSpec`` for ``mode``, ``http_status``, ``retry_after``, ``delay``)."""
        spec = FailureSpec(kind=kind, to=to, count=count, **options)
        with self._lock:
            self._failures.append(_Failure(spec=spec, remaining=spec.count))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def set_templates(self, templates: Sequence[dict[str, Any]], *, waba_id: str | None = None) -> None:
        """Replace the template store of ``waba_id`` (``None``: every account without its own).
        Items are Graph-shaped: ``name, language, status, category, components``."""
        with self._lock:
            self._templates[waba_id] = self._with_ids(templates)

    def templates_for(self, waba_id: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(t) for t in self._templates.get(waba_id, self._templates[None])]

    def sent_messages(self, phone_number_id: str | None = None) -> list[SentMessage]:
        with self._lock:
            return [m for m in self._sent if phone_number_id is None or m.phone_number_id == phone_number_id]

    def deliveries(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._deliveries)

    def number_config(self, phone_number_id: str) -> NumberConfig | None:
        """Where the number's webhooks go (None: never configured)."""
        return self._numbers_get(phone_number_id)

    def token_for(self, phone_number_id: str) -> str | None:
        """The bearer token last used for this number."""
        with self._lock:
            return self._tokens.get(phone_number_id)

    def build_inbound(self, messages: Sequence[InboundMessage]) -> tuple[str, bytes, dict[str, str], list[str]]:
        """(url, body, headers, message ids) of a webhook carrying ``messages``, one entry
        each (Meta batches several entries in one POST). The first message's number
        decides the URL and the signing secret."""
        if not messages:
            raise ValueError("no messages to simulate")
        number = self._number(messages[0].phone_number_id)
        entries, ids = [], []
        for message in messages:
            msg_number = self._numbers_get(message.phone_number_id) or number
            if not message.from_ and not message.user_id:
                raise ValueError("an inbound message needs 'from' (a phone) or 'user_id' (a BSUID)")
            wamid = message.message_id or _new_wamid(_digits(message.from_ or "") or (message.user_id or ""))
            ids.append(wamid)
            entries.append(
                {
                    "id": msg_number.waba_id,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": msg_number.display_phone_number,
                                    "phone_number_id": message.phone_number_id,
                                },
                                "contacts": [_inbound_contact(message)],
                                "messages": [self._inbound_message(message, wamid, msg_number)],
                            },
                            "field": "messages",
                        }
                    ],
                }
            )
        body = json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()
        return self._webhook_url(number), body, self._webhook_headers(number, body), ids

    def simulate_inbound(self, messages: Sequence[InboundMessage], *, timeout: float = 5.0) -> tuple[int, list[str]]:
        """POST customer messages to the webhook now, from the calling thread.
        Returns the receiver's HTTP status and the message ids (wamids)."""
        url, body, headers, ids = self.build_inbound(messages)
        self._require_subscription(messages[0].phone_number_id)
        delivery = WebhookDelivery(url=url, kind="inbound", body=body, signature=headers["X-Hub-Signature-256"])
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=timeout)
            delivery.status_code = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = repr(exc)
        self._record(delivery)
        if delivery.status_code is None:
            raise ConnectionError(f"webhook {url} unreachable: {delivery.error}")
        return delivery.status_code, ids

    async def simulate_inbound_async(self, messages: Sequence[InboundMessage]) -> tuple[int, list[str]]:
        """``simulate_inbound`` for callers on an event loop (the control endpoint)."""
        url, body, headers, ids = self.build_inbound(messages)
        self._require_subscription(messages[0].phone_number_id)
        delivery = await self._post_webhook(url, body, headers, kind="inbound")
        if delivery.status_code is None:
            raise ConnectionError(f"webhook {url} unreachable: {delivery.error}")
        return delivery.status_code, ids

    def subscribed(self, waba_id: str) -> bool:
        with self._lock:
            return waba_id in self._subscribed_wabas

    def _require_subscription(self, phone_number_id: str) -> None:
        """Meta sends a WABA's webhooks only to apps subscribed to it (subscribed_apps)."""
        number = self._number(phone_number_id)
        if not self.subscribed(number.waba_id):
            raise NotSubscribed(f"no app is subscribed to WABA {number.waba_id}: Meta sends it no webhooks "
                                "(POST /{waba_id}/subscribed_apps)")

    def handle_subscribed_apps(self, request: Request, waba_id: str) -> Response:
        """GET lists the app when subscribed ({"data": [...]}), POST subscribes it and
        DELETE unsubscribes it ({"success": true}), as the WABA subscribed_apps edge does:
        https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account/subscribed_apps/"""
        auth = self._authorize(request, None)
        if isinstance(auth, JSONResponse):
            return auth
        with self._lock:
            if request.method == "POST":
                self._subscribed_wabas.add(waba_id)
            elif request.method == "DELETE":
                self._subscribed_wabas.discard(waba_id)
            else:
                data = ([{"whatsapp_business_api_data": {"id": SANDBOX_APP_ID, "name": "Integrations Hub",
                                                          "link": f"https://www.facebook.com/{SANDBOX_APP_ID}"}}]
                        if waba_id in self._subscribed_wabas else [])
                return JSONResponse({"data": data})
        return JSONResponse({"success": True})

    # --- internals ------------------------------------------------------------------
    @staticmethod
    def _with_ids(templates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for template in templates:
            item = json.loads(json.dumps(template))
            key = f"{item.get('name')}:{item.get('language')}".encode()
            item.setdefault("id", str(int(hashlib.sha256(key).hexdigest()[:13], 16)))
            # {{first_name}} placeholders make a NAMED template, {{1}} a POSITIONAL one
            named = any(not n.isdigit() for n in _body_placeholders(item))
            item.setdefault("parameter_format", "NAMED" if named else "POSITIONAL")
            out.append(item)
        return out

    def _numbers_get(self, phone_number_id: str) -> NumberConfig | None:
        with self._lock:
            return self._numbers.get(phone_number_id)

    def _number(self, phone_number_id: str) -> NumberConfig:
        number = self._numbers_get(phone_number_id)
        if number is None:
            raise SandboxNotConfigured(f"phone number {phone_number_id} has no webhook; call configure() first")
        return number

    def _webhook_url(self, number: NumberConfig) -> str:
        if number.webhook_url:
            return number.webhook_url
        if self.hub_url:
            return self.hub_url.rstrip("/") + "/webhooks/whatsapp_cloud"
        raise SandboxNotConfigured(f"phone number {number.phone_number_id} has no webhook URL and no hub_url is set")

    @staticmethod
    def _webhook_headers(number: NumberConfig, body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            "X-Hub-Signature-256": sign(number.app_secret, body),
        }

    def _record(self, delivery: WebhookDelivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    async def _post_webhook(
        self, url: str, body: bytes, headers: dict[str, str], *, kind: Literal["status", "inbound"]
    ) -> WebhookDelivery:
        delivery = WebhookDelivery(url=url, kind=kind, body=body, signature=headers["X-Hub-Signature-256"])
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.post(url, content=body, headers=headers)
            delivery.status_code = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = repr(exc)
        self._record(delivery)
        return delivery

    def _wa_id(self, recipient: str) -> str:
        wa_id = _digits(recipient)
        if self.drop_brazil_ninth_digit and len(wa_id) == 13 and wa_id.startswith("55") and wa_id[4] == "9":
            wa_id = wa_id[:4] + wa_id[5:]
        return wa_id

    def _inbound_message(self, message: InboundMessage, wamid: str, number: NumberConfig) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": wamid,
            "timestamp": str(message.timestamp or int(time.time())),
            "type": message.type,
        }
        if message.from_:
            out["from"] = message.from_
        if message.user_id:
            out["from_user_id"] = message.user_id
        if message.context_message_id:
            out["context"] = {"from": number.display_phone_number, "id": message.context_message_id}
        if message.type == "text":
            out["text"] = {"body": message.text}
        elif message.type in _DEFAULT_MIME:
            media: dict[str, Any] = {
                "mime_type": message.mime_type or _DEFAULT_MIME[message.type],
                "sha256": base64.b64encode(hashlib.sha256(message.media_id.encode()).digest()).decode(),
                "id": message.media_id,
            }
            if message.text and message.type in {"image", "video", "document"}:
                media["caption"] = message.text
            if message.type == "document":
                media["filename"] = message.filename or "documento.pdf"
            if message.type == "audio":
                media["voice"] = True
            if message.type == "sticker":
                media["animated"] = False
            out[message.type] = media
        elif message.type == "interactive":
            reply: dict[str, Any] = {"id": message.reply_id, "title": message.text}
            if message.reply_kind == "list_reply":
                reply["description"] = ""
            out["interactive"] = {"type": message.reply_kind, message.reply_kind: reply}
        elif message.type == "button":
            out["button"] = {"payload": message.payload or message.text, "text": message.text}
        elif message.type == "location":
            location: dict[str, Any] = {"latitude": message.latitude, "longitude": message.longitude}
            if message.location_name:
                location["name"] = message.location_name
            if message.address:
                location["address"] = message.address
            out["location"] = location
        return out

    def _take_failure(self, wa_id: str) -> FailureSpec | None:
        with self._lock:
            for failure in self._failures:
                if failure.spec.to is not None and _digits(failure.spec.to) != wa_id:
                    continue
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                return failure.spec
        return None

    def _status_payload(self, number: NumberConfig, sent: SentMessage, status: str, error_code: int | None) -> bytes:
        item: dict[str, Any] = {
            "id": sent.message_id,
            "status": status,
            "timestamp": str(int(time.time())),
        }
        if sent.wa_id:
            item["recipient_id"] = sent.wa_id
        if sent.user_id:
            item["recipient_user_id"] = sent.user_id
        if status in {"sent", "delivered"}:
            category = "utility" if sent.type == "template" else "service"
            item["pricing"] = {"billable": category != "service", "pricing_model": "PMP", "category": category}
        if error_code is not None:
            _, title, details = _GRAPH_ERRORS[error_code]
            item["errors"] = [
                {
                    "code": error_code,
                    "title": title,
                    "message": title,
                    "error_data": {"details": details},
                    "href": ERROR_CODES_URL,
                }
            ]
        callback = sent.payload.get("biz_opaque_callback_data")
        if isinstance(callback, str):
            item["biz_opaque_callback_data"] = callback
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": number.display_phone_number,
                "phone_number_id": number.phone_number_id,
            },
            "statuses": [item],
        }
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [{"id": number.waba_id, "changes": [{"value": value, "field": "messages"}]}],
        }
        return json.dumps(envelope).encode()

    async def _report_statuses(self, sent: SentMessage, error_code: int | None, generation: int) -> None:
        number = self._numbers_get(sent.phone_number_id)
        if number is None:
            return
        try:
            url = self._webhook_url(number)
        except SandboxNotConfigured:
            return
        if not self.subscribed(number.waba_id):
            return  # no app subscribed to the WABA: Meta posts no status webhook either
        sequence = ["failed"] if error_code is not None else ["sent", "delivered", "read"]
        for status in sequence:
            await asyncio.sleep(self.status_delay)
            if generation != self._generation:
                return  # reset() happened: this send belongs to a forgotten world
            body = self._status_payload(number, sent, status, error_code)
            with self._lock:
                sent.status = status
            await self._post_webhook(url, body, self._webhook_headers(number, body), kind="status")

    def _schedule_statuses(self, sent: SentMessage, error_code: int | None) -> None:
        task = asyncio.get_running_loop().create_task(self._report_statuses(sent, error_code, self._generation))
        self._tasks.add(task)  # keep a reference until done, or the loop may drop it
        task.add_done_callback(self._tasks.discard)

    # --- Graph API handlers -----------------------------------------------------------
    def _authorize(self, request: Request, phone_number_id: str | None) -> str | JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return graph_error(
                401, 2500, "An active access token must be used to query information about the current user."
            )
        token = token.strip()
        number = self._numbers_get(phone_number_id) if phone_number_id else None
        if number is not None and number.access_token is not None and number.access_token != token:
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if phone_number_id:
            with self._lock:
                self._tokens[phone_number_id] = token
        return token

    def _check_template(self, number: NumberConfig | None, template: Any) -> JSONResponse | None:
        if not isinstance(template, dict) or not template.get("name"):
            return graph_error(400, 100, "Invalid parameter", details="Parameter 'template.name' is required")
        name = str(template["name"])
        language = template.get("language")
        code = str(language.get("code")) if isinstance(language, dict) and language.get("code") else ""
        store = self.templates_for(number.waba_id if number else None)
        match = next((t for t in store if t.get("name") == name and t.get("language") == code), None)
        missing = f"template name ({name}) does not exist in {code or 'the requested language'}"
        if match is None:
            return graph_error(404, 132001, _GRAPH_ERRORS[132001][1], details=missing)
        status = str(match.get("status", "")).upper()
        if status == "PAUSED":
            return graph_error(400, 132015, _GRAPH_ERRORS[132015][1], details=_GRAPH_ERRORS[132015][2])
        if status == "DISABLED":
            return graph_error(400, 132016, _GRAPH_ERRORS[132016][1], details=_GRAPH_ERRORS[132016][2])
        if status != "APPROVED":
            return graph_error(404, 132001, _GRAPH_ERRORS[132001][1], details=missing)
        given, names = 0, []
        for component in template.get("components") or []:
            if isinstance(component, dict) and str(component.get("type", "")).lower() == "body":
                parameters = component.get("parameters") or []
                given += len(parameters)
                names += [p.get("parameter_name") for p in parameters if isinstance(p, dict)]
        expected = _body_placeholder_count(match)
        if str(match.get("parameter_format", "")).upper() == "NAMED" and given == expected \
                and sorted(map(str, names)) != sorted(_body_placeholders(match)):
            # a NAMED template's parameters each name their placeholder (parameter_name)
            return graph_error(400, 132000, _GRAPH_ERRORS[132000][1],
                               details=f"body: parameter names {names} do not match the template's "
                               f"{_body_placeholders(match)}")
        if given != expected:
            return graph_error(
                400,
                132000,
                _GRAPH_ERRORS[132000][1],
                details=f"body: number of localizable_params ({given}) does not match the expected number of "
                f"params ({expected})",
            )
        return None

    @staticmethod
    def _check_content(payload: dict[str, Any]) -> JSONResponse | None:
        kind = payload.get("type", "text")
        if kind == "text":
            text = payload.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
                return graph_error(400, 100, "Invalid parameter", details="Parameter 'text.body' is required")
        elif kind in _DEFAULT_MIME:
            media = payload.get(kind)
            if not isinstance(media, dict) or not (media.get("link") or media.get("id")):
                return graph_error(400, 100, "Invalid parameter", details=f"Parameter '{kind}.link' or id required")
        elif kind not in {"template", "interactive", "location", "contacts", "reaction"}:
            return graph_error(400, 100, "Invalid parameter", details=f"Unsupported message type {kind!r}")
        return None

    async def handle_send(self, request: Request, version: str, phone_number_id: str) -> Response:
        auth = self._authorize(request, phone_number_id)
        if isinstance(auth, JSONResponse):
            return auth
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return graph_error(400, 100, "Invalid parameter", details="Request body is not JSON")
        if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "Invalid parameter", details="messaging_product must be 'whatsapp'")
        to, user_id = payload.get("to"), payload.get("recipient")
        if to is None and isinstance(user_id, str) and _BSUID.match(user_id):
            to = None  # reached by its business-scoped id (``to`` would win when given)
        elif not isinstance(to, str) or not _digits(to):
            return graph_error(400, 100, "Invalid parameter", details="Parameter 'to' is required")
        else:
            user_id = None
        problem = self._check_content(payload)
        number = self._numbers_get(phone_number_id)
        if problem is None and payload.get("type") == "template":
            problem = self._check_template(number, payload.get("template"))
        if problem is not None:
            return problem
        wa_id = self._wa_id(to) if to else ""
        failure = self._take_failure(_digits(to) if to else str(user_id))
        async_error: int | None = None
        if failure is not None:
            if failure.kind == "timeout":
                # hold the request past the client's timeout; Meta may still deliver it after
                await asyncio.sleep(min(failure.delay, MAX_INJECTED_DELAY))
            elif failure.mode == "async" and failure.kind in {"131026", "131047"}:
                async_error = int(failure.kind)
            else:
                code = 131000 if failure.kind == "5xx" else int(failure.kind)
                if failure.kind == "5xx" and failure.http_status == 503:
                    code = 131016
                return graph_error(
                    failure.http_status or _GRAPH_ERRORS[code][0],
                    code,
                    _GRAPH_ERRORS[code][1],
                    details=_GRAPH_ERRORS[code][2],
                    retry_after=failure.retry_after,
                    is_transient=True if code in {131000, 131016} else None,
                )
        sent = SentMessage(
            message_id=_new_wamid(wa_id or str(user_id)),
            phone_number_id=phone_number_id,
            to=to or str(user_id),
            wa_id=wa_id,
            user_id=user_id,
            type=str(payload.get("type", "text")),
            payload=payload,
            access_token=auth,
        )
        with self._lock:
            self._sent.append(sent)
        self._schedule_statuses(sent, async_error)
        answer_message: dict[str, Any] = {"id": sent.message_id}
        if sent.type == "template":
            answer_message["message_status"] = "accepted"
        return JSONResponse(
            {"messaging_product": "whatsapp",
             "contacts": [{"input": to, "wa_id": wa_id} if to else {"input": user_id, "user_id": user_id}],
             "messages": [answer_message]}
        )

    def handle_list_templates(self, request: Request, version: str, waba_id: str) -> Response:
        auth = self._authorize(request, None)
        if isinstance(auth, JSONResponse):
            return auth
        try:
            limit = max(1, min(int(request.query_params.get("limit", "25")), 1000))
            start = (
                int(base64.urlsafe_b64decode(request.query_params["after"]).decode())
                if ("after" in request.query_params)
                else 0
            )
        except (ValueError, UnicodeDecodeError):
            return graph_error(400, 100, "Invalid parameter", details="limit/after is not valid")
        templates = self.templates_for(waba_id)
        for key in ("name", "status", "language", "category"):
            if key in request.query_params:
                templates = [t for t in templates if str(t.get(key)) == request.query_params[key]]
        fields = [f for f in request.query_params.get("fields", "").split(",") if f]
        page = templates[start : start + limit]
        data = [{k: v for k, v in t.items() if not fields or k in fields or k == "id"} for t in page]

        def cursor(index: int) -> str:
            return base64.urlsafe_b64encode(str(index).encode()).decode()

        answer: dict[str, Any] = {"data": data}
        if page:
            answer["paging"] = {"cursors": {"before": cursor(start), "after": cursor(start + len(page))}}
            if start + len(page) < len(templates):
                answer["paging"]["next"] = str(request.url.include_query_params(after=cursor(start + len(page))))
        return JSONResponse(answer)

    def handle_get_object(self, request: Request, version: str, object_id: str) -> Response:
        auth = self._authorize(request, object_id)
        if isinstance(auth, JSONResponse):
            return auth
        number = self._numbers_get(object_id)
        return JSONResponse(
            {
                "verified_name": number.verified_name if number else "Clínica Sandbox",
                "display_phone_number": number.display_phone_number if number else "15550783881",
                "quality_rating": "GREEN",
                "code_verification_status": "VERIFIED",
                "id": object_id,
            }
        )


def graph_error(
    status: int,
    code: int,
    message: str,
    *,
    details: str | None = None,
    retry_after: float | None = None,
    is_transient: bool | None = None,
) -> JSONResponse:
    """A Graph API error answer, shaped like Meta's."""
    error: dict[str, Any] = {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if is_transient is not None:
        error["is_transient"] = is_transient
    error["fbtrace_id"] = _fbtrace_id()
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


class TemplatesIn(BaseModel):
    templates: list[dict[str, Any]]
    waba_id: str | None = None


class InboundIn(BaseModel):
    messages: list[InboundMessage] = Field(min_length=1)


def _sent_json(message: SentMessage) -> dict[str, Any]:
    return asdict(message)


def router(state: MetaSandbox) -> APIRouter:
    """Graph routes at ``/{version}/...`` plus control routes under ``/_sandbox/meta/``."""
    _register_graph_version()
    api = APIRouter()

    @api.post("/{version:graph_version}/{phone_number_id}/messages", include_in_schema=False)
    async def send_message(request: Request, version: str, phone_number_id: str) -> Response:
        return await state.handle_send(request, version, phone_number_id)

    @api.get("/{version:graph_version}/{waba_id}/message_templates", include_in_schema=False)
    def list_message_templates(request: Request, version: str, waba_id: str) -> Response:
        return state.handle_list_templates(request, version, waba_id)

    @api.api_route("/{version:graph_version}/{waba_id}/subscribed_apps", methods=["GET", "POST", "DELETE"],
                   include_in_schema=False)
    def subscribed_apps(request: Request, version: str, waba_id: str) -> Response:
        return state.handle_subscribed_apps(request, waba_id)

    @api.get("/{version:graph_version}/{object_id}", include_in_schema=False)
    def get_object(request: Request, version: str, object_id: str) -> Response:
        return state.handle_get_object(request, version, object_id)

    control = APIRouter(prefix="/_sandbox/meta", tags=["sandbox: meta"])

    @control.post("/numbers")
    def configure(number: NumberConfig) -> dict[str, Any]:
        """Set where a phone number's webhooks go and the app secret that signs them."""
        return state.configure(**number.model_dump()).model_dump(exclude={"app_secret", "access_token"})

    @control.post("/failures", status_code=201)
    def inject_failure(spec: FailureSpec) -> dict[str, Any]:
        """Make the next sends (to one recipient, or all) fail."""
        state.inject_failure(**spec.model_dump())
        return spec.model_dump()

    @control.delete("/failures", status_code=204)
    def clear_failures() -> Response:
        state.clear_failures()
        return Response(status_code=204)

    @control.put("/templates")
    def set_templates(body: TemplatesIn) -> dict[str, Any]:
        """Replace the message templates of one WhatsApp Business account (or the default)."""
        state.set_templates(body.templates, waba_id=body.waba_id)
        return {"templates": state.templates_for(body.waba_id)}

    @control.get("/messages")
    def list_sent(phone_number_id: str | None = None) -> dict[str, Any]:
        """Messages the sandbox accepted, oldest first."""
        return {"messages": [_sent_json(m) for m in state.sent_messages(phone_number_id)]}

    @control.get("/deliveries")
    def list_deliveries() -> dict[str, Any]:
        """Webhook POSTs the sandbox made and what the receiver answered."""
        return {"deliveries": [{**asdict(d), "body": json.loads(d.body)} for d in state.deliveries()]}

    @control.post("/inbound")
    async def simulate_inbound(body: InboundIn) -> Response:
        """Deliver customer messages (one batched, signed webhook POST)."""
        try:
            status_code, ids = await state.simulate_inbound_async(body.messages)
        except NotSubscribed as exc:
            return JSONResponse({"error": {"code": "not_subscribed", "message": str(exc)}}, status_code=409)
        except SandboxNotConfigured as exc:
            return JSONResponse({"error": {"code": "not_configured", "message": str(exc)}}, status_code=409)
        except ValueError as exc:
            return JSONResponse({"error": {"code": "invalid_message", "message": str(exc)}}, status_code=400)
        except ConnectionError as exc:
            return JSONResponse({"error": {"code": "webhook_unreachable", "message": str(exc)}}, status_code=502)
        return JSONResponse({"status_code": status_code, "message_ids": ids})

    @control.post("/reset", status_code=204)
    def reset() -> Response:
        state.reset()
        return Response(status_code=204)

    api.include_router(control)
    return api
