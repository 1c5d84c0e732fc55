"""The Google connect flow through the sandbox's consent page, at HTTP level: the state
is signed, short-lived and single-use, PKCE is used, tokens are sealed; disconnecting
revokes the grant and stops the channels."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import pytest
from calendar_support import (
    Browser,
    connect,
    connected_tenant,
    eventually,
    google_tenant,
    map_resource,
    query_of,
    start_connect,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt
from sqlalchemy import select

from hub.audit.models import AuditEvent
from hub.calendar.flows import STATE_AUDIENCE, sign_state
from hub.calendar.models import GoogleConnectState
from hub.db import utcnow
from hub.webhooks.models import WebhookEvent
from tenants.models import Integration


def integration_row(hub, tenant_id) -> Integration | None:
    with hub.runtime.session_factory() as session:
        return session.scalar(select(Integration).where(Integration.tenant_id == tenant_id,
                                                        Integration.kind == "google_calendar"))


def refused(page) -> None:
    assert page.status_code == 400, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "was not connected" in page.text


class TestConnect:
    def test_consent_page_to_callback_stores_a_sealed_active_connection(self, live_hub):
        tenant = google_tenant(live_hub, "sorriso")
        start = start_connect(live_hub, tenant)
        assert start.startswith(live_hub.url + "/oauth/google/start?flow=")
        browser = Browser()
        url = browser.open(start)
        query = query_of(url)
        assert url.startswith(live_hub.sandbox_url + "/o/oauth2/v2/auth?")
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["redirect_uri"] == live_hub.url + "/oauth/google/callback"
        claims = jwt.get_unverified_claims(query["state"])
        assert claims["tid"] == str(tenant.tenant_id) and claims["aud"] == STATE_AUDIENCE
        assert 0 < claims["exp"] - claims["iat"] <= 600

        page = browser.back(browser.consent(url, account=tenant.account))

        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Google Calendar connected" in page.text and tenant.account in page.text
        assert "Sorriso" in page.text  # which tenant it was connected to
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        view = live_hub.http.get("/v1/integrations/google", headers=tenant.headers).json()
        assert view["status"] == "active" and view["account_email"] == tenant.account
        assert "https://www.googleapis.com/auth/calendar.events" in view["scopes"]
        row = integration_row(live_hub, tenant.tenant_id)
        assert set(row.credentials) == {"refresh_token", "access_token", "expiry", "channel_token"}
        assert all(v.startswith("sealed:v1:") for v in row.credentials.values())
        # the generic view masks everything
        generic = live_hub.http.get("/v1/integrations/google_calendar", headers=tenant.headers).json()
        assert all("…" in v for k, v in generic["credentials"].items() if k != "expiry")
        # the calendars of the account are now reachable
        calendars = live_hub.http.get("/v1/google/calendars", headers=tenant.headers).json()
        assert [c["id"] for c in calendars] == tenant.calendars
        assert calendars[0]["primary"] is True
        with live_hub.runtime.session_factory() as session:
            actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.tenant_id == tenant.tenant_id)))
        assert {"integration.google_connect_started", "integration.google_connected"} <= actions

    def test_connect_needs_the_integrations_write_scope(self, live_hub):
        tenant = google_tenant(live_hub, "leitor", scopes=["calendar:read", "integrations:read"])
        r = live_hub.http.post("/v1/integrations/google/connect", headers=tenant.headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"

    def test_not_connected_is_a_404(self, live_hub):
        tenant = google_tenant(live_hub, "novo")
        r = live_hub.http.get("/v1/integrations/google", headers=tenant.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "google_not_connected"


def approved(hub, tenant, **consent) -> tuple[Browser, str]:
    """A browser that opened the tenant's start link and approved; and the callback URL."""
    browser = Browser()
    return browser, browser.consent(browser.open(start_connect(hub, tenant)), **consent)


def callback(hub, browser: Browser, **params) -> object:
    return browser.back(str(httpx.URL(hub.url + "/oauth/google/callback", params=params)))


