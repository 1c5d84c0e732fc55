"""What a hub process holds once: settings, engine, sessions, the vault."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

from connectors.registry import ConnectorRegistry, load_registry
from hub.audit.keys import SESSION_INFO_KEY as AUDIT_KEYS
from hub.audit.keys import AuditKeys
from hub.auth.keys import KeyRing
from hub.db import make_engine, make_session_factory
from hub.events.bus import event_bus
from hub.queue import make_celery
from hub.ratelimit import RateLimits
from hub.settings import Settings
from tenants.vault import Vault


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    vault: Vault
    keyring: KeyRing
    rate_limits: RateLimits
    celery: Celery
    registry: ConnectorRegistry
    # base URL of the sandbox providers when in sandbox mode (set once one is running)
    sandbox_url: str | None = None
    # the relay thread of this process, if any (woken when new work is committed)
    relay: Any = None
    # True in a CLI command beside a running embedded hub: this process's in-memory
    # broker has no worker, so committed work is left for the running hub's relay
    hands_off_to_relay: bool = False
    caches: dict[str, Any] = field(default_factory=dict)

    @property
    def unsubscribe_tokens(self):
        """Seals and opens the recipients of one-click unsubscribe links (hub.contacts.unsubscribe)."""
        from hub.contacts.unsubscribe import UnsubscribeTokens

        if "unsubscribe_tokens" not in self.caches:
            self.caches["unsubscribe_tokens"] = UnsubscribeTokens(tuple(self.settings.master_key_ring))
        return self.caches["unsubscribe_tokens"]

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    def close(self) -> None:
        from hub.events.bus import close_event_bus

        close_event_bus(self)
        self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    """Connect nothing yet (engines are lazy); read the master keys."""
    # every feature's models, so a foreign key between features (messages -> broadcasts)
    # resolves whichever command the process runs
    import hub.tables  # noqa: F401

    # now, once: else the first query of each model waits on SQLAlchemy's configure
    # lock, with every worker thread of a busy process queued behind it
    configure_mappers()
    engine = make_engine(settings.effective_database_url)
    vault = Vault(settings.master_key_ring)
    # every session carries the audit keys: audit.record() seals rows with them
    session_info = {AUDIT_KEYS: AuditKeys(tuple(settings.master_key_ring))}
    runtime = Runtime(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine, info=session_info),
        vault=vault,
        keyring=KeyRing(vault, token_ttl=settings.token_ttl_seconds),
        rate_limits=RateLimits(settings),
        celery=make_celery(settings),
        registry=load_registry(),
        sandbox_url=settings.sandbox_url.rstrip("/") or None,
    )
    runtime.celery.hub_runtime = runtime  # tasks reach their process's runtime through their app
    event_bus(runtime)  # so events committed in this process notify the live streams
    return runtime
