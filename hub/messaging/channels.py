"""Which channel a message goes out on, and which one takes over when it cannot (fallback).

A tenant orders its channels (default WhatsApp → SMS → e-mail). A send tries them in
that order — or its own ``channel`` first — and goes out on the first one that is
*possible*: the recipient has an address there, has not opted out of it, the tenant
has a way to send on it, and the template has text for it. A channel passed over is
recorded on the message as a hop (``skipped`` or ``suppressed``).

Once queued, a message keeps its row and id when it changes channel: when its channel
fails for good, exhausts its retries or finds the contact opted out, the worker moves
the same row to the next possible channel — re-rendered from the same template and
data (a body-only message keeps its body), with its own address, sender and
conversation — and records the hop (``failed``, ``dead``, ``suppressed``). Attempts
carry their channel, so the message's history shows every channel it tried.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import phonenumbers
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from connectors.whatsapp_cloud.users import is_bsuid
from hub.contacts.models import Contact
from hub.contacts.repository import ContactRepository
from hub.db import utcnow
from hub.errors import Conflict, HubError, Invalid, Unavailable
from hub.messaging.addresses import (
    InvalidAddress,
    check_recipient_phone,
    normalize_email,
    normalize_phone,
    recipient_address,
)
from hub.messaging.models import DEFAULT_CHANNEL_ORDER, Message, MessageStatus, MessagingSettings
from hub.messaging.segments import MAX_SMS_SEGMENTS, TooManySegments, check_segments
from hub.providers import provider_base_url
from hub.whatsapp.service import ResolvedTemplate, TemplateRequest, WhatsAppRefused
from tenants.models import Integration, IntegrationStatus, Tenant
from tenants.repository import IntegrationRepository

if TYPE_CHECKING:
    from connectors.smtp import SmtpConnector
    from hub.runtime import Runtime

CHANNELS = ("whatsapp", "sms", "email")
PHONE_CHANNELS = ("sms", "whatsapp")
# The kind of integration that sends SMS and WhatsApp, and the one that sends e-mail.
SENDING_KIND = "twilio"
EMAIL_KIND = "smtp"
# hop outcomes besides the delivery ones (failed, dead)
SKIPPED = "skipped"
SUPPRESSED = "suppressed"
OPTED_OUT = "opted_out"

_DEFAULT_SUBJECT = {"pt": "Mensagem de {name}", "en": "A message from {name}"}


# --- the tenant's preferences -----------------------------------------------------------


def messaging_settings(session: Session, tenant_id: uuid.UUID) -> MessagingSettings:
    """The tenant's settings row, or the defaults (not stored) when it never saved any."""
    row = session.get(MessagingSettings, tenant_id)
    if row is None:
        row = MessagingSettings(tenant_id=tenant_id, channel_order=list(DEFAULT_CHANNEL_ORDER))
    return row


def put_messaging_settings(*, session: Session, tenant_id: uuid.UUID, values: dict[str, Any]) -> MessagingSettings:
    """Create or update the tenant's settings with ``values`` (already validated)."""
    row = session.get(MessagingSettings, tenant_id, with_for_update=True)
    now = utcnow()
    if row is None:
        row = MessagingSettings(tenant_id=tenant_id, channel_order=list(DEFAULT_CHANNEL_ORDER), created_at=now)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now
    session.flush()
    return row


# --- who sends on a channel ---------------------------------------------------------------


@dataclass(frozen=True)
class Sender:
    integration: Integration | None  # None: the platform's default SMTP relay
    address: str | None  # our number or From address; None when a Messaging Service picks it


