"""The hub side of the WhatsApp Cloud API: installing a tenant's number (its route and
its hashed verify token), Meta's subscription handshake, syncing the account's message
templates, and the rules a send must pass before Meta sees it.

The rules (Meta's, checked here so the caller gets a clear error instead of Graph's
opaque one): free-form text or media only within 24 hours of the contact's last
inbound WhatsApp message to the tenant (the customer-service window, read from the
messages table); outside it only a template, which must be synced, ``APPROVED``, exist
in the language asked for (or the tenant locale's: pt-BR → ``pt_BR``, en → ``en_US``
or ``en``) and get exactly as many parameters as it has placeholders.
A refusal is ``WhatsAppRefused``: the API path turns it into a 422 (``hub.errors.Invalid``),
the delivery path into a ``PermanentProviderError`` (so a fallback channel can take over),
both with the same codes.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError
from connectors.whatsapp_cloud import WhatsAppCloudConfig, WhatsAppCloudConnector, WhatsAppCloudCredentials
from connectors.whatsapp_cloud.templates import body_parameter_names, parameter_counts
from hub.db import utcnow
from hub.errors import Invalid, NotFound, ProviderRejected, Unavailable
from hub.messaging.models import Direction, Message
from hub.providers import connector_for
from hub.webhooks.routes import claim_route, release_routes, route_cache, routes_of
from hub.whatsapp.models import (
    WhatsAppMessageTemplate,
    WhatsAppTemplate,
    WhatsAppTemplateMapping,
    WhatsAppVerifyToken,
)
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus, Tenant

if TYPE_CHECKING:
    from hub.runtime import Runtime
    from hub.whatsapp.schemas import TemplateMappingWrite, WhatsAppTemplateIn

log = structlog.get_logger("hub.whatsapp")

WHATSAPP_CLOUD = "whatsapp_cloud"
CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
APPROVED = "APPROVED"

# refusal codes (shared with the fallback engine: each means "this channel cannot take it")
WINDOW_CLOSED = "whatsapp_window_closed"
TEMPLATE_NOT_APPROVED = "whatsapp_template_not_approved"
TEMPLATE_LANGUAGE_MISSING = "whatsapp_template_language_missing"
TEMPLATE_PARAMETERS = "whatsapp_template_parameters"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class WhatsAppRefused(Exception):
    """A send Meta would refuse (or that the window forbids), with one of the codes above."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def as_invalid(self) -> Invalid:
        return Invalid(self.message, code=self.code)

    def as_provider_error(self) -> PermanentProviderError:
        return PermanentProviderError(self.message, code=self.code)


@dataclass(frozen=True)
class TemplateRequest:
    name: str
    language: str | None
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedTemplate:
    """A template that passed every check: what goes to Meta, and its text for the history."""

    name: str
    language: str
    parameters: tuple[str, ...]
    text: str
    # the placeholders' names of a NAMED template, in the parameters' order (else empty)
    parameter_names: tuple[str, ...] = ()


# --- installation ---------------------------------------------------------------------


def verify_token_hash(token: str) -> str:
    """What the handshake looks an integration up by (the token itself stays sealed)."""
    return hashlib.sha256(b"whatsapp-verify-token:" + token.encode("utf-8")).hexdigest()


