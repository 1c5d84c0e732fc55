"""Twilio's REST API 2010-04-01, emulated for the real ``twilio`` SDK.

It speaks what the SDK sends (form-encoded bodies, HTTP Basic auth, ``.json`` paths)
and answers JSON shaped like Twilio's, list pages holding exactly one record key
besides the paging keys. Like stripe-mock it needs no setup: any well-formed main
account SID with any auth token is taken as an existing account (the first token
seen becomes its token) that owns a few Brazilian numbers derived from its SID.

Outbound messages move through their statuses asynchronously and each step is
POSTed to the message's ``StatusCallback``, form-encoded and signed with the owning
(sub)account's auth token exactly as Twilio signs (``X-Twilio-Signature``). Inbound
traffic is simulated on demand. Failures (5xx, 429, timeouts, Twilio error codes,
asynchronous delivery failures) are injected per number or globally, through Python
methods on :class:`TwilioSandbox` or the control endpoints under ``/_sandbox/twilio``.

The Message list (``GET …/Messages.json``) is as strict as Twilio's, because the hub's
"did it go out?" check depends on it: newest first by DateSent; filters ``To``,
``From``, ``DateSent`` (that GMT day), ``DateSent<`` (on or before that day) and
``DateSent>`` (on or after it), by day, never by instant, a message not sent yet
(no DateSent) matching none of the three; ``PageSize`` 50 unless given, at most
1000, and ``next_page_uri`` with ``Page`` and ``PageToken`` to follow. Sources:
https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources
("Results are sorted by the DateSent field, with the most recent messages appearing
first"; DateSent "Accepts GMT dates in the following formats: YYYY-MM-DD …, <=YYYY-MM-DD
…, and >=YYYY-MM-DD"; "PageSize … The default is 50, and the maximum is 1000") and
https://www.twilio.com/docs/usage/twilios-response#paging-information (``next_page_uri``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import operator
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
API = f"/{API_VERSION}"
CONTROL = "/_sandbox/twilio"

ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
WHATSAPP = "whatsapp:"

# A bring-your-own main account owns this many numbers of its own.
SEEDED_NUMBERS = 3
# No injected delay may hold a request longer than this.
MAX_DELAY = 10.0
# status callbacks in flight at once, per event loop (Twilio, too, spreads them out)
_CALLBACK_SLOTS = 32

FailureKind = Literal["http_500", "http_503", "http_429", "timeout", "api_error", "delivery_error"]
Resource = Literal["accounts", "available_numbers", "numbers", "messages"]

# Twilio's synchronous (HTTP 400) refusals of a message create, by error code.
API_ERRORS: dict[int, str] = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
    "'To' number: {to}.",
    21606: "The From phone number {from_} is not a valid, SMS-capable inbound phone number "
    "or short code for your account.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: "
    "{from_} via SMS.",
    21614: "'To' number is not a valid mobile number",
    21422: "PhoneNumber is not available",
    63016: "Failed to send freeform message because you are outside the allowed window. "
    "If you are using WhatsApp, please use a Message Template.",
}
# Twilio's asynchronous delivery failures: the final status and its error text.
DELIVERY_ERRORS: dict[int, tuple[str, str]] = {
    30003: ("undelivered", "Unreachable destination handset"),
    30004: ("undelivered", "Message blocked"),
    30005: ("undelivered", "Unknown destination handset"),
    30006: ("undelivered", "Landline or unreachable carrier"),
    30007: ("undelivered", "Message filtered"),
    30008: ("undelivered", "Unknown error"),
    63016: ("failed", "Failed to send freeform message because you are outside the allowed window."),
}

# DDD -> (locality, region): only used to dress up available-number records.
BR_AREAS: dict[str, tuple[str, str]] = {
    "11": ("Sao Paulo", "SP"),
    "21": ("Rio de Janeiro", "RJ"),
    "31": ("Belo Horizonte", "MG"),
    "41": ("Curitiba", "PR"),
    "51": ("Porto Alegre", "RS"),
    "61": ("Brasilia", "DF"),
    "71": ("Salvador", "BA"),
    "81": ("Recife", "PE"),
    "85": ("Fortaleza", "CE"),
}
_SEEDED_DDDS = ("11", "21", "31", "41", "51", "61")


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment) if moment else None


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _bare(address: str) -> str:
    """The phone number without Twilio's ``whatsapp:`` channel prefix."""
    return address[len(WHATSAPP) :] if address.startswith(WHATSAPP) else address


def _segments(body: str) -> int:
    # GSM-7 fits 160 characters (153 per concatenated part); anything else is UCS-2.
    single, part = (160, 153) if body.isascii() else (70, 67)
    if len(body) <= single:
        return 1
    return math.ceil(len(body) / part)


def _br_friendly(number: str) -> str:
    national = number[3:]
    ddd, rest = national[:2], national[2:]
    return f"({ddd}) {rest[:-4]}-{rest[-4:]}"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _friendly(number: str) -> str:
    return _br_friendly(number) if number.startswith("+55") else number


