"""Twilio: SMS and WhatsApp through the official ``twilio`` SDK.

Webhooks (class methods, called before the tenant is known): ``route_keys`` names the
tenant by number / Messaging Service / account, ``verify`` checks ``X-Twilio-Signature``
with the SDK's own ``RequestValidator``, ``parse`` normalizes inbound messages and
status callbacks. Provider calls (instance methods, one object per call): ``send``,
``check``, and the narrow provisioning steps of the onboarding saga.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

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
    SentMessage,
    TransientProviderError,
    WebhookRequest,
)
from connectors.netguard import NetworkGuard
from connectors.twilio.schemas import TwilioConfig, TwilioCredentials
from connectors.twilio.transport import RedirectedHttpClient, TransportError, TransportTimeout

WHATSAPP = "whatsapp:"
SIGNATURE_HEADER = "x-twilio-signature"
# find_sent: pages of the largest size Twilio serves, and a bound no day's traffic
# between one sender and one recipient comes near; then the newest page, unfiltered
FIND_SENT_PAGE = 1000
FIND_SENT_LIMIT = 10_000
FIND_SENT_NEWEST = 50


def bare_number(address: str) -> str:
    """A Twilio address without its channel prefix: ``whatsapp:+55…`` -> ``+55…``."""
    return address[len(WHATSAPP) :] if address.startswith(WHATSAPP) else address


def mask_sid(sid: str) -> str:
    return f"{sid[:2]}…{sid[-4:]}"


@dataclass(frozen=True)
class TwilioAccount:
    """An account as Twilio describes it (the token only for accounts we own)."""

    sid: str
    friendly_name: str
    status: str
    owner_account_sid: str | None
    auth_token: str | None


class _SignedForm(dict[str, list[str]]):
    """Form values grouped by key, in the MultiDict shape ``RequestValidator`` reads,
    so a repeated key is signed with all its values."""

    @classmethod
    def of(cls, items: Sequence[tuple[str, str]]) -> _SignedForm:
        grouped = cls()
        for key, value in items:
            grouped.setdefault(key, []).append(value)
        return grouped

    def getall(self, key: str) -> list[str]:
        return self[key]


def _retry_after(response: Response | None) -> float | None:
    """Seconds from a ``Retry-After`` header, given as seconds or as an HTTP date."""
    value = (response.headers or {}).get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)


class TwilioConnector(MessagingConnector):
    kind = "twilio"
    display_name = "Twilio (SMS and WhatsApp)"
    credentials_model = TwilioCredentials
    config_model = TwilioConfig
    webhook_secret_field = "auth_token"
    event_types = frozenset({MESSAGE_RECEIVED, MESSAGE_STATUS})
    channels = frozenset({"sms", "whatsapp"})

    def __init__(
        self,
        *,
        credentials: BaseModel | Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
        network: NetworkGuard | None = None,
    ) -> None:
        super().__init__(credentials=credentials, config=config, base_url=base_url, timeout=timeout,
                         network=network)
        self.credentials: TwilioCredentials
        self.settings: TwilioConfig
        self._http = RedirectedHttpClient(base_url=base_url, timeout=timeout)
        self._clients: dict[str, Client] = {}

    # --- webhooks -------------------------------------------------------------------
    @classmethod
    def route_keys(cls, request: WebhookRequest) -> list[str]:
        """Our number first (To of an inbound message, From of a status callback), then
        the Messaging Service (a pool of numbers), then the account."""
        form = request.form
        ours = form.get("From" if "MessageStatus" in form else "To") or ""
        keys = [bare_number(ours), form.get("MessagingServiceSid", ""), form.get("AccountSid", "")]
        return [key for key in keys if key]

    @classmethod
    def verify(cls, request: WebhookRequest, secret: str) -> bool:
        signature = next((v for k, v in request.headers.items() if k.lower() == SIGNATURE_HEADER), None)
        if not signature or not secret:
            return False
        # JSON-bodied webhooks sign the URL and carry the body's SHA-256 in ``bodySHA256``.
        validator = RequestValidator(secret)
        if "bodySHA256" in parse_qs(urlsplit(request.url).query):
            return validator.validate(request.url, request.body.decode("utf-8", "replace"), signature)
        params = _SignedForm.of(request.form_items)
        # the URL as called first: one HMAC where the SDK's validate always computes two
        # (with and without the port); a mismatch still gets the SDK's full check
        computed = validator.compute_signature(request.url, params)
        return hmac.compare_digest(computed.encode(), signature.encode()) or \
            validator.validate(request.url, params, signature)

    @classmethod
    def parse(cls, request: WebhookRequest) -> list[InboundEvent]:
        form = request.form
        message_sid = form.get("MessageSid") or form.get("SmsSid")
        if not message_sid:
            return []  # not a messaging webhook: acknowledged, ignored
        if "MessageStatus" in form:
            return [cls._status_event(message_sid, form)]
        return [cls._inbound_event(message_sid, form)]

    @staticmethod
    def _inbound_event(message_sid: str, form: Mapping[str, str]) -> InboundEvent:
        sender = form.get("From", "")
        try:
            num_media = int(form.get("NumMedia") or 0)
        except ValueError:
            num_media = 0
        media = [
            {"url": form[f"MediaUrl{i}"], "content_type": form.get(f"MediaContentType{i}")}
            for i in range(min(num_media, 10))  # Twilio attaches at most 10 media
            if form.get(f"MediaUrl{i}")
        ]
        data = {
            "message_sid": message_sid,
            "account_sid": form.get("AccountSid"),
            "messaging_service_sid": form.get("MessagingServiceSid") or None,
            "channel": "whatsapp" if sender.startswith(WHATSAPP) else "sms",
            "from": bare_number(sender),
            "to": bare_number(form.get("To", "")),
            "body": form.get("Body", ""),
            "media": media,
            "profile_name": form.get("ProfileName") or None,
        }
        return InboundEvent(type=MESSAGE_RECEIVED, provider_event_id=message_sid, data=data)

    @staticmethod
    def _status_event(message_sid: str, form: Mapping[str, str]) -> InboundEvent:
        status = form["MessageStatus"]
        data = {
            "message_sid": message_sid,
            "status": status,
            "error_code": form.get("ErrorCode") or None,
            "error_message": form.get("ErrorMessage") or None,
        }
        # One event per status change: the same status repeated is a duplicate.
        return InboundEvent(type=MESSAGE_STATUS, provider_event_id=f"{message_sid}:{status}", data=data)

    # --- provider calls ------------------------------------------------------------
    def client(self, account_sid: str | None = None) -> Client:
        """The SDK client acting on ``account_sid`` (a subaccount) with our credentials."""
        acting = account_sid or self.credentials.account_sid
        if acting not in self._clients:
            self._clients[acting] = Client(
                self.credentials.account_sid,
                self.credentials.auth_token.get_secret_value(),
                account_sid=acting,
                http_client=self._http,
            )
        return self._clients[acting]

    def find_sent(self, *, channel: str, to: str, sender: str | None, since: datetime) -> list[SentMessage] | None:
        """Every message Twilio holds to ``to`` (from ``sender``) created since ``since``.

        Twilio filters DateSent by GMT day only (``DateSent>=YYYY-MM-DD``), so the list
        asks for that day onwards and follows every page (newest first, at most
        ``FIND_SENT_LIMIT``); the exact instant is checked here. A message Twilio still
        queues has no DateSent, so no date filter finds it: the newest page of the
        unfiltered list is read as well, where a message not sent yet is newest."""
        prefix = WHATSAPP if channel == "whatsapp" else ""
        filters: dict[str, Any] = {"to": prefix + bare_number(to)}
        if sender:
            filters["from_"] = prefix + bare_number(sender)
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        day = moment.astimezone(UTC).date().isoformat()
        with self._provider_call("list messages"):
            messages = self.client().messages
            found = [*messages.stream(date_sent_after=day, limit=FIND_SENT_LIMIT, page_size=FIND_SENT_PAGE,
                                      **filters),
                     *messages.list(limit=FIND_SENT_NEWEST, page_size=FIND_SENT_NEWEST, **filters)]
        unique = {m.sid: m for m in found if m.sid and m.date_created and m.date_created >= since}
        return [SentMessage(m.sid, m.date_created, m.body or "") for m in unique.values()]

    def close(self) -> None:
        """Release the pooled HTTP connections (also released when collected)."""
        self._http.close()

    @contextmanager
    def _provider_call(self, action: str) -> Iterator[None]:
        """Translate SDK and transport failures into Transient/PermanentProviderError."""
        try:
            yield
        except TwilioRestException as exc:
            raise self._refusal(action, exc.status, exc.code, exc.msg) from exc
        except TwilioServiceException as exc:
            raise self._refusal(action, exc.status, exc.code, exc.detail or exc.title) from exc
        except TwilioException as exc:
            # a failed list page arrives as TwilioException("Unable to fetch page", response)
            response = next((a for a in exc.args if isinstance(a, Response)), self._http.last_response)
            if response is None:
                raise TransientProviderError(f"{action}: {exc}") from exc
            code, message = _error_body(response)
            raise self._refusal(action, response.status_code, code, message) from exc
        except TransportTimeout as exc:
            raise TransientProviderError(f"{action}: no answer from Twilio within {self.timeout}s") from exc
        except TransportError as exc:
            raise TransientProviderError(f"{action}: {type(exc).__name__}: {exc}") from exc

    def _refusal(self, action: str, status: int, code: int | None, message: str) -> ProviderError:
        text = f"{action}: {message}"
        code_text = str(code) if code is not None else None
        if status == 429:
            retry_after = _retry_after(self._http.last_response)
            return TransientProviderError(text, code=code_text, status=status, retry_after=retry_after)
        if status >= 500 or status == 408:
            return TransientProviderError(text, code=code_text, status=status)
        # 400 (21211 invalid To, 21610 unsubscribed, 21614 not mobile, 21408 region,
        # 63016 outside the WhatsApp window …), 401, 403, 404: retrying cannot help.
        return PermanentProviderError(text, code=code_text, status=status)

    def send(self, message: OutboundMessage) -> SendResult:
        """Create the message; Twilio answers ``queued`` (or ``accepted`` through a
        Messaging Service) and reports the rest to ``status_callback``."""
        if message.channel not in self.channels:
            raise PermanentProviderError(f"Twilio does not deliver {message.channel!r}", code="channel")
        if message.channel not in self.settings.channels:
            raise PermanentProviderError(
                f"channel {message.channel!r} is not enabled on this integration", code="channel"
            )
        prefix = WHATSAPP if message.channel == "whatsapp" else ""
        params: dict[str, Any] = {"to": prefix + bare_number(message.to)}
        # An explicit sender wins; else the Messaging Service picks one from its pool.
        if message.sender:
            params["from_"] = prefix + bare_number(message.sender)
        elif self.settings.messaging_service_sid:
            params["messaging_service_sid"] = self.settings.messaging_service_sid
        elif self.settings.numbers:
            params["from_"] = prefix + self.settings.numbers[0]
        else:
            raise PermanentProviderError("no sender: the integration has no number or Messaging Service")
        if message.template_name:
            # WhatsApp templates are Content API templates (HX…) with numbered variables.
            params["content_sid"] = message.template_name
            variables = {str(i): value for i, value in enumerate(message.template_parameters, start=1)}
            params["content_variables"] = json.dumps(variables)
        if message.body:
            params["body"] = message.body
        if message.media_urls:
            params["media_url"] = list(message.media_urls)
        if message.status_callback:
            params["status_callback"] = message.status_callback
        with self._provider_call("send message"):
            created = self.client().messages.create(**params)
        return SendResult(
            provider_message_id=created.sid or "",
            status=created.status or "queued",
            raw={
                "account_sid": created.account_sid,
                "from": created.from_,
                "to": created.to,
                "messaging_service_sid": created.messaging_service_sid,
                "num_segments": created.num_segments,
                "date_created": created.date_created.isoformat() if created.date_created else None,
            },
        )

    def check(self) -> HealthCheck:
        sid = self.credentials.account_sid
        try:
            account = self.fetch_account()
        except ProviderError as exc:
            return HealthCheck(ok=False, detail=f"Twilio account {mask_sid(sid)}: {exc.message} ({exc.code})")
        return HealthCheck(
            ok=account.status == "active", detail=f"Twilio account {mask_sid(sid)} is {account.status}"
        )

    # --- provisioning (the onboarding saga's steps) --------------------------------
    def create_subaccount(self, friendly_name: str) -> tuple[str, str]:
        """A new subaccount of ours: ``(sid, auth_token)``."""
        with self._provider_call("create subaccount"):
            account = self.client().api.v2010.accounts.create(friendly_name=friendly_name)
        return account.sid, account.auth_token

    def find_subaccount(self, friendly_name: str) -> tuple[str, str] | None:
        """An active subaccount of ours with this name, so a retried saga reuses it."""
        with self._provider_call("find subaccount"):
            found = self.client().api.v2010.accounts.list(friendly_name=friendly_name, status="active")
        for account in found:
            if account.sid != self.credentials.account_sid:
                return account.sid, account.auth_token
        return None

    def fetch_account(self, sid: str | None = None) -> TwilioAccount:
        """Our own account, or one of its subaccounts."""
        with self._provider_call("fetch account"):
            account = self.client().api.v2010.accounts(sid or self.credentials.account_sid).fetch()
        return TwilioAccount(
            sid=account.sid,
            friendly_name=account.friendly_name,
            status=account.status,
            owner_account_sid=account.owner_account_sid,
            auth_token=account.auth_token,
        )

    def fetch_subaccount(self, sid: str) -> TwilioAccount:
        return self.fetch_account(sid)

    def close_subaccount(self, sid: str) -> None:
        """Close a subaccount for good (Twilio releases its numbers). Closing a closed
        one succeeds, so the saga's compensation can run twice."""
        try:
            with self._provider_call("close subaccount"):
                self.client().api.v2010.accounts(sid).update(status="closed")
        except PermanentProviderError as exc:
            if exc.code != "21479":  # "subaccount has been closed"
                raise

    def find_available_numbers(
        self,
        country: str,
        area_code: str | None = None,
        sms: bool = True,
        limit: int = 5,
        *,
        number_type: Literal["local", "mobile"] = "local",
    ) -> list[str]:
        """E.164 numbers Twilio offers for sale in ``country`` (ISO code, e.g. "BR")."""
        listing = self.client().api.v2010.account.available_phone_numbers(country.upper())
        kind = listing.local if number_type == "local" else listing.mobile
        filters: dict[str, Any] = {"limit": limit}
        if area_code:
            filters["area_code"] = area_code
        if sms:
            filters["sms_enabled"] = True
        with self._provider_call("search available numbers"):
            return [offer.phone_number for offer in kind.list(**filters)]

    def buy_number(
        self,
        number: str,
        *,
        sms_url: str,
        status_callback: str | None = None,
        account_sid: str | None = None,
    ) -> str:
        """Buy ``number`` for our account or ``account_sid`` (a subaccount) with its
        inbound webhook set; returns the number's SID (PN…). Twilio refuses a number
        already owned (21422): look with :meth:`find_number` before retrying."""
        params: dict[str, Any] = {"phone_number": number, "sms_url": sms_url, "sms_method": "POST"}
        if status_callback:
            params["status_callback"] = status_callback
            params["status_callback_method"] = "POST"
        with self._provider_call("buy number"):
            bought = self.client(account_sid).api.v2010.account.incoming_phone_numbers.create(**params)
        return bought.sid

    def update_number_webhooks(
        self,
        number_sid: str,
        *,
        sms_url: str,
        status_callback: str | None = None,
        account_sid: str | None = None,
    ) -> None:
        params: dict[str, Any] = {"sms_url": sms_url, "sms_method": "POST"}
        if status_callback is not None:
            params["status_callback"] = status_callback
            params["status_callback_method"] = "POST"
        with self._provider_call("update number webhooks"):
            self.client(account_sid).api.v2010.account.incoming_phone_numbers(number_sid).update(**params)

    def release_number(self, number_sid: str, account_sid: str | None = None) -> bool:
        """Release a number; False when it was already gone (compensation may repeat)."""
        try:
            with self._provider_call("release number"):
                self.client(account_sid).api.v2010.account.incoming_phone_numbers(number_sid).delete()
        except PermanentProviderError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_numbers(self, account_sid: str | None = None) -> list[tuple[str, str]]:
        """``(sid, e164)`` of every number the account owns."""
        with self._provider_call("list numbers"):
            owned = self.client(account_sid).api.v2010.account.incoming_phone_numbers.list()
        return [(number.sid, number.phone_number) for number in owned]

    def find_number(self, e164: str, *, account_sid: str | None = None) -> str | None:
        """The SID of ``e164`` if the account owns it (lets a retried saga find the
        number it already bought instead of buying another)."""
        with self._provider_call("find number"):
            owned = self.client(account_sid).api.v2010.account.incoming_phone_numbers.list(phone_number=e164)
        return next((n.sid for n in owned if n.phone_number == e164), None)

    def validate_connection(self, numbers: Sequence[str]) -> list[str]:
        """Prove bring-your-own credentials: the account is active (else a
        PermanentProviderError) and owns each number. Returns the numbers it lacks."""
        account = self.fetch_account()
        if account.status != "active":
            raise PermanentProviderError(f"Twilio account is {account.status}", code="account_inactive")
        owned = {e164 for _, e164 in self.list_numbers()}
        return [number for number in numbers if number not in owned]


def _error_body(response: Response) -> tuple[int | None, str]:
    try:
        body = json.loads(response.text)
    except ValueError:
        return None, f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return None, f"HTTP {response.status_code}"
    return body.get("code"), str(body.get("message") or f"HTTP {response.status_code}")