def install_whatsapp_cloud(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                           credentials: dict[str, Any], config: dict[str, Any], subscribe: bool = True) -> Integration:
    """Store the tenant's WhatsApp Cloud credentials (sealed), route its phone number ID
    to it (409 ``route_taken`` when another integration has it), index its verify token
    and subscribe the app to the account's webhooks (``subscribe``: the API always does;
    False only for an account already subscribed, e.g. in Meta's dashboard)."""
    try:
        creds = WhatsAppCloudCredentials.model_validate(credentials)
        settings = WhatsAppCloudConfig.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Invalid(f"whatsapp_cloud {where}: {first.get('msg')}", code="invalid_credentials") from None
    integration = tenants.put_integration(
        session=session, vault=runtime.vault, tenant_id=tenant_id, kind=WHATSAPP_CLOUD,
        credentials={name: value.get_secret_value() if hasattr(value, "get_secret_value") else value
                     for name, value in creds.model_dump().items()},
        # the Graph version is the platform's (hub.providers.platform_config), not stored per tenant
        config=settings.model_dump(exclude={"api_version"}), status=IntegrationStatus.ACTIVE,
    )
    stale = [r.route_key for r in routes_of(session, integration_id=integration.id)
             if r.route_key != creds.phone_number_id]
    if stale:
        release_routes(session, integration_id=integration.id, route_keys=stale)
    claim_route(session, kind=WHATSAPP_CLOUD, route_key=creds.phone_number_id, integration=integration)
    for key in (*stale, creds.phone_number_id):
        route_cache(runtime).forget(WHATSAPP_CLOUD, key)
    session.execute(delete(WhatsAppVerifyToken).where(WhatsAppVerifyToken.integration_id == integration.id))
    session.add(WhatsAppVerifyToken(integration_id=integration.id, tenant_id=tenant_id,
                                    token_hash=verify_token_hash(creds.verify_token.get_secret_value())))
    session.flush()
    _point_sandbox_at_hub(runtime, creds)
    if subscribe:
        _subscribe_app(session, runtime, integration)
    return integration


def _subscribe_app(session: Session, runtime: Runtime, integration: Integration) -> None:
    """Subscribe the app to the account's webhooks, as Meta requires before it sends any:
    a 422 naming Meta's refusal when it will not (nothing is installed), a 502 when Meta
    does not answer (retry the install)."""
    connector = connector_for(runtime, session, integration, timeout=runtime.settings.delivery_timeout_seconds)
    try:
        connector.subscribe_app()
    except PermanentProviderError as exc:
        raise Invalid(f"Meta refused to subscribe the app to WhatsApp Business account "
                      f"{connector.credentials.waba_id}'s webhooks: {exc.message}",
                      code="whatsapp_subscription_refused") from None
    except ProviderError as exc:
        raise Unavailable(f"Meta did not answer the webhook subscription ({exc.code or exc.status}); "
                          "install the integration again", code="provider_unavailable") from None


def _point_sandbox_at_hub(runtime: Runtime, creds: WhatsAppCloudCredentials) -> None:
    """In sandbox mode, do what the tenant does in Meta's app settings: send the number's
    webhooks to this hub, signed with its app secret (so `hub demo` users need no account)."""
    if not runtime.settings.use_sandbox or not runtime.sandbox_url:
        return
    try:
        httpx.post(f"{runtime.sandbox_url}/_sandbox/meta/numbers", timeout=5.0, json={
            "phone_number_id": creds.phone_number_id, "waba_id": creds.waba_id,
            "webhook_url": runtime.settings.effective_public_url + "/webhooks/whatsapp",
            "app_secret": creds.app_secret.get_secret_value(),
            "subscribed": False}).raise_for_status()  # the install subscribes through the Graph API
    except httpx.HTTPError as exc:  # the integration stands; only the sandbox's callbacks are missing
        log.warning("sandbox Meta not configured for the number", error=type(exc).__name__)


def uninstall_whatsapp_cloud(*, session: Session, runtime: Runtime, integration: Integration) -> None:
    """Stop routing the integration's number and answering its handshake."""
    keys = [r.route_key for r in routes_of(session, integration_id=integration.id)]
    release_routes(session, integration_id=integration.id)
    for key in keys:
        route_cache(runtime).forget(WHATSAPP_CLOUD, key)
    session.execute(delete(WhatsAppVerifyToken).where(WhatsAppVerifyToken.integration_id == integration.id))
    session.flush()