class TestBadState:
    def test_replayed_state_is_refused(self, live_hub):
        tenant = google_tenant(live_hub, "replay")
        browser = Browser()
        url = browser.open(start_connect(live_hub, tenant))
        first = browser.consent(url, account=tenant.account)
        # the consent page approved twice: a second, valid code with the same state
        second = browser.consent(url, account=tenant.account)
        assert query_of(second)["code"] != query_of(first)["code"]
        assert browser.back(first).status_code == 200

        refused(browser.back(second))
        refused(browser.back(first))

    def test_a_state_is_burnt_even_when_the_code_exchange_fails(self, live_hub):
        tenant = google_tenant(live_hub, "burnt")
        browser, back = approved(live_hub, tenant, account=tenant.account)
        query = query_of(back)
        refused(callback(live_hub, browser, state=query["state"], code="4/forged"))
        # the right code with the burnt state is refused too
        refused(browser.back(back))
        assert integration_row(live_hub, tenant.tenant_id) is None

    def test_expired_state_is_refused(self, live_hub):
        tenant = google_tenant(live_hub, "expired")
        browser, back = approved(live_hub, tenant, account=tenant.account)
        with live_hub.runtime.session_factory() as session, session.begin():
            for row in session.scalars(select(GoogleConnectState).where(
                    GoogleConnectState.tenant_id == tenant.tenant_id)):
                row.expires_at = utcnow() - timedelta(seconds=1)
        refused(browser.back(back))

    def test_state_whose_signature_expired_is_refused(self, live_hub):
        tenant = google_tenant(live_hub, "oldsig")
        browser, back = approved(live_hub, tenant, account=tenant.account)
        nonce = jwt.get_unverified_claims(query_of(back)["state"])["nonce"]
        runtime = live_hub.runtime
        with runtime.session_factory() as session:
            stale = sign_state(session=session, keyring=runtime.keyring, issuer=runtime.settings.effective_public_url,
                               tenant_id=tenant.tenant_id, nonce=nonce, expires_at=utcnow() - timedelta(seconds=5))
        refused(callback(live_hub, browser, state=stale, code=query_of(back)["code"]))
        assert integration_row(live_hub, tenant.tenant_id) is None

    def test_tampered_state_is_refused(self, live_hub):
        tenant = google_tenant(live_hub, "tamper")
        other = google_tenant(live_hub, "victim")
        browser, back = approved(live_hub, tenant, account=tenant.account)
        query = query_of(back)
        header, payload, signature = query["state"].split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["tid"] = str(other.tenant_id)  # try to attach the account to another tenant
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        refused(callback(live_hub, browser, state=f"{header}.{forged}.{signature}", code=query["code"]))
        refused(callback(live_hub, browser, state=query["state"][:-3] + "AAA", code=query["code"]))
        assert integration_row(live_hub, other.tenant_id) is None
        # the untouched state still works: refusals above did not burn it
        assert browser.back(back).status_code == 200

    def test_foreign_state_is_refused(self, live_hub):
        """Signed by a key that is not the hub's, or by the hub for another purpose."""
        tenant = google_tenant(live_hub, "foreign")
        browser, back = approved(live_hub, tenant, account=tenant.account)
        query = query_of(back)
        claims = jwt.get_unverified_claims(query["state"])
        kid = jwt.get_unverified_header(query["state"])["kid"]
        stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        for key_id in (kid, "someone-else"):
            foreign = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": key_id})
            refused(callback(live_hub, browser, state=foreign, code=query["code"]))
        # an API access token of the tenant is signed by the hub, but is no state
        api_token = tenant.headers["Authorization"].split()[1]
        refused(callback(live_hub, browser, state=api_token, code=query["code"]))
        # a state another hub run issued (same claims, our nonce unknown there) fails too: nonce is ours only
        assert integration_row(live_hub, tenant.tenant_id) is None

    def test_state_of_another_tenants_flow_with_my_code_is_refused_by_pkce(self, live_hub):
        mine, theirs = google_tenant(live_hub, "mine"), google_tenant(live_hub, "theirs")
        _, my_back = approved(live_hub, mine, account=mine.account)
        victim = Browser()
        their_url = victim.open(start_connect(live_hub, theirs))
        # an attacker gets the victim's browser to the callback with the attacker's own code
        page = callback(live_hub, victim, state=query_of(their_url)["state"], code=query_of(my_back)["code"])
        refused(page)
        assert integration_row(live_hub, theirs.tenant_id) is None

    @pytest.mark.parametrize("params", [{}, {"code": "4/x"}, {"state": "not-a-jwt", "code": "4/x"},
                                        {"state": "a.b.c", "code": "4/x"}])
    def test_missing_or_garbage_state_is_refused(self, live_hub, params):
        refused(callback(live_hub, Browser(), **params))

    def test_denied_consent_shows_a_failure_page_and_burns_the_state(self, live_hub):
        tenant = google_tenant(live_hub, "denied")
        browser, back = approved(live_hub, tenant, decision="deny")
        assert query_of(back)["error"] == "access_denied"
        page = browser.back(back)
        refused(page)
        assert "access_denied" in page.text
        refused(browser.back(back))
        assert integration_row(live_hub, tenant.tenant_id) is None


class TestDisconnect:
    def test_delete_revokes_the_grant_and_stops_the_channels(self, live_hub):
        tenant = connected_tenant(live_hub, "adeus")
        map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
        google = live_hub.sandbox.google
        channel = next(c for c in google.channels.values() if c.calendar_id == tenant.calendars[1] and not c.stopped)

        r = live_hub.http.delete("/v1/integrations/google", headers=tenant.headers)

        assert r.status_code == 204
        assert channel.stopped
        assert all(g.revoked for g in google._all_grants() if g.account == tenant.account)
        assert live_hub.http.get("/v1/integrations/google", headers=tenant.headers).status_code == 404
        mapping = live_hub.http.get("/v1/calendars/dr-ana", headers=tenant.headers).json()
        assert mapping["channel"]["status"] == "none"
        # a push on the stopped channel is refused and stores nothing (404 once the
        # ingress's route cache forgot it, 403 before: the secret went with the integration)
        late = live_hub.http.post("/webhooks/google_calendar", headers={
            "X-Goog-Channel-ID": channel.id, "X-Goog-Channel-Token": channel.token or "",
            "X-Goog-Resource-State": "exists", "X-Goog-Message-Number": "99"})
        assert late.status_code in (403, 404), late.text
        with live_hub.runtime.session_factory() as session:
            assert session.scalar(select(WebhookEvent).where(
                WebhookEvent.provider_event_id == f"{channel.id}:99")) is None

    def test_reconnect_after_disconnect_resumes_the_mapped_calendar(self, live_hub):
        tenant = connected_tenant(live_hub, "volta")
        map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
        assert live_hub.http.delete("/v1/integrations/google", headers=tenant.headers).status_code == 204

        connect(live_hub, tenant)

        mapping = eventually(lambda: (m := live_hub.http.get("/v1/calendars/dr-ana", headers=tenant.headers).json())
                             ["channel"]["status"] == "active" and m, what="the channel to reopen")
        assert mapping["status"] == "active"