def sender_for(session: Session, runtime: Runtime, tenant_id: uuid.UUID, channel: str) -> Sender:
    """The tenant's way to send on ``channel``; Conflict/Invalid saying why there is none."""
    if channel == "email":
        return _email_sender(session, runtime, tenant_id)
    if channel == "whatsapp":
        cloud = _whatsapp_cloud_sender(session, tenant_id)
        if cloud is not None:
            return cloud
    integration = IntegrationRepository(session, tenant_id).get(SENDING_KIND)
    config = _active_config(runtime, integration, SENDING_KIND)
    channels = getattr(config, "channels", [])
    if channel not in channels:
        raise Invalid(f"channel {channel!r} is not enabled on the {SENDING_KIND} integration "
                      f"(enabled: {', '.join(channels) or 'none'})", code="channel_not_enabled")
    numbers = getattr(config, "numbers", [])
    assert integration is not None  # _active_config raised otherwise
    if numbers:
        return Sender(integration, numbers[0])
    if getattr(config, "messaging_service_sid", None):
        return Sender(integration, None)
    raise Conflict(f"the {SENDING_KIND} integration has no number or Messaging Service to send from",
                   code="no_sender")


def _whatsapp_cloud_sender(session: Session, tenant_id: uuid.UUID) -> Sender | None:
    """The tenant's own Meta Cloud API number (an active whatsapp_cloud integration), which
    WhatsApp prefers over Twilio; it sends from its phone number ID."""
    from hub.webhooks.routes import routes_of
    from hub.whatsapp.service import WHATSAPP_CLOUD

    integration = IntegrationRepository(session, tenant_id).get(WHATSAPP_CLOUD)
    if integration is None or integration.status != IntegrationStatus.ACTIVE:
        return None
    routes = routes_of(session, integration_id=integration.id)
    return Sender(integration, routes[0].route_key if routes else None)


def _active_config(runtime: Runtime, integration: Integration | None, kind: str) -> Any:
    if integration is None:
        raise Conflict(f"no {kind} integration: connect one (PUT /v1/integrations/{kind}) before sending",
                       code="no_sending_integration")
    if integration.status != IntegrationStatus.ACTIVE:
        raise Conflict(f"the {kind} integration is {integration.status}, not active", code="integration_inactive")
    config_model: type[BaseModel] | None = runtime.registry.get(kind).config_model
    try:
        return config_model.model_validate(integration.config) if config_model else None
    except ValidationError as exc:
        raise Conflict(f"the {kind} integration's config is invalid: {exc.errors()[0]['msg']}",
                       code="integration_misconfigured") from None


def _email_sender(session: Session, runtime: Runtime, tenant_id: uuid.UUID) -> Sender:
    integration = IntegrationRepository(session, tenant_id).get(EMAIL_KIND)
    if integration is not None:
        _active_config(runtime, integration, EMAIL_KIND)
        from tenants import service as tenants

        from_address = tenants.open_credentials(session=session, vault=runtime.vault,
                                                integration=integration).get("from_address")
        return Sender(integration, from_address)
    platform = platform_smtp_values(runtime, connect=False)
    if platform is None:
        raise Conflict(f"no {EMAIL_KIND} integration and no platform default (HUB_SMTP_URL): connect one "
                       f"(PUT /v1/integrations/{EMAIL_KIND}) to send e-mail", code="no_sending_integration")
    return Sender(None, platform["from_address"])


def platform_smtp_values(runtime: Runtime, *, connect: bool = True) -> dict[str, Any] | None:
    """``SmtpCredentials`` values of the platform's relay (HUB_SMTP_URL, HUB_SMTP_FROM), or None.

    ``smtp://user:pass@host:587`` (STARTTLS unless ``?security=none``), ``smtps://…:465``
    (TLS from the first byte). ``connect=False`` when only the sender matters (queueing):
    the sandbox's sink is then not looked up."""
    raw = runtime.settings.smtp_url.get_secret_value().strip()
    if not raw:
        return _sandbox_smtp_values(runtime, connect=connect) if runtime.settings.use_sandbox else None
    url = urlsplit(raw)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise Conflict("HUB_SMTP_URL must look like smtp://user:pass@host:port", code="smtp_misconfigured")
    query = parse_qs(url.query)
    security = query.get("security", ["tls" if url.scheme == "smtps" else "starttls"])[0]
    from_address = runtime.settings.smtp_from.strip() or (
        f"{unquote(url.username)}" if url.username and "@" in unquote(url.username) else f"no-reply@{url.hostname}")
    return {
        "host": url.hostname, "port": url.port or (465 if url.scheme == "smtps" else 587),
        "username": unquote(url.username) if url.username else None,
        "password": unquote(url.password) if url.password else None,
        "from_address": from_address, "from_name": runtime.settings.smtp_from_name or None, "security": security,
    }