def answer_subscription(*, runtime: Runtime, query: dict[str, str]) -> str | None:
    """Meta's GET handshake: the challenge to echo when ``hub.mode=subscribe`` and the
    token is some integration's verify token (compared in constant time), else None."""
    offered = query.get("hub.verify_token") or ""
    if query.get("hub.mode") != "subscribe" or not offered:
        return None
    with runtime.session_factory() as session:
        candidates = session.scalars(
            select(Integration)
            .join(WhatsAppVerifyToken, WhatsAppVerifyToken.integration_id == Integration.id)
            .where(WhatsAppVerifyToken.token_hash == verify_token_hash(offered),
                   WhatsAppVerifyToken.tenant_id == Integration.tenant_id,
                   Integration.kind == WHATSAPP_CLOUD)
        ).all()
        for integration in candidates:
            sealed = integration.credentials.get("verify_token")
            if not sealed:
                continue
            token = runtime.vault.open_field(session, tenant_id=integration.tenant_id,
                                             integration_id=integration.id, field_name="verify_token", sealed=sealed)
            challenge = WhatsAppCloudConnector.verify_subscription(query, token)
            if challenge is not None:
                return challenge
    return None


# --- templates ------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    synced: int
    added: int
    updated: int
    removed: int
    synced_at: datetime


def _integration(session: Session, tenant_id: uuid.UUID) -> Integration:
    integration = session.scalar(select(Integration).where(Integration.tenant_id == tenant_id,
                                                           Integration.kind == WHATSAPP_CLOUD))
    if integration is None:
        raise NotFound("no whatsapp_cloud integration")
    return integration


def list_templates(*, session: Session, tenant_id: uuid.UUID) -> list[WhatsAppTemplate]:
    """The tenant's synced templates, by name then language."""
    integration = _integration(session, tenant_id)
    return list(session.scalars(
        select(WhatsAppTemplate)
        .where(WhatsAppTemplate.tenant_id == tenant_id, WhatsAppTemplate.integration_id == integration.id)
        .order_by(WhatsAppTemplate.name, WhatsAppTemplate.language)))


def sync_templates(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID) -> SyncResult:
    """Read every template of the account from Graph (following paging) and mirror them:
    new ones added, changed ones updated, those Meta no longer lists removed."""
    integration = _integration(session, tenant_id)
    if integration.status != IntegrationStatus.ACTIVE:
        raise Invalid(f"the whatsapp_cloud integration is {integration.status}", code="integration_inactive")
    connector = connector_for(runtime, session, integration)
    assert isinstance(connector, WhatsAppCloudConnector)
    try:
        listed = connector.list_message_templates()
    except ProviderError as exc:
        if exc.permanent:
            raise ProviderRejected(f"Meta refused the template list: {exc.message}",
                                   code="provider_rejected") from None
        raise Unavailable(f"Meta did not answer the template list: {exc.message}",
                          code="provider_unavailable") from None
    now = utcnow()
    existing = {(t.name, t.language): t for t in session.scalars(
        select(WhatsAppTemplate).where(WhatsAppTemplate.tenant_id == tenant_id,
                                       WhatsAppTemplate.integration_id == integration.id))}
    added = updated = 0
    seen: set[tuple[str, str]] = set()
    for item in listed:
        key = (item.name, item.language)
        if not item.name or not item.language or key in seen:
            continue
        seen.add(key)
        values = {"status": item.status.upper(), "category": item.category.upper(),
                  "provider_template_id": item.provider_template_id,
                  "parameter_counts": parameter_counts(item.components), "components": item.components,
                  "synced_at": now}
        row = existing.get(key)
        if row is None:
            session.add(WhatsAppTemplate(tenant_id=tenant_id, integration_id=integration.id, name=item.name,
                                         language=item.language, **values))
            added += 1
        else:
            changed = any(getattr(row, k) != v for k, v in values.items() if k != "synced_at")
            for k, v in values.items():
                setattr(row, k, v)
            updated += int(changed)
    gone = [row for key, row in existing.items() if key not in seen]
    for row in gone:
        session.delete(row)
    session.flush()
    log.info("whatsapp templates synced", tenant_id=str(tenant_id), synced=len(seen), added=added,
             updated=updated, removed=len(gone))
    return SyncResult(synced=len(seen), added=added, updated=updated, removed=len(gone), synced_at=now)


