"""Which Google OAuth client a connection speaks through: the platform's
(``HUB_GOOGLE_CLIENT_ID``/``SECRET``; the sandbox's own in sandbox mode), or a clinic's
own client (its id, and its secret sealed in the vault under the tenant's data key).

A refresh token belongs to the client that obtained it (Google answers another client
with ``unauthorized_client``), so a connection remembers its client in
``config["oauth_client_id"]`` (None: the platform's) and refreshes and revokes through
that one; a connect flow remembers the client it started with. The tenant's client
cannot change under a connection made with it: disconnect first.

Google has no API to read an OAuth client; a client is checked when it is stored by
asking the token endpoint to redeem a code that does not exist, which names bad client
credentials (401 ``invalid_client``) before the code (400 ``invalid_grant``), per RFC
6749 §5.2 and https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pydantic import SecretStr
from sqlalchemy.orm import Session

from connectors.base import PermanentProviderError, TransientProviderError
from connectors.google_calendar import GoogleOAuth, GoogleOAuthClient
from hub.calendar.models import TenantGoogleClient
from hub.errors import Conflict, Invalid, NotFound, Unavailable
from hub.providers import provider_base_url
from tenants.models import Integration
from tenants.repository import IntegrationRepository

if TYPE_CHECKING:
    from hub.runtime import Runtime

GOOGLE_KIND = "google_calendar"
CALLBACK_PATH = "/oauth/google/callback"


def _context(client_id: str) -> str:
    # the sealed secret opens only for this tenant and this client id
    return f"google-oauth-client:{client_id}"


def redirect_uri(runtime: Runtime) -> str:
    """The redirect URI every client must register: the hub's callback."""
    return runtime.settings.effective_public_url + CALLBACK_PATH


def _client(runtime: Runtime, client_id: str, client_secret: str) -> GoogleOAuthClient:
    base_url = provider_base_url(runtime)
    if base_url is not None:
        return GoogleOAuthClient.for_sandbox(base_url, redirect_uri=redirect_uri(runtime), client_id=client_id,
                                             client_secret=client_secret)
    return GoogleOAuthClient(client_id=client_id, client_secret=SecretStr(client_secret),
                             redirect_uri=redirect_uri(runtime))


def platform_client(runtime: Runtime) -> GoogleOAuthClient:
    """The platform's OAuth client: the sandbox's in sandbox mode, else HUB_GOOGLE_CLIENT_ID/SECRET."""
    base_url = provider_base_url(runtime)
    if base_url is not None:
        return GoogleOAuthClient.for_sandbox(base_url, redirect_uri=redirect_uri(runtime))
    settings = runtime.settings
    secret = settings.google_client_secret.get_secret_value()
    if not settings.google_client_id or not secret:
        raise Unavailable("HUB_GOOGLE_CLIENT_ID and HUB_GOOGLE_CLIENT_SECRET are not configured (or give the "
                          "tenant its own client: PUT /v1/integrations/google/oauth-client)",
                          code="google_not_configured")
    return _client(runtime, settings.google_client_id, secret)


def tenant_client_row(*, session: Session, tenant_id: uuid.UUID) -> TenantGoogleClient | None:
    """The tenant's own OAuth client, if it has one."""
    return session.get(TenantGoogleClient, tenant_id)


def tenant_client_secret(runtime: Runtime, session: Session, row: TenantGoogleClient) -> str:
    """The tenant's client secret in clear. Never log or return it unmasked."""
    return runtime.vault.open_secret(session, tenant_id=row.tenant_id, context=_context(row.client_id),
                                     sealed=row.client_secret_sealed).decode()


def _tenant_client(runtime: Runtime, session: Session, row: TenantGoogleClient) -> GoogleOAuthClient:
    return _client(runtime, row.client_id, tenant_client_secret(runtime, session, row))


def flow_client(runtime: Runtime, *, session: Session, tenant_id: uuid.UUID) -> tuple[GoogleOAuthClient, str | None]:
    """The client a new connect flow uses, and the tenant's client id (None: the platform's)."""
    row = tenant_client_row(session=session, tenant_id=tenant_id)
    if row is None:
        return platform_client(runtime), None
    return _tenant_client(runtime, session, row), row.client_id


def client_by_id(runtime: Runtime, *, session: Session, tenant_id: uuid.UUID,
                 client_id: str | None) -> GoogleOAuthClient | None:
    """The client named by a flow or a connection (None id: the platform's); None when
    the tenant's client is no longer that one."""
    if client_id is None:
        return platform_client(runtime)
    row = tenant_client_row(session=session, tenant_id=tenant_id)
    if row is None or row.client_id != client_id:
        return None
    return _tenant_client(runtime, session, row)


def connection_client(runtime: Runtime, *, session: Session, integration: Integration) -> GoogleOAuthClient:
    """The client whose refresh token the connection holds."""
    client = client_by_id(runtime, session=session, tenant_id=integration.tenant_id,
                          client_id=integration.config.get("oauth_client_id"))
    if client is None:  # kept from happening by put/delete below; say so if it ever does
        raise Unavailable("the Google OAuth client this connection was made with is gone; connect again",
                          code="google_client_missing")
    return client


def _connected_client_id(session: Session, tenant_id: uuid.UUID) -> tuple[bool, str | None]:
    integration = IntegrationRepository(session, tenant_id).get(GOOGLE_KIND)
    if integration is None or not integration.credentials:
        return False, None
    return True, integration.config.get("oauth_client_id")


def put_tenant_client(*, runtime: Runtime, session: Session, tenant_id: uuid.UUID, client_id: str,
                      client_secret: str) -> TenantGoogleClient:
    """Store (or rotate the secret of) the tenant's own OAuth client, once Google accepts it."""
    connected, connected_with = _connected_client_id(session, tenant_id)
    if connected and connected_with != client_id:
        raise Conflict("Google is connected through another OAuth client, whose grant this client cannot refresh; "
                       "disconnect Google first (DELETE /v1/integrations/google)", code="google_client_in_use")
    try:
        accepted = GoogleOAuth(_client(runtime, client_id, client_secret)).client_accepted()
    except TransientProviderError as exc:
        raise Unavailable("Google could not check the OAuth client right now; retry",
                          code="google_unavailable") from exc
    except PermanentProviderError as exc:
        raise Invalid(f"Google refused to check the OAuth client: {exc.message}",
                      code="google_client_rejected") from exc
    if not accepted:
        raise Invalid("Google does not know this client_id with this client_secret (invalid_client)",
                      code="google_client_rejected")
    row = tenant_client_row(session=session, tenant_id=tenant_id)
    sealed = runtime.vault.seal(session, tenant_id=tenant_id, context=_context(client_id), plaintext=client_secret)
    if row is None:
        row = TenantGoogleClient(tenant_id=tenant_id, client_id=client_id, client_secret_sealed=sealed)
        session.add(row)
    else:
        row.client_id, row.client_secret_sealed = client_id, sealed
    session.flush()
    return row


def delete_tenant_client(*, session: Session, tenant_id: uuid.UUID) -> None:
    """Go back to the platform's client (refused while a connection uses the tenant's)."""
    row = tenant_client_row(session=session, tenant_id=tenant_id)
    if row is None:
        raise NotFound("no Google OAuth client of your own is set", code="google_client_not_set")
    connected, connected_with = _connected_client_id(session, tenant_id)
    if connected and connected_with == row.client_id:
        raise Conflict("Google is connected through this OAuth client; disconnect Google first "
                       "(DELETE /v1/integrations/google)", code="google_client_in_use")
    session.delete(row)
    session.flush()
