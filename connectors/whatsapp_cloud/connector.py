"""WhatsApp through Meta's Cloud API (Graph API over ``httpx``; Meta ships no Python SDK)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import (
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
    HealthCheck,
    InboundEvent,
    MessagingConnector,
    OutboundMessage,
    PermanentProviderError,
    ProviderError,
    SendResult,
    WebhookRequest,
)
from connectors.whatsapp_cloud.errors import provider_error_from_response, provider_error_from_transport
from connectors.whatsapp_cloud.events import parse_webhook, route_keys_of
from connectors.whatsapp_cloud.templates import ProviderTemplate, template_from_graph
from connectors.whatsapp_cloud.users import is_bsuid
from connectors.whatsapp_cloud.versions import CURRENT_VERSION

GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = CURRENT_VERSION  # the hub passes its HUB_WHATSAPP_GRAPH_VERSION in config
SIGNATURE_HEADER = "x-hub-signature-256"

# Meta renders these link types inline; anything else goes as a document (a file).
_MEDIA_TYPE_BY_SUFFIX = {".jpg": "image", ".jpeg": "image", ".png": "image", ".mp4": "video", ".3gp": "video"}
_CAPTION_MAX = 1024
_CALLBACK_DATA_MAX = 512


class WhatsAppCloudCredentials(BaseModel):
    """What the vault keeps for one WhatsApp Business phone number."""

    model_config = ConfigDict(title="WhatsApp Cloud API credentials")

    phone_number_id: str = Field(
        title="Phone number ID",
        description="The business phone number's ID in WhatsApp Manager (not the phone number itself).",
        pattern=r"^[0-9]+$",
    )
    waba_id: str = Field(
        title="WhatsApp Business account ID",
        description="Owns the phone number and its message templates.",
        pattern=r"^[0-9]+$",
    )
    access_token: SecretStr = Field(
        title="Access token",
        description="A system-user token with whatsapp_business_messaging and whatsapp_business_management.",
    )
    app_secret: SecretStr = Field(
        title="App secret",
        description="The Meta app's secret; it signs webhooks (X-Hub-Signature-256).",
    )
    verify_token: SecretStr = Field(
        title="Webhook verify token",
        description="The token you typed in the app's webhook settings; Meta echoes it in the GET handshake.",
    )


class WhatsAppCloudConfig(BaseModel):
    model_config = ConfigDict(title="WhatsApp Cloud API settings")

    api_version: str = Field(
        default=DEFAULT_API_VERSION,
        title="Graph API version",
        description="Path prefix of every Graph call, e.g. v26.0 (the platform's; see versions.py).",
        pattern=r"^v[0-9]+\.[0-9]+$",
    )
    default_template_language: str = Field(
        default="pt_BR",
        title="Default template language",
        description="Language code used when a template message names none.",
    )


def normalize_recipient(address: str) -> str:
    """Meta wants the number with country code, digits only (``+``/``whatsapp:`` dropped)."""
    address = address.strip()
    if address.lower().startswith("whatsapp:"):
        address = address[len("whatsapp:") :]
    return "".join(ch for ch in address if ch.isdigit())


class WhatsAppCloudConnector(MessagingConnector):
    """Sends and receives WhatsApp messages for one business phone number."""

    kind: ClassVar[str] = "whatsapp_cloud"
    display_name: ClassVar[str] = "WhatsApp (Meta Cloud API)"
    credentials_model: ClassVar[type[BaseModel]] = WhatsAppCloudCredentials
    config_model: ClassVar[type[BaseModel] | None] = WhatsAppCloudConfig
    webhook_secret_field: ClassVar[str | None] = "app_secret"
    event_types: ClassVar[frozenset[str]] = frozenset({MESSAGE_RECEIVED, MESSAGE_STATUS})
    channels: ClassVar[frozenset[str]] = frozenset({"whatsapp"})
    routes_per_event: ClassVar[bool] = True

    credentials: WhatsAppCloudCredentials
    settings: WhatsAppCloudConfig

    # --- webhooks -------------------------------------------------------------
    @classmethod
    def route_keys(cls, request: WebhookRequest) -> list[str]:
        """Every distinct ``entry[].changes[].value.metadata.phone_number_id``."""
        return route_keys_of(request.body)

    @classmethod
    def event_route_key(cls, event: InboundEvent) -> str | None:
        """The phone number ID of the change the event came from."""
        value = event.data.get("phone_number_id")
        return value if isinstance(value, str) and value else None

    @classmethod
    def verify(cls, request: WebhookRequest, secret: str) -> bool:
        """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``."""
        header = request.headers.get(SIGNATURE_HEADER, "")
        scheme, _, received = header.strip().partition("=")
        if not secret or scheme.lower() != "sha256" or not received:
            return False
        expected = hmac.new(secret.encode("utf-8"), request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, received.strip().lower())

    @classmethod
    def verify_subscription(cls, query: Mapping[str, str], verify_token: str) -> str | None:
        """The GET handshake: the challenge to echo when mode and token match, else None."""
        if query.get("hub.mode") != "subscribe" or not verify_token:
            return None
        offered = query.get("hub.verify_token", "")
        if not hmac.compare_digest(offered.encode("utf-8"), verify_token.encode("utf-8")):
            return None
        challenge = query.get("hub.challenge")
        return challenge or None

    @classmethod
    def parse(cls, request: WebhookRequest) -> list[InboundEvent]:
        """Messages and statuses of every batched entry; raises ``MalformedWebhook`` on non-JSON."""
        return parse_webhook(request.body)

    # --- provider calls -------------------------------------------------------
    def _client(self) -> httpx.Client:
        token = self.credentials.access_token.get_secret_value()
        return httpx.Client(
            base_url=self.base_url or GRAPH_URL,
            timeout=self.timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def _path(self, *parts: str) -> str:
        return "/" + "/".join((self.settings.api_version, *parts))

    def _request(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise provider_error_from_transport(exc) from exc
        if response.status_code >= 400:
            raise provider_error_from_response(response)
        try:
            payload = response.json()
        except ValueError as exc:
            raise PermanentProviderError(
                "Graph API answered with a body that is not JSON", status=response.status_code
            ) from exc
        if not isinstance(payload, dict):
            raise PermanentProviderError("Graph API answered with unexpected JSON", status=response.status_code)
        return payload

    def message_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The JSON body of ``POST /{version}/{phone_number_id}/messages`` for ``message``."""
        if message.channel not in self.channels:
            raise PermanentProviderError(f"WhatsApp Cloud cannot send on channel {message.channel!r}")
        payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        if is_bsuid(message.to):
            payload["recipient"] = message.to.strip()  # a username user: no phone number to send to
        else:
            recipient = normalize_recipient(message.to)
            if not recipient:
                raise PermanentProviderError(f"{message.to!r} is not a phone number")
            payload["to"] = recipient
        if message.template_name:
            template: dict[str, Any] = {
                "name": message.template_name,
                "language": {"code": message.template_language or self.settings.default_template_language},
            }
            if message.template_parameters:
                names = list(message.template_parameter_names)
                if names and len(names) != len(message.template_parameters):
                    raise PermanentProviderError("a NAMED template needs one name per parameter")
                # a NAMED template's parameters carry their placeholder's name (parameter_name)
                parameters = [{"type": "text", **({"parameter_name": names[i]} if names else {}), "text": str(p)}
                              for i, p in enumerate(message.template_parameters)]
                template["components"] = [{"type": "body", "parameters": parameters}]
            payload.update(type="template", template=template)
        elif message.media_urls:
            if len(message.media_urls) > 1:
                # a WhatsApp message carries one media object; splitting would make partial sends
                raise PermanentProviderError("a WhatsApp message carries exactly one media file")
            link = message.media_urls[0]
            path = PurePosixPath(urlsplit(link).path)
            media_type = _MEDIA_TYPE_BY_SUFFIX.get(path.suffix.lower(), "document")
            media: dict[str, Any] = {"link": link}
            if message.body:
                media["caption"] = message.body[:_CAPTION_MAX]
            if media_type == "document" and path.name:
                media["filename"] = path.name
            payload.update(type=media_type, **{media_type: media})
        elif message.body:
            payload.update(type="text", text={"preview_url": False, "body": message.body})
        else:
            raise PermanentProviderError("nothing to send: no body, media or template")
        if message.idempotency_key:
            # Meta has no idempotent sends; it echoes this in every status webhook instead
            payload["biz_opaque_callback_data"] = message.idempotency_key[:_CALLBACK_DATA_MAX]
        return payload

    def send(self, message: OutboundMessage) -> SendResult:
        """Send text, one media file by link, or an approved template."""
        payload = self.message_payload(message)
        with self._client() as client:
            answer = self._request(
                client, "POST", self._path(self.credentials.phone_number_id, "messages"), json=payload
            )
        messages = answer.get("messages")
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
        message_id = first.get("id")
        if not isinstance(message_id, str) or not message_id:
            raise PermanentProviderError("Graph API accepted the message but returned no message id")
        return SendResult(
            provider_message_id=message_id, status=str(first.get("message_status") or "accepted"), raw=answer
        )

    def list_message_templates(self, *, page_size: int = 100, max_pages: int = 100) -> list[ProviderTemplate]:
        """Every template of the WhatsApp Business account, following Graph paging."""
        templates: list[ProviderTemplate] = []
        path = self._path(self.credentials.waba_id, "message_templates")
        params: dict[str, Any] = {
            "limit": page_size,
            "fields": "name,language,status,category,components,parameter_format",
        }
        seen_cursors: set[str] = set()
        with self._client() as client:
            for _ in range(max_pages):
                answer = self._request(client, "GET", path, params=params)
                templates.extend(
                    template_from_graph(item) for item in answer.get("data") or [] if isinstance(item, dict)
                )
                paging = answer.get("paging") if isinstance(answer.get("paging"), dict) else {}
                cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
                after = cursors.get("after")
                # ``next`` is present only while more pages exist; we follow the ``after``
                # cursor on our own base URL rather than the absolute ``next`` URL, so the
                # bearer token never goes to a host we did not choose.
                if not paging.get("next") or not isinstance(after, str) or not after or after in seen_cursors:
                    return templates
                seen_cursors.add(after)
                params = {**params, "after": after}
        raise PermanentProviderError(f"message templates span more than {max_pages} pages; stopped")

    def subscribe_app(self) -> None:
        """Subscribe our app to the WhatsApp Business account's webhooks
        (``POST /{waba_id}/subscribed_apps``): without it Meta sends the number's messages
        and statuses to no one. Idempotent at Meta."""
        with self._client() as client:
            answer = self._request(client, "POST", self._path(self.credentials.waba_id, "subscribed_apps"))
        if answer.get("success") is not True:
            raise PermanentProviderError("Meta did not confirm the webhook subscription")

    def app_subscribed(self) -> bool:
        """Whether an app is subscribed to the account's webhooks (``GET …/subscribed_apps``)."""
        with self._client() as client:
            answer = self._request(client, "GET", self._path(self.credentials.waba_id, "subscribed_apps"))
        return bool(answer.get("data"))

    def check(self) -> HealthCheck:
        """Read the phone number's own Graph object (proves the token reaches it) and the
        account's webhook subscription (without one, no message would ever arrive)."""
        try:
            with self._client() as client:
                answer = self._request(
                    client,
                    "GET",
                    self._path(self.credentials.phone_number_id),
                    params={"fields": "display_phone_number,verified_name,quality_rating"},
                )
            subscribed = self.app_subscribed()
        except ProviderError as exc:
            return HealthCheck(ok=False, detail=f"{exc.code or exc.status or 'error'}: {exc.message}")
        number = (f"{answer.get('display_phone_number', '?')} ({answer.get('verified_name', '?')}), "
                  f"quality {answer.get('quality_rating', 'unknown')}")
        if not subscribed:
            return HealthCheck(ok=False, detail=f"{number}; no app is subscribed to WABA {self.credentials.waba_id}'s "
                                                "webhooks, so no message or status arrives")
        return HealthCheck(ok=True, detail=f"{number}; webhooks subscribed")