def sync_every_account(*, runtime: Runtime) -> dict[str, int]:
    """The beat task's work: sync each active whatsapp_cloud integration in its own
    transaction (one tenant's failure is logged and spoils none of the others)."""
    with runtime.session_factory() as session:
        tenant_ids = list(session.scalars(select(Integration.tenant_id).where(
            Integration.kind == WHATSAPP_CLOUD, Integration.status == IntegrationStatus.ACTIVE)))
    outcome = {"synced": 0, "failed": 0}
    for tenant_id in tenant_ids:
        try:
            with runtime.session_factory() as session, session.begin():
                sync_templates(session=session, runtime=runtime, tenant_id=tenant_id)
            outcome["synced"] += 1
        except (ProviderRejected, Unavailable, Invalid, NotFound) as exc:
            outcome["failed"] += 1
            log.warning("whatsapp template sync failed", tenant_id=str(tenant_id), code=exc.code,
                        error=exc.message)
    return outcome


# --- our templates -> WhatsApp templates ---------------------------------------------------


def list_mappings(*, session: Session, tenant_id: uuid.UUID) -> list[WhatsAppTemplateMapping]:
    """The tenant's mappings of hub templates to WhatsApp templates, by hub template."""
    return list(session.scalars(select(WhatsAppTemplateMapping).where(WhatsAppTemplateMapping.tenant_id == tenant_id)
                                .order_by(WhatsAppTemplateMapping.template)))


def put_mapping(*, session: Session, tenant_id: uuid.UUID, template: str, mapping_in: TemplateMappingWrite,
                variables: list[str]) -> WhatsAppTemplateMapping:
    """Map hub template ``template`` (whose data ``variables`` declares) to a WhatsApp
    template (created or replaced), after checking every parameter can ever resolve."""
    _check_mapping(session, tenant_id=tenant_id, template=template, mapping_in=mapping_in, variables=variables)
    mapping = session.scalar(select(WhatsAppTemplateMapping).where(
        WhatsAppTemplateMapping.tenant_id == tenant_id, WhatsAppTemplateMapping.template == template))
    if mapping is None:
        mapping = WhatsAppTemplateMapping(tenant_id=tenant_id, template=template)
        session.add(mapping)
    mapping.whatsapp_name = mapping_in.whatsapp_name
    mapping.language = mapping_in.language
    mapping.parameters = list(mapping_in.parameters)
    session.flush()
    return mapping


def _check_mapping(session: Session, *, tenant_id: uuid.UUID, template: str, mapping_in: TemplateMappingWrite,
                   variables: list[str]) -> None:
    """422 for a mapping that could never fill its template: a parameter naming data the hub
    template does not declare, or a count the synced WhatsApp template does not take."""
    undeclared = [key for key in mapping_in.parameters if key.split(".")[0] not in variables]
    if undeclared:
        raise Invalid(f"parameters: {', '.join(undeclared)} not among template {template!r}'s variables "
                      f"({', '.join(variables) or 'none'}); such a parameter could never be filled",
                      code="mapping_parameters_unknown")
    synced = [row for row in session.scalars(select(WhatsAppTemplate).where(
        WhatsAppTemplate.tenant_id == tenant_id, WhatsAppTemplate.name == mapping_in.whatsapp_name))
        if mapping_in.language in (None, row.language)]
    for row in synced:
        expected = int((row.parameter_counts or {}).get("body", 0))
        if expected != len(mapping_in.parameters):
            raise Invalid(f"parameters: WhatsApp template {row.name!r} ({row.language}) takes {expected} body "
                          f"parameter(s), the mapping gives {len(mapping_in.parameters)}",
                          code="mapping_parameters_count")


