"""Installing a connector for a tenant: what ``PUT``/``DELETE /v1/integrations/{kind}``
do, and what erasing a tenant undoes, per connector kind.

A connector describes a provider; an installer knows what setting one up for a tenant
takes beyond storing credentials (Sentry's provider/installation split): Twilio checks
the account owns its numbers and routes them, WhatsApp Cloud routes its phone number
ID, Google connects through OAuth only. Kinds without an installer of their own get
``ConnectorInstaller``: credentials and config validated by the connector's models,
one provider check, then stored. A kind no connector is registered for is a 404.

Installers are named here, in one list, and imported when first asked for; features
define them beside their own code and import nothing of each other.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from connectors.base import Connector, ProviderError
from connectors.netguard import TargetRefused, TargetUnreachable
from hub.errors import Invalid, NotFound
from hub.providers import network_guard, platform_config, provider_base_url
from hub.webhooks.routes import release_routes, route_cache, routes_of
from tenants import service as tenants
from tenants.models import Integration, IntegrationStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from hub.runtime import Runtime
    from tenants.schemas import IntegrationWrite

# kind -> "module:attribute" of its installer; kinds not listed use ConnectorInstaller
BUILTIN_INSTALLERS: dict[str, str] = {
    "twilio": "hub.onboarding.installer:TwilioInstaller",
    "whatsapp_cloud": "hub.whatsapp.installer:WhatsAppCloudInstaller",
    "google_calendar": "hub.calendar.installer:GoogleCalendarInstaller",
}


@dataclass(frozen=True)
class Actor:
    """Who asks, for the audit records an uninstall writes."""

    name: str
    ip: str | None = None
    request_id: str | None = None


class Installer(Protocol):
    kind: str

    def install(self, *, session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                integration_in: IntegrationWrite) -> Integration:
        """Set the integration up (provider-side where needed) and store it."""
        ...

    def uninstall(self, *, session: Session, runtime: Runtime, integration: Integration, actor: Actor) -> None:
        """Undo what install did at the provider, release routes, delete the integration.

        Raises (a ``HubError``) when the provider fails: the integration then stays,
        so the same call can be repeated."""
        ...


def validation_problems(exc: ValidationError, prefix: str) -> tuple[str, list[dict[str, Any]]]:
    """Every failing field as ``prefix.field: message`` (never the values: they may be secrets)."""
    details = [{"loc": [prefix, *map(str, e.get("loc", ()))], "msg": e.get("msg"), "type": e.get("type")}
               for e in exc.errors()]
    message = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details)
    return message, details


def validated(model: type[BaseModel], values: dict[str, Any], *, prefix: str, code: str) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message, details = validation_problems(exc, prefix)
        raise Invalid(message, code=code, details=details) from None


def _plain(model: BaseModel) -> dict[str, Any]:
    """A model's values as the vault stores them (secrets opened, unset ones left out)."""
    values = {}
    for name, value in model:
        if value is None:
            continue
        values[name] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return values


class ConnectorInstaller:
    """Install any connector that needs nothing at the provider but working credentials."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def install(self, *, session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                integration_in: IntegrationWrite) -> Integration:
        connector_cls = runtime.registry.get(self.kind)
        credentials = validated(connector_cls.credentials_model, integration_in.credentials, prefix="credentials",
                                code="invalid_credentials")
        config = integration_in.config
        if connector_cls.config_model is not None:
            config = validated(connector_cls.config_model, config, prefix="config",
                               code="invalid_config").model_dump(mode="json", exclude_none=True)
        check_with_provider(runtime, connector_cls, credentials, config)
        return tenants.put_integration(session=session, vault=runtime.vault, tenant_id=tenant_id, kind=self.kind,
                                       credentials=_plain(credentials), config=config,
                                       status=IntegrationStatus.ACTIVE)

    def uninstall(self, *, session: Session, runtime: Runtime, integration: Integration, actor: Actor) -> None:
        drop_routes(session=session, runtime=runtime, integration=integration)
        tenants.delete_integration(session=session, tenant_id=integration.tenant_id, kind=integration.kind)


def check_with_provider(runtime: Runtime, connector_cls: type[Connector], credentials: BaseModel,
                        config: dict[str, Any]) -> None:
    """Ask the provider once whether these credentials work: a 422 saying why when not."""
    connector = connector_cls(credentials=credentials, config=platform_config(runtime, connector_cls.kind, config),
                              base_url=provider_base_url(runtime),
                              timeout=runtime.settings.delivery_timeout_seconds, network=network_guard(runtime))
    try:
        check_targets(connector)
        health = connector.check()
    except ProviderError as exc:
        raise Invalid(f"{connector_cls.display_name} refused these credentials: {exc.message}",
                      code="provider_check_failed") from None
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()
    if not health.ok:
        raise Invalid(f"{connector_cls.display_name} refused these credentials: {health.detail}",
                      code="provider_check_failed")


def check_targets(connector: Connector) -> None:
    """Refuse (422 naming the field) an address the tenant chose that resolves to one the hub
    does not connect to (loopback, private, link-local … in production). Not saying which
    address or why: the tenant learns nothing of the hub's network it did not already know."""
    for field, host, port in connector.network_targets():
        try:
            connector.network.check(host, port)
        except TargetRefused:
            raise Invalid(f"credentials.{field}: {host!r} is not a public address; the hub connects only to "
                          "public hosts", code="address_not_allowed",
                          details=[{"loc": ["credentials", field], "msg": "not a public address",
                                    "type": "address_not_allowed"}]) from None
        except TargetUnreachable:
            pass  # the provider check answers "could not connect", like any other failure to connect


def drop_routes(*, session: Session, runtime: Runtime, integration: Integration) -> None:
    """Release every route of the integration (and forget them in this process's cache)."""
    keys = [route.route_key for route in routes_of(session, integration_id=integration.id)]
    release_routes(session, integration_id=integration.id)
    for key in keys:
        route_cache(runtime).forget(integration.kind, key)


def installer_for(runtime: Runtime, kind: str) -> Installer:
    """The installer of ``kind``; a 404 ``unknown_kind`` when no connector has that kind."""
    if kind not in runtime.registry:
        raise NotFound(f"no connector of kind {kind!r}; known kinds: {', '.join(runtime.registry.kinds())}",
                       code="unknown_kind")
    cache: dict[str, Installer] = runtime.caches.setdefault("installers", {})
    if kind not in cache:
        ref = BUILTIN_INSTALLERS.get(kind)
        if ref is None:
            cache[kind] = ConnectorInstaller(kind)
        else:
            module, _, name = ref.partition(":")
            cache[kind] = getattr(importlib.import_module(module), name)()
    return cache[kind]

