"""Twilio installations: a tenant's own account ("bring your own"), the route table
entries of an integration, and what tells a provisioned integration apart.

A bring-your-own account is checked with Twilio before anything is written, and its
numbers are routed to the integration; the hub never buys, releases or closes
anything on it. Provisioned integrations (the saga in ``flows.py``) own a subaccount
the hub created, and are replaced only by removing them first.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, ProviderError, TransientProviderError
from connectors.twilio import TwilioConfig, TwilioConnector, TwilioCredentials
from connectors.twilio.connector import mask_sid
from hub.db import utcnow
from hub.errors import Conflict, Invalid, ProviderRejected
from hub.messaging.addresses import InvalidAddress, normalize_phone
from hub.providers import provider_base_url
from hub.runtime import Runtime
from hub.settings import Settings
from hub.webhooks.routes import claim_route, release_routes, route_cache, routes_of
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus
from tenants.repository import IntegrationRepository
from tenants.schemas import IntegrationWrite

TWILIO = "twilio"
MESSAGING_WEBHOOK_PATH = "/webhooks/twilio/messaging"
STATUS_WEBHOOK_PATH = "/webhooks/twilio/status"
_CREDENTIAL_FIELDS = frozenset({"account_sid", "auth_token"})
_BYO_CONFIG_FIELDS = frozenset({"numbers", "channels", "messaging_service_sid"})


def messaging_webhook_url(settings: Settings) -> str:
    """Where Twilio posts a number's inbound messages."""
    return settings.effective_public_url + MESSAGING_WEBHOOK_PATH


def status_webhook_url(settings: Settings) -> str:
    """Where Twilio posts status callbacks."""
    return settings.effective_public_url + STATUS_WEBHOOK_PATH


# --- what a Twilio integration holds ---------------------------------------------------


def is_provisioned(integration: Integration) -> bool:
    """True when the hub created the integration's subaccount (onboarding)."""
    return bool(integration.config.get("provisioned"))


def provisioning_state(integration: Integration) -> dict[str, Any]:
    """The saga's progress record (empty for bring-your-own integrations)."""
    return dict(integration.config.get("provisioning") or {})


def lease_seconds_left(integration: Integration) -> float:
    """Seconds until a running onboarding's lease runs out (0 when none is running)."""
    state = provisioning_state(integration)
    if state.get("state") != "running" or not state.get("lease_until"):
        return 0.0
    left = (datetime.fromisoformat(state["lease_until"]) - utcnow()).total_seconds()
    return max(left, 0.0)


def holds_provider_resources(integration: Integration) -> bool:
    """True when a provisioned integration still has a subaccount or numbers at Twilio."""
    config = integration.config
    return bool(config.get("subaccount_sid") or config.get("number_sids")
                or provisioning_state(integration).get("pending_number"))


def onboarding_in_progress(integration: Integration) -> Conflict:
    seconds = max(1, math.ceil(lease_seconds_left(integration)))
    return Conflict("an onboarding of this tenant's Twilio integration is running; retry shortly",
                    code="provisioning_in_progress", headers={"Retry-After": str(seconds)})


# --- routes -------------------------------------------------------------------------------


def route_keys_for(config: dict[str, Any], account_sid: str | None) -> list[str]:
    """What names this integration on inbound webhooks: its numbers, its Messaging
    Service (a pool of numbers) and its account."""
    keys = list(config.get("numbers") or [])
    if config.get("messaging_service_sid"):
        keys.append(config["messaging_service_sid"])
    if account_sid:
        keys.append(account_sid)
    return list(dict.fromkeys(keys))


def sync_routes(*, session: Session, runtime: Runtime, integration: Integration, route_keys: list[str]) -> None:
    """Make the integration's routes exactly ``route_keys``: 409 ``route_taken`` when one
    belongs to another integration (the caller's transaction then writes nothing)."""
    current = {route.route_key for route in routes_of(session, integration_id=integration.id)}
    stale = sorted(current - set(route_keys))
    if stale:
        release_routes(session, integration_id=integration.id, route_keys=stale)
    for key in route_keys:
        claim_route(session, kind=TWILIO, route_key=key, integration=integration)
    forget_routes(runtime, [*stale, *route_keys])


def drop_routes(*, session: Session, runtime: Runtime, integration_id: uuid.UUID) -> None:
    """Remove every route of an integration."""
    keys = [route.route_key for route in routes_of(session, integration_id=integration_id)]
    release_routes(session, integration_id=integration_id)
    forget_routes(runtime, keys)


def forget_routes(runtime: Runtime, route_keys: list[str]) -> None:
    # this process's cache only; other processes' entries expire within ROUTE_CACHE_SECONDS
    cache = route_cache(runtime)
    for key in route_keys:
        cache.forget(TWILIO, key)


# --- bring your own account ------------------------------------------------------------