def delete_mapping(*, session: Session, tenant_id: uuid.UUID, template: str) -> None:
    """Forget the mapping of ``template``; NotFound when there is none."""
    removed = session.execute(delete(WhatsAppTemplateMapping).where(
        WhatsAppTemplateMapping.tenant_id == tenant_id, WhatsAppTemplateMapping.template == template)).rowcount
    if not removed:
        raise NotFound(f"no WhatsApp mapping for template {template!r}")


def _lookup(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def mapped_template(session: Session, *, tenant_id: uuid.UUID, template: str,
                    data: dict[str, Any]) -> TemplateRequest | None:
    """The WhatsApp template request for hub template ``template`` rendered with ``data``,
    or None when the tenant mapped none. A data key the mapping names but ``data`` lacks
    is a WhatsAppRefused (``whatsapp_template_parameters``)."""
    mapping = session.scalar(select(WhatsAppTemplateMapping).where(
        WhatsAppTemplateMapping.tenant_id == tenant_id, WhatsAppTemplateMapping.template == template))
    if mapping is None:
        return None
    values = [_lookup(data, key) for key in mapping.parameters]
    missing = [key for key, value in zip(mapping.parameters, values, strict=True) if value in (None, "")]
    if missing:
        raise WhatsAppRefused(f"WhatsApp template {mapping.whatsapp_name!r} (for {template!r}) needs data "
                              f"{', '.join(missing)}", code=TEMPLATE_PARAMETERS)
    return TemplateRequest(name=mapping.whatsapp_name, language=mapping.language,
                           parameters=tuple(str(v) for v in values))


# --- the rules of a send ----------------------------------------------------------------


def template_languages(locale: str) -> list[str]:
    """Meta language codes for a tenant locale, best first: pt-BR → pt_BR; en → en_US, en."""
    language, _, region = locale.replace("_", "-").partition("-")
    language = language.lower()
    candidates = [f"{language}_{region.upper()}"] if region else []
    if language == "en":
        candidates.append("en_US")  # Meta's English templates are en_US, or bare en
    candidates.append(language)
    return list(dict.fromkeys(candidates))


def last_inbound_at(session: Session, *, tenant_id: uuid.UUID, contact: str) -> datetime | None:
    """When the contact last wrote to the tenant on WhatsApp."""
    return session.scalar(select(func.max(Message.created_at)).where(
        Message.tenant_id == tenant_id, Message.direction == Direction.INBOUND, Message.channel == "whatsapp",
        Message.from_address == contact))


def window_open(session: Session, *, tenant_id: uuid.UUID, contact: str, now: datetime | None = None) -> bool:
    """True within 24 hours of the contact's last inbound WhatsApp message."""
    last = last_inbound_at(session, tenant_id=tenant_id, contact=contact)
    return last is not None and (now or utcnow()) - last < CUSTOMER_SERVICE_WINDOW


def _filled(template: WhatsAppTemplate, parameters: tuple[str, ...]) -> str:
    body = next((str(c.get("text") or "") for c in template.components
                 if isinstance(c, dict) and str(c.get("type", "")).upper() == "BODY"), "")
    names = list(dict.fromkeys(_PLACEHOLDER.findall(body)))
    values = dict(zip(names, parameters, strict=False))
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), body)


