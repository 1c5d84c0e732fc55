"""Building connectors for a tenant's integration, pointed at the real provider or,
in sandbox mode, at the local sandbox."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, get_args

from pydantic import SecretStr
from sqlalchemy.orm import Session

from connectors.base import Connector
from connectors.netguard import NetworkGuard
from hub.errors import Invalid, Unavailable
from hub.runtime import Runtime
from tenants import service as tenants
from tenants.models import Integration

# In sandbox mode the hub's own "main" Twilio account: any well-formed SID works there.
SANDBOX_TWILIO_ACCOUNT_SID = "AC" + hashlib.sha256(b"integrations-hub-sandbox").hexdigest()[:32]
SANDBOX_TWILIO_AUTH_TOKEN = hashlib.sha256(b"integrations-hub-sandbox-token").hexdigest()[:32]


def provider_base_url(runtime: Runtime) -> str | None:
    """None = the real provider; the sandbox's URL in sandbox mode."""
    if not runtime.settings.use_sandbox:
        return None
    if not runtime.sandbox_url:
        raise Unavailable("sandbox mode is on but no sandbox is running (set HUB_SANDBOX_URL)",
                          code="sandbox_unavailable")
    return runtime.sandbox_url


def network_guard(runtime: Runtime) -> NetworkGuard:
    """Where connectors may connect for a tenant: public addresses only, unless
    HUB_ALLOW_PRIVATE_TARGETS (default: on in development, off in production)."""
    return NetworkGuard(allow_private=runtime.settings.allows_private_targets)


def secret_fields(runtime: Runtime, kind: str) -> frozenset[str] | None:
    """The credential fields of ``kind`` its connector declares secret (``SecretStr``);
    None (treat all as secret) for a kind no connector describes."""
    if kind not in runtime.registry:
        return None
    fields = runtime.registry.get(kind).credentials_model.model_fields
    return frozenset(name for name, field in fields.items()
                     if field.annotation is SecretStr or SecretStr in get_args(field.annotation))


def integration_view(runtime: Runtime, session: Session, integration: Integration):
    """The API view of an integration: its secrets masked, the rest as stored."""
    return tenants.integration_read(session=session, vault=runtime.vault, integration=integration,
                                    secret_fields=secret_fields(runtime, integration.kind))


def platform_config(runtime: Runtime, kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """A connector's config as stored for the tenant, with what the platform decides for
    every tenant laid over it: the Graph API version of WhatsApp Cloud is one setting
    (HUB_WHATSAPP_GRAPH_VERSION), never a copy in each tenant's row that Meta retires."""
    config = dict(config or {})
    if kind == "whatsapp_cloud":
        config["api_version"] = runtime.settings.whatsapp_graph_version
    return config


def credentials_for(connector_cls: type[Connector], values: dict[str, Any]):
    return connector_cls.credentials_model.model_validate(values)


def connector_for(runtime: Runtime, session: Session, integration: Integration, *,
                  timeout: float = 10.0) -> Connector:
    """A connector instance for one integration, built for this call only."""
    cls = runtime.registry.get(integration.kind)
    values = tenants.open_credentials(session=session, vault=runtime.vault, integration=integration)
    try:
        credentials = credentials_for(cls, values)
    except ValueError as exc:
        raise Invalid(f"stored {integration.kind} credentials are incomplete: {exc}") from exc
    return cls(credentials=credentials, config=platform_config(runtime, integration.kind, integration.config),
               base_url=provider_base_url(runtime), timeout=timeout, network=network_guard(runtime))


# How long a worker thread reuses a connector (its HTTP keep-alive connections and
# decrypted credentials) before building it afresh from the vault.
POOLED_CONNECTOR_TTL_SECONDS = 300.0
_POOL_CACHE = "pooled_connectors"


def pooled_connector_for(runtime: Runtime, session: Session, integration: Integration, *,
                         timeout: float = 10.0) -> Connector:
    """The calling thread's connector for ``integration``, reused across calls.

    Building one per message decrypts the credentials and opens a new provider
    connection each time; delivery is mostly that. Per thread, because a connector
    keeps per-call state (the last response) and is not meant to be shared. A changed
    integration (``updated_at``) or an expired entry builds a new one; callers must
    not close what this returns.
    """
    local = runtime.caches.setdefault(_POOL_CACHE, threading.local())
    pool: dict[Any, tuple[float, Connector]] = local.__dict__.setdefault("connectors", {})
    key = (integration.id, integration.updated_at, timeout)
    now = time.monotonic()
    found = pool.get(key)
    if found is not None and found[0] > now:
        return found[1]
    for stale_key in [k for k, (expires, _) in pool.items() if k[0] == integration.id or expires <= now]:
        _close(pool.pop(stale_key)[1])
    connector = connector_for(runtime, session, integration, timeout=timeout)
    pool[key] = (now + POOLED_CONNECTOR_TTL_SECONDS, connector)
    return connector


def _close(connector: Any) -> None:
    close = getattr(connector, "close", None)
    if close is not None:
        close()


def platform_twilio(runtime: Runtime) -> Connector:
    """The platform's main Twilio account, which provisions tenants' subaccounts."""
    cls = runtime.registry.get("twilio")
    settings = runtime.settings
    if settings.use_sandbox:
        sid, token = SANDBOX_TWILIO_ACCOUNT_SID, SANDBOX_TWILIO_AUTH_TOKEN
    else:
        sid, token = settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()
        if not sid or not token:
            raise Unavailable("HUB_TWILIO_ACCOUNT_SID and HUB_TWILIO_AUTH_TOKEN are not configured",
                              code="twilio_not_configured")
    return cls(credentials=credentials_for(cls, {"account_sid": sid, "auth_token": token}),
               base_url=provider_base_url(runtime))