class TwilioApiError(Exception):
    """A refusal answered the way Twilio answers: ``{code, message, more_info, status}``."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _not_found(path: str) -> TwilioApiError:
    return TwilioApiError(404, 20404, f"The requested resource {path} was not found")


# --- resources -------------------------------------------------------------------


@dataclass
class Account:
    sid: str
    auth_token: str
    friendly_name: str
    owner_account_sid: str
    status: str = "active"
    date_created: datetime = field(default_factory=_now)
    date_updated: datetime = field(default_factory=_now)

    @property
    def is_subaccount(self) -> bool:
        return self.owner_account_sid != self.sid

    def to_json(self) -> dict[str, Any]:
        base = f"{API}/Accounts/{self.sid}"
        return {
            "auth_token": self.auth_token,
            "date_created": _rfc2822(self.date_created),
            "date_updated": _rfc2822(self.date_updated),
            "friendly_name": self.friendly_name,
            "owner_account_sid": self.owner_account_sid,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "available_phone_numbers": f"{base}/AvailablePhoneNumbers.json",
                "incoming_phone_numbers": f"{base}/IncomingPhoneNumbers.json",
                "messages": f"{base}/Messages.json",
            },
            "type": "Full",
            "uri": f"{base}.json",
        }


@dataclass
class PhoneNumber:
    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    sms_url: str | None = None
    sms_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    voice_url: str | None = None
    date_created: datetime = field(default_factory=_now)
    date_updated: datetime = field(default_factory=_now)

    def to_json(self) -> dict[str, Any]:
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {"fax": False, "mms": False, "sms": True, "voice": True},
            "date_created": _rfc2822(self.date_created),
            "date_updated": _rfc2822(self.date_updated),
            "emergency_address_sid": None,
            "emergency_status": "Inactive",
            "friendly_name": self.friendly_name,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": self.phone_number,
            "sid": self.sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": self.sms_method,
            "sms_url": self.sms_url or "",
            "status": "in-use",
            "status_callback": self.status_callback or "",
            "status_callback_method": self.status_callback_method,
            "trunk_sid": None,
            "uri": f"{API}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{self.sid}.json",
            "voice_application_sid": "",
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": "",
            "voice_method": "POST",
            "voice_url": self.voice_url or "",
        }


@dataclass
class Message:
    sid: str
    account_sid: str
    from_: str | None
    to: str
    body: str
    direction: str
    status: str
    messaging_service_sid: str | None = None
    media_urls: list[str] = field(default_factory=list)
    status_callback: str | None = None
    content_sid: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    date_created: datetime = field(default_factory=_now)
    date_updated: datetime = field(default_factory=_now)
    date_sent: datetime | None = None

    @property
    def channel(self) -> str:
        return "whatsapp" if self.to.startswith(WHATSAPP) else "sms"

    def to_json(self) -> dict[str, Any]:
        base = f"{API}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": _rfc2822(self.date_created),
            "date_sent": _rfc2822(self.date_sent),
            "date_updated": _rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(_segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": self.to,
            "uri": f"{base}.json",
        }


@dataclass
class Failure:
    """One injected failure. ``number`` matches a request's From/To/PhoneNumber;
    ``remaining`` counts the requests it still hits (None: until cleared)."""

    id: str
    kind: FailureKind
    number: str | None = None
    resource: Resource | None = None
    code: int | None = None
    retry_after: int = 1
    delay: float = 1.0
    remaining: int | None = None

    def matches(self, resource: Resource, numbers: Iterable[str]) -> bool:
        if self.resource is not None and self.resource != resource:
            return False
        return self.number is None or self.number in {_bare(n) for n in numbers}


@dataclass(frozen=True)
class CallbackAttempt:
    """One webhook the sandbox sent (status callback or simulated inbound)."""

    kind: Literal["status", "inbound"]
    url: str
    form: dict[str, str]
    signature: str
    status_code: int | None
    error: str | None = None


@dataclass(frozen=True)
class InboundDelivery:
    """What happened to a simulated inbound message."""

    message_sid: str
    url: str
    form: dict[str, str]
    signature: str
    status_code: int
    response_text: str


# --- the emulator's state -----------------------------------------------------------


class TwilioSandbox:
    """Accounts, numbers, messages and injected failures of the emulated Twilio.

    Safe to drive from a test thread while the server runs in another: every
    mutation holds one lock, and nothing awaits while holding it.
    """

    def __init__(
        self,
        *,
        hub_url: str | None = None,
        callback_delay: float = 0.05,
        callback_timeout: float = 5.0,
    ) -> None:
        self.hub_url = hub_url
        self.callback_delay = callback_delay
        self.callback_timeout = callback_timeout
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._numbers: dict[str, PhoneNumber] = {}
        self._messages: dict[str, Message] = {}
        self._failures: list[Failure] = []
        self._callbacks: list[CallbackAttempt] = []
        # bumped by reset() so callback sequences started before it stop quietly
        self._generation = 0
        self._tasks: set[asyncio.Task] = set()
        # which statuses are called back (None: all, as Twilio does); a load test may keep
        # only the failures so its thousands of messages do not each cost three callbacks
        self.callback_statuses: frozenset[str] | None = None
        # one callback client per event loop: building one per message (an SSL context
        # loading the CA bundle each time) cost more CPU than the whole emulator
        self._callback_clients: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}

    def _callback_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The loop's callback client, and the slots that bound callbacks in flight: httpcore
        scans its whole queue for every request it places, so thousands of callbacks
        queued inside the pool (a load test, a hub that is down) cost quadratic CPU."""
        loop = asyncio.get_running_loop()
        found = self._callback_clients.get(loop)
        if found is None or found[0].is_closed:
            for stale in [other for other in self._callback_clients if other.is_closed()]:
                del self._callback_clients[stale]
            found = self._callback_clients[loop] = (
                httpx.AsyncClient(timeout=self.callback_timeout, limits=httpx.Limits(max_connections=_CALLBACK_SLOTS)),
                asyncio.Semaphore(_CALLBACK_SLOTS))
        return found

    # --- Python control surface ----------------------------------------------------
    def reset(self) -> None:
        """Forget every account, number, message, failure and callback."""
        with self._lock:
            self._generation += 1
            self._accounts.clear()
            self._numbers.clear()
            self._messages.clear()
            self._failures.clear()
            self._callbacks.clear()
            self.callback_statuses = None

    def register_account(self, sid: str, auth_token: str, *, friendly_name: str | None = None) -> dict:
        """Pre-create a main (bring-your-own) account with a known token."""
        with self._lock:
            return self._main_account(sid, auth_token, friendly_name=friendly_name).to_json()

    def account(self, sid: str) -> dict | None:
        with self._lock:
            found = self._accounts.get(sid)
            return found.to_json() if found else None

    def accounts(self) -> list[dict]:
        with self._lock:
            return [a.to_json() for a in self._accounts.values()]

    def numbers(self, *, account_sid: str | None = None) -> list[dict]:
        with self._lock:
            return [
                n.to_json()
                for n in self._numbers.values()
                if account_sid is None or n.account_sid == account_sid
            ]

    def inject_failure(
        self,
        kind: FailureKind,
        *,
        number: str | None = None,
        resource: Resource | None = None,
        code: int | None = None,
        times: int | None = None,
        retry_after: int = 1,
        delay: float = 1.0,
    ) -> str:
        """Make matching requests fail; returns the failure's id.

        ``http_500``/``http_503``/``http_429``/``timeout`` hit any API request (or only
        ``resource``); ``api_error`` answers 400 with Twilio ``code`` (21211, 21610 …);
        ``delivery_error`` accepts the message, then its callbacks end undelivered or
        failed with ``code`` (30003, 30005, 30006 …). Both code kinds default to the
        ``messages`` resource. ``timeout`` holds the answer ``delay`` seconds (at most
        ``MAX_DELAY``), then serves it normally, as a slow Twilio would.
        """
        if kind in ("api_error", "delivery_error"):
            table = API_ERRORS if kind == "api_error" else DELIVERY_ERRORS
            if code not in table:
                raise ValueError(f"{kind} needs a code among {sorted(table)}")
            resource = resource or "messages"
        elif kind not in ("http_500", "http_503", "http_429", "timeout"):
            raise ValueError(f"unknown failure kind {kind!r}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        failure = Failure(
            id=secrets.token_hex(6),
            kind=kind,
            number=_bare(number) if number else None,
            resource=resource,
            code=code,
            retry_after=retry_after,
            delay=min(max(delay, 0.0), MAX_DELAY),
            remaining=times,
        )
        with self._lock:
            self._failures.append(failure)
        return failure.id

    def clear_failures(self, failure_id: str | None = None) -> None:
        with self._lock:
            self._failures = [f for f in self._failures if failure_id is not None and f.id != failure_id]

    def failures(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._failures]

    def sent_messages(
        self, *, to: str | None = None, from_: str | None = None, account_sid: str | None = None
    ) -> list[dict]:
        """Outbound messages created through the API, oldest first (Twilio's JSON)."""
        with self._lock:
            return [
                m.to_json()
                for m in self._messages.values()
                if m.direction == "outbound-api"
                and (to is None or _bare(m.to) == _bare(to))
                and (from_ is None or (m.from_ and _bare(m.from_) == _bare(from_)))
                and (account_sid is None or m.account_sid == account_sid)
            ]

    def callbacks(self) -> list[dict]:
        """Every webhook sent so far, oldest first."""
        with self._lock:
            return [asdict(c) for c in self._callbacks]

    def simulate_inbound(
        self,
        *,
        to: str,
        from_: str,
        body: str = "",
        channel: Literal["sms", "whatsapp"] = "sms",
        media: Sequence[tuple[str, str]] = (),
        messaging_service_sid: str | None = None,
        profile_name: str | None = None,
    ) -> InboundDelivery:
        """Deliver an inbound message to the number's SmsUrl and wait for the answer.

        ``media`` holds ``(url, content_type)`` pairs. Blocking: call it from a test
        thread, not from the sandbox's event loop (the HTTP endpoint is async).
        """
        url, form, signature = self._prepare_inbound(
            to, from_, body, channel, media, messaging_service_sid, profile_name
        )
        try:
            with httpx.Client(timeout=self.callback_timeout) as client:
                answer = client.post(url, data=form, headers=self._webhook_headers(signature))
        except httpx.HTTPError as exc:
            self._record(CallbackAttempt("inbound", url, form, signature, None, repr(exc)))
            raise
        self._record(CallbackAttempt("inbound", url, form, signature, answer.status_code))
        return InboundDelivery(form["MessageSid"], url, form, signature, answer.status_code, answer.text)

    async def simulate_inbound_async(self, **kwargs: Any) -> InboundDelivery:
        """:meth:`simulate_inbound` for the event loop (used by the control endpoint)."""
        url, form, signature = self._prepare_inbound(
            kwargs["to"],
            kwargs["from_"],
            kwargs.get("body", ""),
            kwargs.get("channel", "sms"),
            kwargs.get("media", ()),
            kwargs.get("messaging_service_sid"),
            kwargs.get("profile_name"),
        )
        try:
            answer = await self._callback_client()[0].post(url, data=form, headers=self._webhook_headers(signature))
        except httpx.HTTPError as exc:
            self._record(CallbackAttempt("inbound", url, form, signature, None, repr(exc)))
            raise
        self._record(CallbackAttempt("inbound", url, form, signature, answer.status_code))
        return InboundDelivery(form["MessageSid"], url, form, signature, answer.status_code, answer.text)

    # --- accounts and auth ----------------------------------------------------------
    def _main_account(self, sid: str, token: str, *, friendly_name: str | None = None) -> Account:
        found = self._accounts.get(sid)
        if found:
            return found
        account = Account(sid, token, friendly_name or f"Account {sid[-4:]}", owner_account_sid=sid)
        self._accounts[sid] = account
        self._seed_numbers(account)
        return account

    def _seed_numbers(self, account: Account) -> None:
        # Deterministic from the SID, and below the 9-7000-0000 block that
        # AvailablePhoneNumbers hands out, so the two never collide.
        digest = hashlib.sha256(account.sid.encode()).digest()
        for index in range(SEEDED_NUMBERS):
            ddd = _SEEDED_DDDS[digest[index] % len(_SEEDED_DDDS)]
            local = 10_000_000 + int.from_bytes(digest[4 + 4 * index : 8 + 4 * index]) % 60_000_000
            number = f"+55{ddd}9{local:08d}"
            if self._number_by_e164(number) is None:
                sid = "PN" + hashlib.sha256(f"{account.sid}:{number}".encode()).hexdigest()[:32]
                self._numbers[sid] = PhoneNumber(sid, account.sid, number, _friendly(number))

    def _authenticate(self, authorization: str | None) -> Account:
        challenge = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
        unauthorized = TwilioApiError(401, 20003, "Authenticate", challenge)
        if not authorization or not authorization.startswith("Basic "):
            raise unauthorized
        try:
            username, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized from None
        if not ACCOUNT_SID.match(username) or not password:
            raise unauthorized
        with self._lock:
            account = self._accounts.get(username) or self._main_account(username, password)
            if not secrets.compare_digest(account.auth_token, password) or account.status == "closed":
                raise unauthorized
            return account

    def _acting_on(
        self, caller: Account, path_sid: str, path: str, *, allow_inactive: bool = False
    ) -> Account:
        """The account named in the path, if ``caller`` may act on it."""
        with self._lock:
            target = self._accounts.get(path_sid)
            if target is None or (target.sid != caller.sid and target.owner_account_sid != caller.sid):
                raise _not_found(path)
            if target.status != "active" and not allow_inactive:
                raise TwilioApiError(403, 20005, "Account not active")
            return target

    # --- failure injection ----------------------------------------------------------
    def _take_failure(self, resource: Resource, numbers: Iterable[str]) -> Failure | None:
        numbers = [n for n in numbers if n]
        with self._lock:
            for failure in self._failures:
                if failure.matches(resource, numbers):
                    if failure.remaining is not None:
                        failure.remaining -= 1
                        if failure.remaining <= 0:
                            self._failures.remove(failure)
                    return failure
        return None

    # --- webhooks out ---------------------------------------------------------------
    def _record(self, attempt: CallbackAttempt) -> None:
        with self._lock:
            self._callbacks.append(attempt)

    @staticmethod
    def _webhook_headers(signature: str) -> dict[str, str]:
        return {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}

    @staticmethod
    def sign(url: str, form: dict[str, str], auth_token: str) -> str:
        """Twilio's signature: base64 HMAC-SHA1 of the URL plus the sorted params."""
        return RequestValidator(auth_token).compute_signature(url, form)

    def _number_by_e164(self, e164: str) -> PhoneNumber | None:
        return next((n for n in self._numbers.values() if n.phone_number == e164), None)

    def _prepare_inbound(
        self,
        to: str,
        from_: str,
        body: str,
        channel: str,
        media: Sequence[tuple[str, str]] | Sequence[dict[str, str]],
        messaging_service_sid: str | None,
        profile_name: str | None,
    ) -> tuple[str, dict[str, str], str]:
        with self._lock:
            number = self._number_by_e164(_bare(to))
            if number is None:
                raise LookupError(f"{to} is not a number of any sandbox account")
            account = self._accounts[number.account_sid]
            url = number.sms_url or (f"{self.hub_url.rstrip('/')}/webhooks/twilio" if self.hub_url else None)
            if not url:
                raise LookupError(f"{to} has no SmsUrl and the sandbox knows no hub_url")
            prefix = WHATSAPP if channel == "whatsapp" else ""
            message = Message(
                sid=_sid("SM"),
                account_sid=account.sid,
                from_=prefix + _bare(from_),
                to=prefix + number.phone_number,
                body=body,
                direction="inbound",
                status="received",
                messaging_service_sid=messaging_service_sid,
                media_urls=[_media_url(item) for item in media],
                # for an incoming message, when Twilio made the request to the app
                date_sent=_now(),
            )
            self._messages[message.sid] = message
            token = account.auth_token
        # The fields Twilio documents for its request to an incoming-message webhook.
        form = {
            "ToCountry": "BR" if number.phone_number.startswith("+55") else "",
            "SmsMessageSid": message.sid,
            "NumMedia": str(len(message.media_urls)),
            "SmsSid": message.sid,
            "SmsStatus": "received",
            "Body": body,
            "To": message.to,
            "NumSegments": str(_segments(body)),
            "MessageSid": message.sid,
            "AccountSid": account.sid,
            "From": message.from_ or "",
            "ApiVersion": API_VERSION,
        }
        if messaging_service_sid:
            form["MessagingServiceSid"] = messaging_service_sid
        for index, item in enumerate(media):
            form[f"MediaUrl{index}"] = _media_url(item)
            form[f"MediaContentType{index}"] = _media_type(item)
        if channel == "whatsapp":
            form["WaId"] = _bare(from_).lstrip("+")
            form["ProfileName"] = profile_name or ""
            form["MessageType"] = "image" if media else "text"
        return url, form, self.sign(url, form, token)

    def _status_steps(
        self, message: Message, failure: Failure | None
    ) -> list[tuple[str, int | None, str | None]]:
        # Twilio calls back on changes, not on the initial status: a message sent
        # through a Messaging Service starts "accepted" and is called back "queued";
        # one sent from a number starts "queued" and is first called back "sent".
        steps: list[tuple[str, int | None, str | None]] = []
        if message.messaging_service_sid:
            steps.append(("queued", None, None))
        if failure is not None and failure.code is not None:
            final, text = DELIVERY_ERRORS[failure.code]
            if final == "undelivered":
                steps.append(("sent", None, None))
            steps.append((final, failure.code, text))
            return steps
        steps += [("sent", None, None), ("delivered", None, None)]
        if message.channel == "whatsapp":
            steps.append(("read", None, None))
        return steps

    def _start_status_callbacks(self, message: Message, failure: Failure | None) -> None:
        task = asyncio.get_running_loop().create_task(self._run_status_callbacks(message, failure))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_status_callbacks(self, message: Message, failure: Failure | None) -> None:
        generation = self._generation
        steps = self._status_steps(message, failure)
        client, slots = self._callback_client()
        for status, error_code, error_text in steps:
            await asyncio.sleep(self.callback_delay)
            with self._lock:
                if generation != self._generation:
                    return
                message.status = status
                message.date_updated = _now()
                if status == "sent":
                    message.date_sent = message.date_updated
                if error_code is not None:
                    message.error_code, message.error_message = error_code, error_text
                account = self._accounts.get(message.account_sid)
                url = message.status_callback
            if not url or account is None:
                continue
            if self.callback_statuses is not None and status not in self.callback_statuses:
                continue
            form = self._status_form(message, status, error_code)
            signature = self.sign(url, form, account.auth_token)
            try:
                async with slots:
                    answer = await client.post(url, data=form, headers=self._webhook_headers(signature))
            except httpx.HTTPError as exc:
                # Twilio does not retry a failed status callback either.
                self._record(CallbackAttempt("status", url, form, signature, None, repr(exc)))
                continue
            self._record(CallbackAttempt("status", url, form, signature, answer.status_code))

    @staticmethod
    def _status_form(message: Message, status: str, error_code: int | None) -> dict[str, str]:
        # The subset of message properties Twilio documents for status callbacks.
        form = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_ or "",
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if message.messaging_service_sid:
            form["MessagingServiceSid"] = message.messaging_service_sid
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        if message.channel == "sms" and status in ("delivered", "undelivered"):
            form["RawDlrDoneDate"] = _now().strftime("%y%m%d%H%M")
        return form

    # --- API operations (called by the router; raise TwilioApiError) ----------------
    def create_subaccount(self, caller: Account, params: dict[str, str]) -> Account:
        if caller.is_subaccount:
            raise TwilioApiError(403, 20403, "Subaccounts cannot create subaccounts")
        with self._lock:
            account = Account(
                sid=_sid("AC"),
                auth_token=secrets.token_hex(16),
                friendly_name=params.get("FriendlyName")
                or f"SubAccount Created at {format_datetime(_now())}",
                owner_account_sid=caller.sid,
            )
            self._accounts[account.sid] = account
            return account

    def visible_accounts(self, caller: Account, params: dict[str, str]) -> list[dict]:
        with self._lock:
            found = [
                a
                for a in self._accounts.values()
                if a.sid == caller.sid or a.owner_account_sid == caller.sid
            ]
        if name := params.get("FriendlyName"):
            found = [a for a in found if a.friendly_name == name]
        if status := params.get("Status"):
            found = [a for a in found if a.status == status]
        return [a.to_json() for a in found]

    def update_account(self, target: Account, params: dict[str, str]) -> Account:
        with self._lock:
            status = params.get("Status")
            if target.status == "closed" and status not in (None, "closed"):
                raise TwilioApiError(
                    400, 21479, "Unable to update Status for subaccount, subaccount has been closed."
                )
            if status is not None:
                if status not in ("active", "suspended", "closed"):
                    raise TwilioApiError(400, 20001, f"Invalid Status {status!r}")
                if status != "active" and not target.is_subaccount:
                    raise TwilioApiError(400, 20001, "A main account cannot change its own status")
                if target.status != status:
                    target.status = status
                    if status == "closed":
                        # Twilio releases a closed account's numbers.
                        for sid in [s for s, n in self._numbers.items() if n.account_sid == target.sid]:
                            del self._numbers[sid]
            if "FriendlyName" in params:
                target.friendly_name = params["FriendlyName"]
            target.date_updated = _now()
            return target

    def available_numbers(self, country: str, number_type: str, params: dict[str, str]) -> list[dict]:
        page_size = max(1, min(_int(params.get("PageSize"), 50), 50))
        area = params.get("AreaCode")
        with self._lock:
            owned = {n.phone_number for n in self._numbers.values()}
        if country == "BR":
            ddd = area or "11"
            if not re.fullmatch(r"[1-9][1-9]", ddd):
                return []
            locality, region = BR_AREAS.get(ddd, (None, None))
            # Local numbers 3000-0001…, mobile numbers 9 7000-0001… (Brazil's 9th digit).
            pattern = f"+55{ddd}3{{:07d}}" if number_type == "Local" else f"+55{ddd}97{{:07d}}"
        elif country in ("US", "CA"):
            ddd = area or "415"
            if not re.fullmatch(r"[2-9]\d\d", ddd):
                return []
            locality, region = None, None
            pattern = f"+1{ddd}555{{:04d}}"
        else:
            raise _not_found(f"{API}/AvailablePhoneNumbers/{country}")
        records: list[dict] = []
        for seq in range(1, 10_000):
            number = pattern.format(seq)
            if number in owned:
                continue
            records.append(
                {
                    "address_requirements": "none",
                    "beta": False,
                    "capabilities": {"MMS": False, "SMS": True, "voice": True, "fax": False},
                    "friendly_name": _friendly(number),
                    "iso_country": country,
                    "lata": None,
                    "latitude": None,
                    "locality": locality,
                    "longitude": None,
                    "phone_number": number,
                    "postal_code": None,
                    "rate_center": None,
                    "region": region,
                }
            )
            if len(records) == page_size:
                break
        return records

    def buy_number(self, target: Account, params: dict[str, str]) -> PhoneNumber:
        e164 = params.get("PhoneNumber", "")
        if not e164:
            raise TwilioApiError(400, 21451, "A PhoneNumber or AreaCode is required")
        if not E164.match(e164):
            raise TwilioApiError(400, 21421, f"PhoneNumber {e164} is invalid")
        with self._lock:
            if self._number_by_e164(e164) is not None:
                raise TwilioApiError(400, 21422, f"PhoneNumber {e164} is not available")
            number = PhoneNumber(
                sid=_sid("PN"),
                account_sid=target.sid,
                phone_number=e164,
                friendly_name=params.get("FriendlyName") or _friendly(e164),
            )
            self._apply_number_params(number, params)
            self._numbers[number.sid] = number
            return number

    def numbers_of(self, target: Account, params: dict[str, str]) -> list[dict]:
        wanted = params.get("PhoneNumber")
        with self._lock:
            return [
                n.to_json()
                for n in self._numbers.values()
                if n.account_sid == target.sid
                and (not wanted or wanted in n.phone_number)
                and (not params.get("FriendlyName") or params["FriendlyName"] == n.friendly_name)
            ]

    def number_of(self, target: Account, number_sid: str, path: str) -> PhoneNumber:
        with self._lock:
            number = self._numbers.get(number_sid)
            if number is None or number.account_sid != target.sid:
                raise _not_found(path)
            return number

    def update_number(self, caller: Account, number: PhoneNumber, params: dict[str, str]) -> PhoneNumber:
        with self._lock:
            if new_owner := params.get("AccountSid"):
                # moving a number between a main account and its subaccounts
                owner = self._accounts.get(new_owner)
                family = {caller.sid, caller.owner_account_sid}
                if owner is None or owner.status != "active" or (
                    owner.sid not in family and owner.owner_account_sid not in family
                ):
                    raise TwilioApiError(400, 21472, "Account is not active")
                number.account_sid = owner.sid
            self._apply_number_params(number, params)
            number.date_updated = _now()
            return number

    def release_number(self, number: PhoneNumber) -> None:
        with self._lock:
            self._numbers.pop(number.sid, None)

    @staticmethod
    def _apply_number_params(number: PhoneNumber, params: dict[str, str]) -> None:
        for param, attr in (
            ("SmsUrl", "sms_url"),
            ("SmsMethod", "sms_method"),
            ("StatusCallback", "status_callback"),
            ("StatusCallbackMethod", "status_callback_method"),
            ("VoiceUrl", "voice_url"),
            ("FriendlyName", "friendly_name"),
        ):
            if param in params:
                # an empty URL clears it, as on Twilio
                setattr(number, attr, (params[param] or None) if attr.endswith("url") else params[param])

    def create_message(
        self, target: Account, params: dict[str, str], media_urls: list[str], failure: Failure | None
    ) -> Message:
        to = params.get("To", "")
        from_ = params.get("From")
        service = params.get("MessagingServiceSid")
        body = params.get("Body", "")
        if not to:
            raise TwilioApiError(400, 21604, "A 'To' phone number is required.")
        if not E164.match(_bare(to)):
            raise TwilioApiError(400, 21211, API_ERRORS[21211].format(to=to))
        if failure is not None and failure.kind == "api_error":
            code = failure.code or 21211
            raise TwilioApiError(400, code, API_ERRORS[code].format(to=to, from_=from_))
        if not body and not media_urls and not params.get("ContentSid"):
            raise TwilioApiError(400, 21602, "Message body is required.")
        if len(body) > 1600:
            raise TwilioApiError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if service is not None and not SERVICE_SID.match(service):
            raise TwilioApiError(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        with self._lock:
            owned = [n.phone_number for n in self._numbers.values() if n.account_sid == target.sid]
            if from_ is None:
                if service is None:
                    raise TwilioApiError(400, 21603, "A 'From' phone number is required.")
                if not owned:
                    raise TwilioApiError(400, 21704, "The Messaging Service contains no phone numbers")
                # the service picks a sender from its pool: here, the account's first number
                from_ = (WHATSAPP if to.startswith(WHATSAPP) else "") + owned[0]
            if _bare(from_) not in owned:
                raise TwilioApiError(400, 21606, API_ERRORS[21606].format(from_=from_, to=to))
            if from_.startswith(WHATSAPP) != to.startswith(WHATSAPP):
                raise TwilioApiError(
                    400, 21910, "Invalid From and To pair. From and To should be of the same channel"
                )
            message = Message(
                sid=_sid("SM"),
                account_sid=target.sid,
                from_=from_,
                to=to,
                body=body,
                direction="outbound-api",
                status="accepted" if service else "queued",
                messaging_service_sid=service,
                media_urls=media_urls,
                status_callback=params.get("StatusCallback"),
                content_sid=params.get("ContentSid"),
            )
            self._messages[message.sid] = message
            return message

    def messages_of(self, target: Account, params: dict[str, str]) -> list[dict]:
        """The account's messages matching ``To``/``From``/``DateSent``/``DateSent<``/
        ``DateSent>``, newest first (see the module docstring: how Twilio lists them)."""
        dates = _date_sent_filters(params)
        with self._lock:
            found = [
                m for m in self._messages.values()
                if m.account_sid == target.sid
                and (not params.get("To") or m.to == params["To"])
                and (not params.get("From") or m.from_ == params["From"])
                and all(m.date_sent is not None and test(m.date_sent.date()) for test in dates)
            ]
            ordered = sorted(enumerate(found), key=_newest_first, reverse=True)
            return [m.to_json() for _, m in ordered]

    def message_of(self, target: Account, message_sid: str, path: str) -> Message:
        with self._lock:
            message = self._messages.get(message_sid)
            if message is None or message.account_sid != target.sid:
                raise _not_found(path)
            return message


def _media_url(item: tuple[str, str] | dict[str, str]) -> str:
    return item["url"] if isinstance(item, dict) else item[0]


def _media_type(item: tuple[str, str] | dict[str, str]) -> str:
    return item["content_type"] if isinstance(item, dict) else item[1]


def _page(request: Request, key: str, records: list[dict]) -> dict[str, Any]:
    """One list page shaped like Twilio's: the paging keys plus exactly one record key.

    ``PageSize`` is 50 unless given, at most 1000. ``next_page_uri`` carries ``Page`` and
    a ``PageToken`` naming the last record served (``PA`` + its SID), and the next page
    starts after that record: a page is not shifted by records created meanwhile.
    """
    params = dict(request.query_params)
    size = max(1, min(_int(params.get("PageSize"), 50), 1000))
    page = max(0, _int(params.get("Page"), 0))
    start = page * size
    token = params.get("PageToken", "")
    if token.startswith("PA"):
        after = next((i for i, r in enumerate(records) if r.get("sid") == token[2:]), None)
        if after is not None:
            start = after + 1
    chunk = records[start : start + size]

    def uri(number: int, last: dict | None = None) -> str:
        query = {k: v for k, v in params.items() if k not in ("Page", "PageSize", "PageToken")}
        query.update(PageSize=str(size), Page=str(number))
        if last is not None and last.get("sid"):
            query["PageToken"] = "PA" + last["sid"]
        return f"{request.url.path}?{urlencode(query)}"

    more = start + size < len(records)
    return {
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1, chunk[-1] if chunk else None) if more else None,
        "page": page,
        "page_size": size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path,
        key: chunk,
    }