def _sandbox_smtp_values(runtime: Runtime, *, connect: bool) -> dict[str, Any]:
    """In sandbox mode without HUB_SMTP_URL the platform relay is the sandbox's SMTP sink
    (connectors/sandbox/smtp.py), so e-mail works in `make run` with no account."""
    import httpx

    cached = runtime.caches.get("sandbox_smtp") or ({"host": None, "port": None} if not connect else None)
    if cached is None:
        base = provider_base_url(runtime)
        try:
            answer = httpx.get(f"{base}/_sandbox/smtp", timeout=10)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise Unavailable(f"the sandbox's SMTP sink does not answer ({exc.__class__.__name__})",
                              code="sandbox_unavailable") from exc
        cached = runtime.caches["sandbox_smtp"] = answer.json()
    return {"host": cached["host"], "port": cached["port"], "username": None, "password": None,
            "from_address": runtime.settings.smtp_from.strip() or "no-reply@sandbox.hub.test",
            "from_name": runtime.settings.smtp_from_name or None, "security": "none"}


def platform_smtp(runtime: Runtime, *, timeout: float) -> SmtpConnector:
    """A connector for the platform's default relay (raises Conflict when none is configured)."""
    from connectors.netguard import NetworkGuard
    from connectors.smtp import SmtpConnector, SmtpCredentials

    values = platform_smtp_values(runtime)
    if values is None:
        raise Conflict("no platform SMTP relay (HUB_SMTP_URL)", code="no_sending_integration")
    # the operator chose this relay, not a tenant: an internal one is fine
    return SmtpConnector(credentials=SmtpCredentials.model_validate(values), timeout=timeout,
                         network=NetworkGuard(allow_private=True))


def email_headers(session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                  to_address: str) -> tuple[str | None, dict[str, str]]:
    """``(Reply-To, extra headers)`` of the tenant's e-mail: its reply-to and List-Unsubscribe:
    the hub's one-click link for this recipient first (RFC 8058, hub.contacts.unsubscribe),
    then the tenant's own unsubscribe URL and mailbox when it set them (never a guessed
    mailbox nobody reads)."""
    from hub.contacts.unsubscribe import unsubscribe_url

    prefs = messaging_settings(session, tenant_id)
    one_click = unsubscribe_url(runtime.settings.effective_public_url, runtime.unsubscribe_tokens, tenant_id,
                                to_address)
    targets = [f"<{one_click}>"]
    if prefs.email_unsubscribe_url:
        targets.append(f"<{prefs.email_unsubscribe_url}>")
    if prefs.email_unsubscribe_mailto:
        targets.append(f"<mailto:{prefs.email_unsubscribe_mailto}?subject=unsubscribe>")
    return prefs.email_reply_to, {"List-Unsubscribe": ", ".join(targets)}


# --- routing one message ----------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """What a message says, before it is fitted to a channel."""

    template: str | None
    data: dict[str, Any] | None
    body: str
    media: list[str]
    subject: str | None
    locale: str
    # an approved WhatsApp template the caller named (WhatsApp Cloud only)
    whatsapp_template: TemplateRequest | None = None


