"""The sandbox's HTTP control surface, as a test in another process (the hub's) drives it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from google_calendar_support import query_of

from connectors.base import TransientProviderError
from connectors.google_calendar import DEFAULT_SCOPES, GoogleOAuth, GrantRevoked


@pytest.fixture
def control(sandbox):
    with httpx.Client(base_url=f"{sandbox.url}/_sandbox/google", timeout=15.0, trust_env=False) as client:
        yield client


class TestControlEndpoints:
    def test_seed_consent_grants_expiry_and_revocation_over_http(self, sandbox, oauth, connector_for, control):
        email = f"recepcao-{uuid.uuid4().hex[:8]}@sandbox.example"
        seeded = control.post("/accounts", json={"email": email, "calendars": ["Sala A", "Sala B"]}).json()
        assert seeded["calendar_ids"][0] == email and len(seeded["calendar_ids"]) == 3

        url, verifier = oauth.authorization_url(state="st")
        denied = control.post("/oauth/decide", json={"authorization_url": url, "approve": False}).json()
        assert query_of(denied["redirect_url"]) == {"error": "access_denied", "state": "st"}
        url, verifier = oauth.authorization_url(state="st")
        approved = control.post("/oauth/decide", json={"authorization_url": url, "account": email}).json()
        credentials = oauth.exchange_code(query_of(approved["redirect_url"])["code"], verifier)
        assert credentials.account_email == email
        refresh_token = credentials.refresh_token.get_secret_value()

        connector = connector_for(credentials)
        assert [c.summary for c in connector.list_calendars()][1:] == ["Sala A", "Sala B"]
        assert control.post("/tokens/expire", json={"account": email}).json() == {"expired": 1}
        connector.list_calendars()
        grant = next(g for g in control.get("/grants").json()["grants"] if g["refresh_token"] == refresh_token)
        assert grant["refresh_calls"] == 1 and grant["account"] == email and not grant["revoked"]

        assert control.post("/grants/revoke", json={"refresh_token": refresh_token}).json() == {"revoked": 1}
        with pytest.raises(GrantRevoked):
            oauth.refresh(refresh_token)

    def test_failures_and_token_lifetime_over_http(self, sandbox, calendar, oauth, control):
        control.post("/failures", json={"status": 500, "times": 2, "path_prefix": "/calendar/v3/users/"})
        for _ in range(2):
            with pytest.raises(TransientProviderError):
                calendar.list_calendars()
        assert calendar.list_calendars()

        control.post("/failures", json={"status": 503, "path_prefix": "/calendar/v3/users/"})
        assert control.delete("/failures").status_code == 204
        assert calendar.list_calendars()

        try:
            assert control.put("/config", json={"access_token_lifetime": 600}).json() == {"access_token_lifetime": 600}
            fresh = oauth.refresh(calendar.credentials.refresh_token.get_secret_value())
            assert timedelta(minutes=9) < fresh.expiry - datetime.now(UTC) <= timedelta(minutes=10)
        finally:
            control.put("/config", json={"access_token_lifetime": 3600})

    def test_channels_pushes_and_request_counts_are_visible(self, sandbox, calendar, receiver, control):
        channel = calendar.watch(
            "primary",
            channel_id=str(uuid.uuid4()),
            address=receiver.url,
            token=calendar.credentials.channel_token.get_secret_value(),
        )
        assert sandbox.state.wait_for_pushes()
        listed = next(c for c in control.get("/channels").json()["channels"] if c["id"] == channel.id)
        assert listed["live"] and listed["message_number"] == 1
        pushed = [p for p in control.get("/pushes").json()["pushes"] if p["channel_id"] == channel.id]
        assert pushed == [
            {
                "channel_id": channel.id,
                "address": receiver.url,
                "resource_state": "sync",
                "message_number": 1,
                "status_code": 200,
                "error": None,
            }
        ]
        assert control.get("/request-counts").json()["POST /calendar/v3/calendars/{calendarId}/events/watch"] >= 1


class TestUserinfo:
    def test_userinfo_needs_an_email_scope_like_google(self, sandbox, oauth_client):
        with_email = GoogleOAuth(oauth_client.model_copy(update={"scopes": (*DEFAULT_SCOPES, "email")}))
        url, verifier = with_email.authorization_url(state="s")
        email = f"u-{uuid.uuid4().hex[:8]}@sandbox.example"
        credentials = with_email.exchange_code(query_of(sandbox.state.approve(url, account=email))["code"], verifier)
        token = credentials.access_token.get_secret_value()

        answer = httpx.get(
            f"{sandbox.url}/oauth2/v3/userinfo",
            headers={"Authorization": f"Bearer {token}"},
            timeout=15.0,
            trust_env=False,
        )
        assert answer.json()["email"] == email and answer.json()["email_verified"] is True

        url, verifier = GoogleOAuth(oauth_client).authorization_url(state="s")
        calendar_only = GoogleOAuth(oauth_client).exchange_code(query_of(sandbox.state.approve(url))["code"], verifier)
        refused = httpx.get(
            f"{sandbox.url}/oauth2/v3/userinfo",
            headers={"Authorization": f"Bearer {calendar_only.access_token.get_secret_value()}"},
            timeout=15.0,
            trust_env=False,
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"