def resolve_template(session: Session, *, tenant_id: uuid.UUID, integration_id: uuid.UUID,
                     request: TemplateRequest) -> ResolvedTemplate:
    """The synced template ``request`` names, checked: APPROVED, in the language asked
    (or the tenant locale's), with exactly the parameters it takes. Raises WhatsAppRefused."""
    rows = list(session.scalars(select(WhatsAppTemplate).where(
        WhatsAppTemplate.tenant_id == tenant_id, WhatsAppTemplate.integration_id == integration_id,
        WhatsAppTemplate.name == request.name)))
    if not rows:
        raise WhatsAppRefused(f"no approved WhatsApp template named {request.name!r} in the account's synced "
                              "templates (create it in WhatsApp Manager, then POST "
                              "/v1/integrations/whatsapp_cloud/templates/sync)", code=TEMPLATE_NOT_APPROVED)
    if request.language:
        wanted = [request.language]
    else:
        tenant = session.get(Tenant, tenant_id)
        wanted = template_languages(tenant.locale if tenant else "pt-BR")
    by_language = {row.language: row for row in rows}
    template = next((by_language[code] for code in wanted if code in by_language), None)
    if template is None:
        raise WhatsAppRefused(f"WhatsApp template {request.name!r} has no {' or '.join(wanted)} version "
                              f"(it has: {', '.join(sorted(by_language))})", code=TEMPLATE_LANGUAGE_MISSING)
    if template.status != APPROVED:
        raise WhatsAppRefused(f"WhatsApp template {request.name!r} ({template.language}) is {template.status}, "
                              "not APPROVED", code=TEMPLATE_NOT_APPROVED)
    counts = {k: int(v) for k, v in (template.parameter_counts or {}).items()}
    if counts.get("header") or counts.get("buttons"):
        raise WhatsAppRefused(f"WhatsApp template {request.name!r} has header or button placeholders; the hub "
                              "fills body parameters only", code=TEMPLATE_PARAMETERS)
    expected = counts.get("body", 0)
    if len(request.parameters) != expected:
        raise WhatsAppRefused(f"WhatsApp template {request.name!r} ({template.language}) takes {expected} body "
                              f"parameter(s), {len(request.parameters)} given", code=TEMPLATE_PARAMETERS)
    return ResolvedTemplate(name=template.name, language=template.language, parameters=request.parameters,
                            text=_filled(template, request.parameters),
                            parameter_names=body_parameter_names(template.components or []))


def check_send(session: Session, *, tenant_id: uuid.UUID, integration_id: uuid.UUID, to: str,
               template: TemplateRequest | None, now: datetime | None = None) -> ResolvedTemplate | None:
    """Apply the window and template rules to one send through WhatsApp Cloud; the
    resolved template when one goes, None for free text inside the window."""
    if template is not None:
        return resolve_template(session, tenant_id=tenant_id, integration_id=integration_id, request=template)
    if not window_open(session, tenant_id=tenant_id, contact=to, now=now):
        raise WhatsAppRefused(f"more than 24 hours since {to} last wrote on WhatsApp (or never): outside the "
                              "customer-service window only an approved template may go (whatsapp_template)",
                              code=WINDOW_CLOSED)
    return None


def template_request(template_in: WhatsAppTemplateIn | None) -> TemplateRequest | None:
    if template_in is None:
        return None
    return TemplateRequest(name=template_in.name, language=template_in.language,
                           parameters=tuple(template_in.parameters))


def attach_template(session: Session, *, message: Message, template: ResolvedTemplate) -> None:
    """Remember which template the queued message goes out as (its body shows the text)."""
    session.add(WhatsAppMessageTemplate(message_id=message.id, tenant_id=message.tenant_id, name=template.name,
                                        language=template.language, parameters=list(template.parameters)))


def check_delivery(session: Session, *, message: Message, now: datetime | None = None) -> ResolvedTemplate | None:
    """The same rules at delivery time (the window may have closed while it waited);
    a refusal is a PermanentProviderError with the refusal's code."""
    row = session.get(WhatsAppMessageTemplate, message.id)
    request = (TemplateRequest(name=row.name, language=row.language, parameters=tuple(row.parameters or ()))
               if row is not None and row.tenant_id == message.tenant_id else None)
    assert message.integration_id is not None
    try:
        return check_send(session, tenant_id=message.tenant_id, integration_id=message.integration_id,
                          to=message.to_address, template=request, now=now)
    except WhatsAppRefused as exc:
        raise exc.as_provider_error() from None