@dataclass(frozen=True)
class Route:
    """A channel that can take the message now, and the message as it goes there."""

    channel: str
    to: str
    sender: Sender
    body: str
    subject: str | None = None
    html: str | None = None
    segments: int | None = None
    provider_template: dict[str, Any] | None = None
    # what goes to Meta instead of the body (WhatsApp Cloud outside the 24-hour window)
    whatsapp_template: ResolvedTemplate | None = None


@dataclass(frozen=True)
class Skip:
    """A channel passed over, and why."""

    channel: str
    to: str | None
    outcome: str  # skipped | suppressed
    error: HubError
    at: Any = field(default_factory=utcnow)

    def hop(self) -> dict[str, Any]:
        return hop(self.channel, self.to, self.outcome, self.error.code, self.error.message, self.at)


def hop(channel: str, to: str | None, outcome: str, code: str | None, message: str | None,
        at: Any = None) -> dict[str, Any]:
    """One entry of ``Message.hops``."""
    return {"channel": channel, "to": to, "outcome": outcome, "error_code": code, "error_message": message,
            "at": (at or utcnow()).isoformat()}


def region_of(session: Session, tenant_id: uuid.UUID) -> str:
    """The country a national number is read in: the tenant locale's (pt-BR -> BR), else BR."""
    tenant = session.get(Tenant, tenant_id)
    region = (tenant.locale.partition("-")[2] if tenant else "").upper()
    return region if region in phonenumbers.SUPPORTED_REGIONS else "BR"


def contact_at(session: Session, tenant_id: uuid.UUID, raw: str) -> Contact | None:
    """The tenant's contact reached at ``raw`` (a phone or an e-mail), if any."""
    contacts = ContactRepository(session, tenant_id)
    try:
        return contacts.by_address("sms", normalize_phone(raw, default_region=region_of(session, tenant_id)))
    except InvalidAddress:
        pass
    try:
        return contacts.by_address("email", normalize_email(raw))
    except InvalidAddress:
        return None


def route_to(session: Session, runtime: Runtime, tenant_id: uuid.UUID, *, channel: str, contact: Contact | None,
             raw_to: str | None, content: Content, strict: bool, check_consent: bool = True) -> Route | Skip:
    """The message fitted to ``channel``, or why that channel is not possible.

    ``strict``: a problem of the content itself (a template's missing variable, an SMS
    over its segments) is raised — the caller's mistake — instead of skipping the channel.
    ``check_consent`` False: the hub's own opt-out/opt-in confirmations go regardless."""
    try:
        to = _address(session, tenant_id, channel, contact, raw_to)
    except HubError as exc:
        return Skip(channel, None, SKIPPED, exc)
    if check_consent and ContactRepository(session, tenant_id).opted_out(channel, to):
        return Skip(channel, to, SUPPRESSED, Invalid(f"the recipient opted out of {channel}", code=OPTED_OUT))
    try:
        sender = sender_for(session, runtime, tenant_id, channel)
        _reachable_by(sender, channel, to)
    except HubError as exc:
        return Skip(channel, to, SKIPPED, exc)
    try:
        route = _fitted(session, tenant_id, channel, to, sender, content)
    except HubError as exc:
        from hub.templates.service import ChannelVariantMissing

        if strict and not isinstance(exc, ChannelVariantMissing):
            raise
        return Skip(channel, to, SKIPPED, exc)
    try:
        return _within_whatsapp_rules(session, tenant_id, route, content)
    except WhatsAppRefused as exc:
        # the window is closed and no approved template fits: not possible on this channel
        return Skip(channel, to, SKIPPED, exc.as_invalid())


def _reachable_by(sender: Sender, channel: str, to: str) -> None:
    """A WhatsApp user known only by Meta's business-scoped id has no number Twilio could
    send to: only the tenant's own Cloud API number reaches them."""
    from hub.whatsapp.service import WHATSAPP_CLOUD

    if channel == "whatsapp" and is_bsuid(to) and (sender.integration is None
                                                   or sender.integration.kind != WHATSAPP_CLOUD):
        raise Invalid("to: this WhatsApp user shows no phone number (a username user, known by Meta's "
                      "business-scoped id); only a whatsapp_cloud integration can reach them",
                      code="whatsapp_user_needs_cloud_api")