def _newest_first(entry: tuple[int, Message]) -> tuple[bool, datetime, int]:
    """Sort key (descending) of Twilio's message lists: by DateSent, the newest first;
    a message not sent yet (no DateSent) before any sent one; ties by creation order."""
    index, message = entry
    return message.date_sent is None, message.date_sent or message.date_created, index


def _date_sent_filters(params: dict[str, str]) -> list[Callable[[date], bool]]:
    """Tests of ``DateSent`` (that day), ``DateSent>`` (that day or later) and ``DateSent<``
    (that day or earlier), each a GMT date: Twilio filters by day, not by instant. A
    full ISO timestamp (the SDK's serialization of a ``datetime``) counts by its day."""
    tests: list[Callable[[date], bool]] = []
    for key, compare in (("DateSent", operator.eq), ("DateSent>", operator.ge), ("DateSent<", operator.le)):
        value = params.get(key)
        if not value:
            continue
        try:
            day = date.fromisoformat(value[:10])
        except ValueError:
            raise TwilioApiError(400, 20001, f"Invalid {key}: expected a date as YYYY-MM-DD") from None
        tests.append(lambda sent, day=day, compare=compare: compare(sent, day))
    return tests


# --- HTTP ---------------------------------------------------------------------------


class FailureIn(BaseModel):
    kind: FailureKind
    number: str | None = None
    resource: Resource | None = None
    code: int | None = None
    times: int | None = Field(default=None, ge=1)
    retry_after: int = 1
    delay: float = Field(default=1.0, ge=0, le=MAX_DELAY)


