"""Plain helpers that set up tenants, clients and tokens the way a user does."""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from hub.auth import service as auth
from tenants import service as tenants
from tenants.schemas import TenantCreate


@dataclass
class ClientCredentials:
    client_id: str
    client_secret: str
    tenant_id: uuid.UUID | None


def create_tenant(runtime, slug: str = "acme", **fields) -> uuid.UUID:
    with runtime.session_factory() as session, session.begin():
        tenant = tenants.create_tenant(session=session, vault=runtime.vault,
                                       tenant_in=TenantCreate(slug=slug, name=slug.title(), **fields))
        return tenant.id


def create_client(runtime, tenant_id: uuid.UUID | None, scopes: list[str] | None = None) -> ClientCredentials:
    with runtime.session_factory() as session, session.begin():
        client, secret = auth.create_client(session=session, tenant_id=tenant_id, scopes=scopes)
        return ClientCredentials(client.client_id, secret, tenant_id)


def get_token(client, creds: ClientCredentials, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "client_id": creds.client_id, "client_secret": creds.client_secret}
    if scope:
        form["scope"] = scope
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tenant_headers(client, runtime, slug: str = "acme", scopes: list[str] | None = None, **fields):
    """A new tenant and the headers of a token for it: (tenant_id, headers)."""
    tenant_id = create_tenant(runtime, slug, **fields)
    creds = create_client(runtime, tenant_id, scopes)
    return tenant_id, bearer(get_token(client, creds))


def platform_headers(client, runtime) -> dict[str, str]:
    return bearer(get_token(client, create_client(runtime, None)))


def truncate_all(url: str) -> None:
    """Empty every table of the (PostgreSQL) database at ``url``."""
    from sqlalchemy import text

    from hub.db import make_engine
    from hub.tables import metadata

    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def random_hex(nbytes: int) -> str:
    """Random test data as hex, from ``random`` (reseeded per test from HUB_TEST_SEED,
    so a failing run replays with the same values)."""
    return random.randbytes(nbytes).hex()


def smtp_credentials(port: int, **overrides) -> dict:
    """Working ``smtp`` integration credentials for the ``smtp_relay`` fixture's relay."""
    return {"host": "127.0.0.1", "port": port, "from_address": "agenda@clinica.example.com", "security": "none",
            **overrides}


@contextmanager
def sandbox_for(runtime):
    """The sandbox providers served on a port, ``runtime`` in sandbox mode pointed at them
    until the block ends (a hub that calls a provider without being served itself)."""
    from connectors.sandbox.app import create_sandbox_app
    from connectors.sandbox.server import ThreadedServer

    sandbox_app = create_sandbox_app(hub_url=runtime.settings.effective_public_url)
    server = ThreadedServer(sandbox_app).start()
    before = runtime.settings.sandbox, runtime.sandbox_url
    runtime.settings.sandbox, runtime.sandbox_url = True, server.url
    try:
        yield sandbox_app
    finally:
        runtime.settings.sandbox, runtime.sandbox_url = before
        server.stop()