def _within_whatsapp_rules(session: Session, tenant_id: uuid.UUID, route: Route, content: Content) -> Route:
    """WhatsApp Cloud's rules, checked before anything is written (a clear 422 or a hop
    instead of Meta's opaque refusal later): free text within 24 h of the contact's last
    message, else an approved template — the caller's, the tenant's mapping of this hub
    template (hub.whatsapp), or the template's own ``whatsapp_template``."""
    from hub.whatsapp import service as whatsapp

    integration = route.sender.integration
    cloud = route.channel == "whatsapp" and integration is not None and integration.kind == whatsapp.WHATSAPP_CLOUD
    if not cloud:
        if content.whatsapp_template is not None:
            raise WhatsAppRefused("whatsapp_template needs a whatsapp_cloud integration (Meta's Cloud API)",
                                  code="whatsapp_template_unsupported")
        return route
    assert integration is not None
    request = content.whatsapp_template
    if request is None and not whatsapp.window_open(session, tenant_id=tenant_id, contact=route.to):
        if content.template:
            request = whatsapp.mapped_template(session, tenant_id=tenant_id, template=content.template,
                                               data=content.data or {})
        if request is None and route.provider_template:
            mapped = route.provider_template
            request = whatsapp.TemplateRequest(name=mapped["name"], language=mapped.get("language"),
                                               parameters=tuple(str(p) for p in mapped.get("parameters") or ()))
    resolved = whatsapp.check_send(session, tenant_id=tenant_id, integration_id=integration.id, to=route.to,
                                   template=request)
    if resolved is None:
        return route
    # the history shows what the contact read
    return replace(route, body=resolved.text, whatsapp_template=resolved)


def attach_whatsapp_template(session: Session, message: Message, route: Route) -> None:
    """Remember the approved template the message goes out as (checked again at delivery)."""
    if route.whatsapp_template is not None:
        from hub.whatsapp import service as whatsapp

        session.flush()  # the template row points at the message
        whatsapp.attach_template(session, message=message, template=route.whatsapp_template)


def _address(session: Session, tenant_id: uuid.UUID, channel: str, contact: Contact | None,
             raw_to: str | None) -> str:
    if raw_to is not None:
        try:
            return recipient_address(channel, raw_to, default_region=region_of(session, tenant_id))  # type: ignore[arg-type]
        except InvalidAddress as exc:
            raise Invalid(f"to: {exc}", code="invalid_address") from None
    address = (contact.phone if channel in PHONE_CHANNELS else contact.email) if contact else None
    if not address:
        what = "phone number" if channel in PHONE_CHANNELS else "e-mail address"
        raise Invalid(f"the contact has no {what} for {channel}", code="no_address")
    if channel in PHONE_CHANNELS:
        try:
            check_recipient_phone(address)
        except InvalidAddress as exc:
            raise Invalid(f"the contact's phone: {exc}", code="invalid_address") from None
    return address


def _fitted(session: Session, tenant_id: uuid.UUID, channel: str, to: str, sender: Sender,
            content: Content) -> Route:
    if content.template:
        from hub.templates.service import render_message

        rendered = render_message(session=session, tenant_id=tenant_id, template=content.template, channel=channel,
                                  data=content.data or {}, locale=content.locale)
        provider_template = None
        if rendered.template_name:
            provider_template = {"name": rendered.template_name, "language": rendered.template_language,
                                 "parameters": list(rendered.template_parameters)}
        return Route(channel, to, sender, rendered.body, rendered.subject, rendered.html,
                     rendered.segments.segments if rendered.segments else None, provider_template)
    segments = sms_segments(content.body) if channel == "sms" else None
    subject = None
    if channel == "email":
        tenant = session.get(Tenant, tenant_id)
        language = "en" if content.locale.lower().startswith("en") else "pt"
        subject = content.subject or _DEFAULT_SUBJECT[language].format(name=tenant.name if tenant else "")
    return Route(channel, to, sender, content.body, subject, None, segments)


