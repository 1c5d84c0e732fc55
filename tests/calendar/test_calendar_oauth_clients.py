"""A clinic's own Google OAuth client: checked with Google when stored, sealed, and used
end to end — the consent, the code exchange, every refresh and the revoke go through it
(the sandbox, like Google, refuses a refresh through another client)."""

from __future__ import annotations

import secrets

from calendar_support import Browser, connect, google_tenant, query_of, start_connect
from sqlalchemy import select

from hub.calendar.models import TenantGoogleClient

CLIENT = "/v1/integrations/google/oauth-client"


def own_client(hub, *, redirect_uris: list[str] | None = None) -> tuple[str, str]:
    """A client made in the (sandbox) Google Cloud console, the hub's callback registered."""
    client_id = f"{secrets.randbelow(10**12)}-clinic{secrets.token_hex(4)}.apps.googleusercontent.com"
    client_secret = "GOCSPX-" + secrets.token_urlsafe(20)
    uris = redirect_uris if redirect_uris is not None else [hub.url + "/oauth/google/callback"]
    hub.sandbox.google.register_client(client_id, client_secret, uris)
    return client_id, client_secret


def grants_of(hub, account: str):
    return [g for g in hub.sandbox.google._all_grants() if g.account == account]


def test_a_tenants_own_client_is_used_to_connect_refresh_and_revoke(live_hub):
    tenant = google_tenant(live_hub, "cliente-proprio")
    client_id, client_secret = own_client(live_hub)

    r = live_hub.http.put(CLIENT, headers=tenant.headers, json={"client_id": client_id, "client_secret": client_secret})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["client_id"] == client_id and client_secret not in r.text and body["client_secret"].endswith(
        client_secret[-4:])
    assert body["redirect_uri"] == live_hub.url + "/oauth/google/callback"
    with live_hub.runtime.session_factory() as session:
        row = session.scalar(select(TenantGoogleClient).where(TenantGoogleClient.tenant_id == tenant.tenant_id))
        assert row.client_secret_sealed.startswith("sealed:") and client_secret not in row.client_secret_sealed

    # connect: Google's consent URL names the clinic's client, and the code is redeemed by it
    browser = Browser()
    google_url = browser.open(start_connect(live_hub, tenant))
    assert query_of(google_url)["client_id"] == client_id
    assert browser.back(browser.consent(google_url, account=tenant.account)).status_code == 200
    (grant,) = grants_of(live_hub, tenant.account)
    assert grant.client_id == client_id
    view = live_hub.http.get("/v1/integrations/google", headers=tenant.headers).json()
    assert view["status"] == "active" and view["oauth_client_id"] == client_id

    # refresh: an expired access token is renewed through the same client
    live_hub.sandbox.google.expire_access_tokens(account=tenant.account)
    calendars = live_hub.http.get("/v1/google/calendars", headers=tenant.headers)
    assert calendars.status_code == 200, calendars.text
    assert live_hub.sandbox.google.refresh_count(grant.refresh_token) == 1

    # the client cannot be swapped or dropped under the connection it made
    other_id, other_secret = own_client(live_hub)
    swap = live_hub.http.put(CLIENT, headers=tenant.headers,
                             json={"client_id": other_id, "client_secret": other_secret})
    assert swap.status_code == 409 and swap.json()["error"]["code"] == "google_client_in_use"
    drop = live_hub.http.delete(CLIENT, headers=tenant.headers)
    assert drop.status_code == 409 and drop.json()["error"]["code"] == "google_client_in_use"

    # revoke: disconnecting ends the grant the clinic's client holds
    assert live_hub.http.delete("/v1/integrations/google", headers=tenant.headers).status_code == 204
    assert grant.revoked
    assert live_hub.http.delete(CLIENT, headers=tenant.headers).status_code == 204
    assert live_hub.http.get(CLIENT, headers=tenant.headers).json()["error"]["code"] == "google_client_not_set"


def test_the_platform_client_stays_for_tenants_without_their_own(live_hub):
    tenant = google_tenant(live_hub, "plataforma")
    connect(live_hub, tenant)
    (grant,) = grants_of(live_hub, tenant.account)
    assert grant.client_id == "sandbox-client.apps.googleusercontent.com"
    assert live_hub.http.get("/v1/integrations/google", headers=tenant.headers).json()["oauth_client_id"] is None


def test_a_client_google_does_not_know_is_refused_and_nothing_is_stored(live_hub):
    tenant = google_tenant(live_hub, "segredo-errado")
    client_id, _ = own_client(live_hub)
    r = live_hub.http.put(CLIENT, headers=tenant.headers, json={"client_id": client_id,
                                                                "client_secret": "GOCSPX-not-the-secret"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "google_client_rejected"
    assert live_hub.http.get(CLIENT, headers=tenant.headers).status_code == 404
    malformed = live_hub.http.put(CLIENT, headers=tenant.headers, json={"client_id": "evil.example.com",
                                                                        "client_secret": "GOCSPX-whatever"})
    assert malformed.status_code == 422 and "client_id" in malformed.text


def test_a_redirect_uri_the_client_did_not_register_is_refused_by_google(live_hub):
    """The hub sends its callback as redirect URI; a client registered without it fails at
    Google's consent page, as Google refuses it (redirect_uri_mismatch)."""
    tenant = google_tenant(live_hub, "sem-redirect")
    client_id, client_secret = own_client(live_hub, redirect_uris=["https://elsewhere.example/callback"])
    assert live_hub.http.put(CLIENT, headers=tenant.headers,
                             json={"client_id": client_id, "client_secret": client_secret}).status_code == 200
    browser = Browser()
    page = browser.google.get(browser.open(start_connect(live_hub, tenant)))
    assert page.status_code == 400 and "redirect_uri_mismatch" in page.text
