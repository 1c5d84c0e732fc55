"""OAuth through the sandbox with the real google-auth / google-auth-oauthlib / httpx."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from google_calendar_support import REDIRECT_URI, query_of

from connectors.base import PermanentProviderError, TransientProviderError
from connectors.google_calendar import (
    DEFAULT_SCOPES,
    AccessToken,
    AuthorizationCodeRejected,
    GoogleOAuth,
    GrantRevoked,
)


def consent_over_http(url: str, *, decision: str, account: str | None = None) -> str:
    """Open the consent page as a browser would and press a button; returns Location."""
    with httpx.Client(timeout=5.0, trust_env=False) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        form = re.search(rf'<form[^>]*action="([^"]+)"[^>]*id="{decision}">(.*?)</form>', page.text, re.S)
        assert form, page.text
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(2)))
        if account is not None:
            fields["account"] = account
        answer = browser.post(httpx.URL(url).join(form.group(1)), data=fields | {"decision": decision})
    assert answer.status_code == 303
    return answer.headers["location"]


class TestConsentAndCodeExchange:
    def test_consent_page_approve_then_exchange_with_pkce(self, sandbox, oauth, monkeypatch):
        monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
        email = f"dra-{uuid.uuid4().hex[:8]}@sandbox.example"
        url, verifier = oauth.authorization_url(state="tenant-state-1", login_hint=email)
        query = query_of(url)
        assert query["code_challenge_method"] == "S256"
        assert query["access_type"] == "offline" and query["prompt"] == "consent"
        assert query["scope"].split() == list(DEFAULT_SCOPES)

        location = consent_over_http(url, decision="approve", account=email)
        assert location.startswith(REDIRECT_URI + "?")
        callback = query_of(location)
        assert callback["state"] == "tenant-state-1"

        credentials = oauth.exchange_code(callback["code"], verifier)
        assert credentials.account_email == email
        assert credentials.refresh_token.get_secret_value()
        assert credentials.access_token is not None
        assert credentials.scopes == list(DEFAULT_SCOPES)
        assert credentials.expiry is not None
        assert credentials.expiry - datetime.now(UTC) > timedelta(minutes=50)
        assert len(credentials.channel_token.get_secret_value()) >= 32
        # plain http was allowed only for the span of the sandbox calls
        assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ

    def test_wrong_code_verifier_is_rejected_and_the_code_stays_single_use(self, sandbox, oauth):
        url, verifier = oauth.authorization_url(state="s")
        code = query_of(sandbox.state.approve(url))["code"]
        _, other_verifier = oauth.authorization_url(state="s")

        with pytest.raises(AuthorizationCodeRejected, match="verifier"):
            oauth.exchange_code(code, other_verifier)
        oauth.exchange_code(code, verifier)  # the rightful holder still can
        with pytest.raises(AuthorizationCodeRejected):
            oauth.exchange_code(code, verifier)

    def test_deny_redirects_with_access_denied(self, oauth):
        url, _ = oauth.authorization_url(state="tenant-state-2")
        callback = query_of(consent_over_http(url, decision="deny"))
        assert callback == {"error": "access_denied", "state": "tenant-state-2"}

    def test_unknown_client_gets_an_error_page_not_a_redirect(self, sandbox, oauth_client):
        stranger = GoogleOAuth(oauth_client.model_copy(update={"client_id": "nobody.apps.googleusercontent.com"}))
        url, _ = stranger.authorization_url(state="s")
        page = httpx.get(url, timeout=5.0, trust_env=False)
        assert page.status_code == 401 and "invalid_client" in page.text


class TestRefresh:
    def test_refresh_returns_a_new_token_and_is_counted(self, sandbox, oauth, connect):
        credentials = connect()
        refresh_token = credentials.refresh_token.get_secret_value()

        fresh = oauth.refresh(refresh_token)

        assert isinstance(fresh, AccessToken)
        assert fresh.token != credentials.access_token.get_secret_value()
        assert timedelta(minutes=59) < fresh.expiry - datetime.now(UTC) <= timedelta(hours=1)
        assert sandbox.state.refresh_count(refresh_token) == 1

    def test_expired_access_token_is_refreshed_once_and_kept_on_the_connector(self, sandbox, connect, connector_for):
        credentials = connect()
        connector = connector_for(credentials)
        connector.list_calendars()
        sandbox.state.expire_access_tokens(account=credentials.account_email)

        connector.list_calendars()  # 401 -> refresh -> retried
        connector.list_calendars()

        assert sandbox.state.refresh_count(credentials.refresh_token.get_secret_value()) == 1
        assert connector.credentials.access_token != credentials.access_token
        assert connector.credentials.expiry > credentials.expiry - timedelta(seconds=5)

    def test_token_refresher_owns_refreshing_and_sees_the_stale_token(self, sandbox, oauth, connect, connector_for):
        credentials = connect()
        seen: list[str | None] = []

        def refresher(stale: str | None) -> AccessToken:
            seen.append(stale)
            return oauth.refresh(credentials.refresh_token.get_secret_value())

        connector = connector_for(credentials.model_copy(update={"access_token": None}), token_refresher=refresher)
        connector.list_calendars()
        assert seen == [None]  # no token yet: refreshed before the first call

        sandbox.state.expire_access_tokens(account=credentials.account_email)
        stale = connector.credentials.access_token.get_secret_value()
        connector.list_calendars()
        assert seen == [None, stale]

    def test_revoked_grant_raises_grant_revoked_from_refresh_and_from_api_calls(
        self, sandbox, oauth, connect, connector_for
    ):
        credentials = connect()
        connector = connector_for(credentials)
        assert sandbox.state.revoke_grant(account=credentials.account_email) == 1

        with pytest.raises(GrantRevoked) as refused:
            oauth.refresh(credentials.refresh_token.get_secret_value())
        assert refused.value.permanent and refused.value.code == "invalid_grant"
        with pytest.raises(GrantRevoked):
            connector.list_calendars()  # 401 -> refresh -> invalid_grant
        health = connector.check()
        assert not health.ok and "reconnect" in health.detail

    def test_revoke_endpoint_revokes_the_grant(self, oauth, connect):
        credentials = connect()
        refresh_token = credentials.refresh_token.get_secret_value()

        assert oauth.revoke(credentials.access_token.get_secret_value()) is True
        with pytest.raises(GrantRevoked):
            oauth.refresh(refresh_token)
        assert oauth.revoke(refresh_token) is False  # already revoked

    def test_token_endpoint_outage_is_transient(self, sandbox, oauth, connect):
        credentials = connect()
        # 502 is outside google-auth's own retry list, so this fails at once
        sandbox.state.inject_failure(502, path_prefix="/token")

        with pytest.raises(TransientProviderError):
            oauth.refresh(credentials.refresh_token.get_secret_value())
        assert oauth.refresh(credentials.refresh_token.get_secret_value()).token

    def test_code_exchange_outage_is_transient(self, sandbox, oauth):
        url, verifier = oauth.authorization_url(state="s")
        code = query_of(sandbox.state.approve(url))["code"]
        sandbox.state.inject_failure(503, path_prefix="/token")

        with pytest.raises(TransientProviderError) as failed:
            oauth.exchange_code(code, verifier)
        assert failed.value.status == 503
        assert oauth.exchange_code(code, verifier).refresh_token  # the code survived the outage

    def test_missing_scope_is_refused(self, sandbox, oauth_client):
        narrow = GoogleOAuth(oauth_client.model_copy(update={"scopes": ("openid",)}))
        url, verifier = narrow.authorization_url(state="s")
        code = query_of(sandbox.state.approve(url))["code"]
        wide = GoogleOAuth(oauth_client)  # expects the calendar scopes

        with pytest.raises(PermanentProviderError, match="scopes not granted"):
            wide.exchange_code(code, verifier)