def sms_segments(body: str) -> int:
    """Segments of an SMS body; 422 ``too_many_segments`` past the limit."""
    try:
        return check_segments(body, MAX_SMS_SEGMENTS).segments
    except TooManySegments as exc:
        raise Invalid(f"body: {exc}", code="too_many_segments",
                      details={"segments": exc.count.segments, "encoding": exc.count.encoding,
                               "max_segments": exc.max_segments}) from None


# --- falling back, in the worker ------------------------------------------------------------


def fall_back(session: Session, runtime: Runtime, message: Message, left: dict[str, Any]) -> bool:
    """Move ``message`` to the next possible channel of its plan, recording ``left`` (the
    hop it leaves behind) and every channel passed over. True when one took it (the
    message is queued again there); False when none is left (it keeps its final status)."""
    from hub.messaging.inbound import thread_conversation

    hops = [*message.hops, left]
    plan = list(message.channel_plan)
    contact = session.get(Contact, message.contact_id) if message.contact_id else None
    if contact is not None and contact.erased_at is not None:
        contact = None
    content = Content(template=message.template, data=message.template_data, body=message.body,
                      media=[m["url"] for m in message.media or [] if isinstance(m, dict) and m.get("url")],
                      subject=message.subject if not message.template else None,
                      locale=message.locale or "pt-BR")
    # without a contact, the address the message was sent to is all we have
    raw_to = None if contact is not None else message.to_address
    while plan:
        channel = plan.pop(0)
        found = route_to(session, runtime, message.tenant_id, channel=channel, contact=contact, raw_to=raw_to,
                         content=content, strict=False, check_consent=not message.consent_exempt)
        if isinstance(found, Skip):
            hops.append(found.hop())
            continue
        now = utcnow()
        integration_id = found.sender.integration.id if found.sender.integration else None
        message.conversation_id = thread_conversation(
            session, tenant_id=message.tenant_id, integration_id=integration_id, channel=found.channel,
            contact=found.to, hub_address=found.sender.address, received_at=now)
        message.channel, message.to_address, message.from_address = found.channel, found.to, found.sender.address
        message.integration_id = integration_id
        message.body, message.subject, message.html = found.body, found.subject, found.html
        message.segments, message.provider_template = found.segments, found.provider_template
        message.status, message.attempt_count, message.next_attempt_at = MessageStatus.QUEUED, 0, now
        message.claimed_until = message.provider_message_id = message.sent_at = None
        message.error_code = message.error_message = None
        message.channel_plan, message.hops, message.updated_at = plan, hops, now
        session.flush()
        attach_whatsapp_template(session, message, found)
        return True
    message.channel_plan, message.hops = [], hops
    session.flush()
    return False


def fall_back_after_callback(session: Session, runtime: Runtime, message: Message) -> bool:
    """A provider callback reported the message failed or undelivered after accepting it
    (a WhatsApp window closed, an unreachable handset): the next channel takes over, as
    for a failure at send time. The caller commits; the delivery task goes after commit."""
    from hub.messaging import repository as repo
    from hub.messaging.service import AFTER_COMMIT_GRACE, publish_after_commit

    if message.status not in (MessageStatus.FAILED, MessageStatus.UNDELIVERED) or not message.channel_plan:
        return False
    left = hop(message.channel, message.to_address, message.status, message.error_code, message.error_message)
    if not fall_back(session, runtime, message, left):
        return False
    available_at = utcnow() + AFTER_COMMIT_GRACE
    repo.arm_outbox(session, message_id=message.id, available_at=available_at)
    publish_after_commit(session, runtime, message.id, available_at)
    return True