def install_twilio(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                   integration_in: IntegrationWrite) -> Integration:
    """Install the tenant's own Twilio account after Twilio confirms it owns the numbers."""
    existing = IntegrationRepository(session, tenant_id).get(TWILIO, for_update=True)
    if existing is not None and lease_seconds_left(existing) > 0:
        raise onboarding_in_progress(existing)
    if existing is not None and is_provisioned(existing) and holds_provider_resources(existing):
        raise Conflict("this Twilio integration was provisioned by the hub; DELETE /v1/integrations/twilio first "
                       "(it releases its numbers and closes its subaccount)", code="integration_provisioned")
    credentials = twilio_credentials(integration_in.credentials)
    config = byo_config(integration_in.config)
    check_account(runtime=runtime, credentials=credentials, numbers=config.numbers)
    integration = tenants.put_integration(
        session=session, vault=runtime.vault, tenant_id=tenant_id, kind=TWILIO,
        credentials={"account_sid": credentials.account_sid,
                     "auth_token": credentials.auth_token.get_secret_value()},
        config=config.model_dump(mode="json", exclude_none=True),
        status=IntegrationStatus.ACTIVE,
    )
    sync_routes(session=session, runtime=runtime, integration=integration,
                route_keys=route_keys_for(integration.config, credentials.account_sid))
    return integration


def twilio_credentials(raw: dict[str, Any]) -> TwilioCredentials:
    """The credentials model, or a 422 that never echoes the values."""
    unknown = sorted(set(raw) - _CREDENTIAL_FIELDS)
    if unknown:
        raise Invalid(f"unknown Twilio credential fields: {', '.join(unknown)} (expected account_sid and auth_token)",
                      code="invalid_credentials")
    try:
        return TwilioCredentials.model_validate(raw)
    except ValidationError as exc:
        raise Invalid(f"Twilio credentials are not valid: {_problems(exc)}", code="invalid_credentials",
                      details=_error_list(exc)) from None


def byo_config(raw: dict[str, Any]) -> TwilioConfig:
    """A bring-your-own configuration with its numbers in E.164, or a 422 naming the problem."""
    unknown = sorted(set(raw) - _BYO_CONFIG_FIELDS)
    if unknown:
        raise Invalid(f"unknown Twilio config fields: {', '.join(unknown)} "
                      f"(expected {', '.join(sorted(_BYO_CONFIG_FIELDS))})", code="invalid_config")
    numbers = raw.get("numbers", [])
    if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
        raise Invalid("config.numbers must be a list of phone numbers", code="invalid_config")
    normalized, problems = [], []
    for number in numbers:
        try:
            normalized.append(normalize_phone(number))
        except InvalidAddress as exc:
            problems.append(str(exc))
    if problems:
        raise Invalid("config.numbers: " + "; ".join(problems), code="invalid_config")
    try:
        config = TwilioConfig.model_validate({**raw, "numbers": list(dict.fromkeys(normalized)), "provisioned": False})
    except ValidationError as exc:
        raise Invalid(f"Twilio config is not valid: {_problems(exc)}", code="invalid_config",
                      details=_error_list(exc)) from None
    if not config.numbers and not config.messaging_service_sid:
        raise Invalid("config.numbers must name at least one number of the account (or give a "
                      "messaging_service_sid)", code="invalid_config")
    return config


def check_account(*, runtime: Runtime, credentials: TwilioCredentials, numbers: list[str]) -> None:
    """Ask Twilio whether the account works and owns ``numbers``: 422 when not, 502 when
    Twilio cannot tell us."""
    connector = TwilioConnector(credentials=credentials, base_url=provider_base_url(runtime),
                                timeout=runtime.settings.delivery_timeout_seconds)
    account = mask_sid(credentials.account_sid)
    try:
        missing = connector.validate_connection(numbers)
    except PermanentProviderError as exc:
        if exc.status in (401, 403) or exc.code == "account_inactive":
            raise Invalid(f"Twilio refused the credentials of account {account}: {exc.message}",
                          code="credentials_refused") from None
        raise provider_failure(exc, f"Twilio refused to check account {account}") from None
    except TransientProviderError as exc:
        raise provider_failure(exc, f"Twilio did not answer while checking account {account}") from None
    finally:
        connector.close()
    if missing:
        raise Invalid(f"Twilio account {account} does not own {', '.join(missing)}", code="numbers_not_owned",
                      details={"numbers": missing})


def provider_failure(exc: ProviderError, what: str, *, suffix: str = "") -> ProviderRejected:
    """A 502 for a provider failure; transient ones say when to retry."""
    code = f" ({exc.code})" if exc.code else ""
    message = f"{what}: {exc.message}{code}{suffix}"
    if isinstance(exc, TransientProviderError):
        retry_after = str(max(1, math.ceil(exc.retry_after or 1)))
        return ProviderRejected(message, code="provider_unavailable", headers={"Retry-After": retry_after})
    return ProviderRejected(message, code="provider_rejected")


def _error_list(exc: ValidationError) -> list[dict[str, Any]]:
    # no input values: they may be secrets
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)]


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in _error_list(exc)[:5])