class MediaIn(BaseModel):
    url: str
    content_type: str


class InboundIn(BaseModel):
    to: str
    from_: str = Field(alias="from")
    body: str = ""
    channel: Literal["sms", "whatsapp"] = "sms"
    media: list[MediaIn] = []
    messaging_service_sid: str | None = None
    profile_name: str | None = None


class SettingsIn(BaseModel):
    callback_delay: float | None = Field(default=None, ge=0, le=MAX_DELAY)
    hub_url: str | None = None


class AccountIn(BaseModel):
    sid: str = Field(pattern=ACCOUNT_SID.pattern)
    auth_token: str = Field(min_length=1)
    friendly_name: str | None = None


def router(state: TwilioSandbox) -> APIRouter:
    """The Twilio REST API routes and the ``/_sandbox/twilio`` control endpoints."""
    api = APIRouter(include_in_schema=False)

    async def gate(
        request: Request, account_sid: str | None, resource: Resource, numbers: Iterable[str] = ()
    ) -> tuple[Account, Account | None, Failure | None]:
        """Authenticate, resolve the path account, and apply any injected failure.

        Returns the caller, the account the path names, and an unspent code-carrying
        failure (api_error / delivery_error) for the operation itself to honour.
        """
        caller = state._authenticate(request.headers.get("authorization"))
        target = None
        if account_sid is not None:
            # An owner may read or close its subaccount whatever its status.
            lenient = resource == "accounts"
            target = state._acting_on(caller, account_sid, request.url.path, allow_inactive=lenient)
        failure = state._take_failure(resource, numbers)
        if failure is None:
            return caller, target, None
        if failure.kind == "timeout":
            await asyncio.sleep(failure.delay)
            return caller, target, None
        if failure.kind == "http_500":
            raise TwilioApiError(500, 20500, "Internal Server Error")
        if failure.kind == "http_503":
            raise TwilioApiError(503, 20503, "Service Unavailable")
        if failure.kind == "http_429":
            raise TwilioApiError(429, 20429, "Too Many Requests", {"Retry-After": str(failure.retry_after)})
        if failure.kind == "api_error" and resource != "messages" and failure.code:
            # a message create checks its own input first; other resources refuse at once
            raise TwilioApiError(400, failure.code, API_ERRORS[failure.code].format(to="", from_=""))
        return caller, target, failure

    async def form_of(request: Request) -> tuple[dict[str, str], list[tuple[str, str]]]:
        items = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        return dict(items), items

    def answered(handler):
        # APIRouter has no exception handlers of its own: turn refusals into Twilio errors here.
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, **request.path_params)
            except TwilioApiError as exc:
                return exc.response()

        endpoint.__name__ = handler.__name__
        return endpoint

    # Accounts ------------------------------------------------------------------------
    @api.api_route(f"{API}/Accounts.json", methods=["GET", "POST"])
    @answered
    async def accounts(request: Request) -> Response:
        params, _ = await form_of(request)
        caller, _, _ = await gate(request, None, "accounts")
        if request.method == "POST":
            return JSONResponse(state.create_subaccount(caller, params).to_json(), status_code=201)
        records = state.visible_accounts(caller, dict(request.query_params))
        return JSONResponse(_page(request, "accounts", records))

    @api.api_route(f"{API}/Accounts/{{account_sid}}.json", methods=["GET", "POST"])
    @answered
    async def account(request: Request, account_sid: str) -> Response:
        params, _ = await form_of(request)
        _, target, _ = await gate(request, account_sid, "accounts")
        assert target is not None
        if request.method == "POST":
            target = state.update_account(target, params)
        return JSONResponse(target.to_json())

    # Available numbers ---------------------------------------------------------------
    @api.get(f"{API}/Accounts/{{account_sid}}/AvailablePhoneNumbers/{{country}}/{{number_type}}.json")
    @answered
    async def available(request: Request, account_sid: str, country: str, number_type: str) -> Response:
        await gate(request, account_sid, "available_numbers")
        if number_type not in ("Local", "Mobile"):
            raise _not_found(request.url.path)
        records = state.available_numbers(country.upper(), number_type, dict(request.query_params))
        page = _page(request, "available_phone_numbers", records)
        return JSONResponse(page)

    # Incoming phone numbers ----------------------------------------------------------
    @api.api_route(f"{API}/Accounts/{{account_sid}}/IncomingPhoneNumbers.json", methods=["GET", "POST"])
    @answered
    async def incoming_numbers(request: Request, account_sid: str) -> Response:
        params, _ = await form_of(request)
        if request.method == "POST":
            _, target, _ = await gate(request, account_sid, "numbers", [params.get("PhoneNumber", "")])
            assert target is not None
            return JSONResponse(state.buy_number(target, params).to_json(), status_code=201)
        _, target, _ = await gate(request, account_sid, "numbers")
        assert target is not None
        records = state.numbers_of(target, dict(request.query_params))
        return JSONResponse(_page(request, "incoming_phone_numbers", records))

    @api.api_route(
        f"{API}/Accounts/{{account_sid}}/IncomingPhoneNumbers/{{number_sid}}.json",
        methods=["GET", "POST", "DELETE"],
    )
    @answered
    async def incoming_number(request: Request, account_sid: str, number_sid: str) -> Response:
        params, _ = await form_of(request)
        caller = state._authenticate(request.headers.get("authorization"))
        target = state._acting_on(caller, account_sid, request.url.path)
        # the number is looked up first so a failure injected for it can match
        number = state.number_of(target, number_sid, request.url.path)
        await gate(request, account_sid, "numbers", [number.phone_number])
        if request.method == "DELETE":
            state.release_number(number)
            return Response(status_code=204)
        if request.method == "POST":
            number = state.update_number(caller, number, params)
        return JSONResponse(number.to_json())

    # Messages ------------------------------------------------------------------------
    @api.api_route(f"{API}/Accounts/{{account_sid}}/Messages.json", methods=["GET", "POST"])
    @answered
    async def messages(request: Request, account_sid: str) -> Response:
        params, items = await form_of(request)
        if request.method == "GET":
            _, target, _ = await gate(request, account_sid, "messages")
            assert target is not None
            records = state.messages_of(target, dict(request.query_params))
            return JSONResponse(_page(request, "messages", records))
        numbers = [params.get("From", ""), params.get("To", "")]
        _, target, failure = await gate(request, account_sid, "messages", numbers)
        assert target is not None
        media = [value for key, value in items if key == "MediaUrl"]
        message = state.create_message(target, params, media, failure)
        delivery_failure = failure if failure is not None and failure.kind == "delivery_error" else None
        state._start_status_callbacks(message, delivery_failure)
        return JSONResponse(message.to_json(), status_code=201)

    @api.get(f"{API}/Accounts/{{account_sid}}/Messages/{{message_sid}}.json")
    @answered
    async def message(request: Request, account_sid: str, message_sid: str) -> Response:
        _, target, _ = await gate(request, account_sid, "messages")
        assert target is not None
        return JSONResponse(state.message_of(target, message_sid, request.url.path).to_json())

    # Control endpoints ---------------------------------------------------------------
    @api.post(f"{CONTROL}/reset", status_code=204)
    async def reset() -> Response:
        state.reset()
        return Response(status_code=204)

    @api.post(f"{CONTROL}/accounts", status_code=201)
    async def register(account_in: AccountIn) -> dict:
        return state.register_account(
            account_in.sid, account_in.auth_token, friendly_name=account_in.friendly_name
        )

    @api.get(f"{CONTROL}/accounts")
    async def list_accounts() -> dict:
        return {"accounts": state.accounts()}

    @api.get(f"{CONTROL}/numbers")
    async def list_numbers(account_sid: str | None = None) -> dict:
        return {"numbers": state.numbers(account_sid=account_sid)}

    @api.post(f"{CONTROL}/failures", status_code=201)
    async def add_failure(failure_in: FailureIn) -> JSONResponse:
        try:
            failure_id = state.inject_failure(
                failure_in.kind,
                number=failure_in.number,
                resource=failure_in.resource,
                code=failure_in.code,
                times=failure_in.times,
                retry_after=failure_in.retry_after,
                delay=failure_in.delay,
            )
        except ValueError as exc:
            return JSONResponse({"error": {"code": "invalid_failure", "message": str(exc)}}, status_code=422)
        return JSONResponse({"id": failure_id}, status_code=201)

    @api.get(f"{CONTROL}/failures")
    async def list_failures() -> dict:
        return {"failures": state.failures()}

    @api.delete(f"{CONTROL}/failures", status_code=204)
    async def clear_failures(failure_id: str | None = None) -> Response:
        state.clear_failures(failure_id)
        return Response(status_code=204)

    @api.get(f"{CONTROL}/messages")
    async def sent(to: str | None = None, from_: str | None = None, account_sid: str | None = None) -> dict:
        return {"messages": state.sent_messages(to=to, from_=from_, account_sid=account_sid)}

    @api.get(f"{CONTROL}/callbacks")
    async def callbacks() -> dict:
        return {"callbacks": state.callbacks()}

    @api.post(f"{CONTROL}/inbound")
    async def inbound(inbound_in: InboundIn) -> JSONResponse:
        try:
            delivery = await state.simulate_inbound_async(
                to=inbound_in.to,
                from_=inbound_in.from_,
                body=inbound_in.body,
                channel=inbound_in.channel,
                media=[m.model_dump() for m in inbound_in.media],
                messaging_service_sid=inbound_in.messaging_service_sid,
                profile_name=inbound_in.profile_name,
            )
        except LookupError as exc:
            return JSONResponse({"error": {"code": "unknown_number", "message": str(exc)}}, status_code=404)
        except httpx.HTTPError as exc:
            error = {"code": "webhook_unreachable", "message": repr(exc)}
            return JSONResponse({"error": error}, status_code=502)
        return JSONResponse(asdict(delivery))

    @api.patch(f"{CONTROL}/settings")
    async def settings(settings_in: SettingsIn) -> dict:
        if settings_in.callback_delay is not None:
            state.callback_delay = settings_in.callback_delay
        if "hub_url" in settings_in.model_fields_set:
            state.hub_url = settings_in.hub_url
        return {"callback_delay": state.callback_delay, "hub_url": state.hub_url}

    return api
