"""The token endpoint and every way a forged or stale token must fail."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from jose import jwt

from hub.auth.service import AUDIENCE
from tests.support import bearer, create_client, create_tenant, get_token

ISSUER = "http://testserver"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def craft(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


@pytest.fixture
def tenant_client(runtime):
    tenant_id = create_tenant(runtime)
    return create_client(runtime, tenant_id)


def claims_of(token: str) -> dict:
    return jwt.get_unverified_claims(token)


def assert_invalid_token(response):
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


class TestTokenEndpoint:
    def test_form_credentials_give_a_signed_short_lived_token(self, client, tenant_client):
        r = client.post("/oauth/token", data={"grant_type": "client_credentials",
                                              "client_id": tenant_client.client_id,
                                              "client_secret": tenant_client.client_secret})
        assert r.status_code == 200
        body = r.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] <= 900
        header = jwt.get_unverified_header(body["access_token"])
        assert header["alg"] == "ES256" and header["kid"]
        claims = claims_of(body["access_token"])
        assert claims["iss"] == ISSUER and claims["aud"] == AUDIENCE
        assert claims["sub"] == tenant_client.client_id and claims["tid"] == str(tenant_client.tenant_id)
        assert claims["exp"] - claims["iat"] <= 900 and claims["jti"]
        assert set(claims["scope"].split()) == set(body["scope"].split())
        jwks = client.get("/.well-known/jwks.json").json()
        key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        assert "d" not in key  # public half only
        jwt.decode(body["access_token"], key, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)

    def test_http_basic_credentials(self, client, tenant_client):
        r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(tenant_client.client_id, tenant_client.client_secret))
        assert r.status_code == 200

    def test_scope_narrowing(self, client, tenant_client):
        token = get_token(client, tenant_client, scope="messages:read")
        assert claims_of(token)["scope"] == "messages:read"
        r = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "platform:admin",
                                              "client_id": tenant_client.client_id,
                                              "client_secret": tenant_client.client_secret})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_scope"

    @pytest.mark.parametrize("secret", ["wrong", ""])
    def test_bad_secret_or_unknown_client(self, client, tenant_client, secret):
        for client_id in (tenant_client.client_id, "cli_doesnotexist"):
            r = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                  "client_secret": secret})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_client"
            assert r.headers["www-authenticate"].startswith("Basic")

    def test_unsupported_grant_and_missing_fields(self, client, tenant_client):
        r = client.post("/oauth/token", data={"grant_type": "password"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_grant_type"
        assert client.post("/oauth/token", data={}).status_code == 422
        assert client.post("/oauth/token", json={"grant_type": "client_credentials"}).status_code == 422

    def test_secret_is_stored_only_as_a_slow_hash(self, runtime, tenant_client):
        from sqlalchemy import select

        from hub.auth.models import ApiClient

        with runtime.session_factory() as s:
            row = s.scalar(select(ApiClient).where(ApiClient.client_id == tenant_client.client_id))
        assert row.secret_hash.startswith("scrypt$") and tenant_client.client_secret not in row.secret_hash


class TestForgedTokens:
    """Each attack, crafted by hand, is a 401 with WWW-Authenticate: Bearer error="invalid_token"."""

    @pytest.fixture
    def good(self, client, tenant_client):
        return get_token(client, tenant_client)

    def test_a_good_token_works(self, client, good):
        assert client.get("/v1/tenant", headers=bearer(good)).status_code == 200

    def test_alg_none(self, client, good):
        forged = craft({"alg": "none", "typ": "JWT", "kid": jwt.get_unverified_header(good)["kid"]},
                       claims_of(good))
        assert_invalid_token(client.get("/v1/tenant", headers=bearer(forged)))

    def test_hmac_signed_with_the_public_key(self, client, good):
        kid = jwt.get_unverified_header(good)["kid"]
        public = next(k for k in client.get("/.well-known/jwks.json").json()["keys"] if k["kid"] == kid)
        for secret in (json.dumps(public), public["x"]):
            forged = jwt.encode(claims_of(good), secret, algorithm="HS256", headers={"kid": kid})
            assert_invalid_token(client.get("/v1/tenant", headers=bearer(forged)))

    def test_wrong_or_missing_kid(self, client, good):
        header, payload, signature = good.split(".")
        for new_header in ({"alg": "ES256", "kid": "nope"}, {"alg": "ES256"}):
            forged = ".".join([b64(json.dumps(new_header).encode()), payload, signature])
            assert_invalid_token(client.get("/v1/tenant", headers=bearer(forged)))

    def _signed(self, runtime, claims):
        with runtime.session_factory() as s:
            key = runtime.keyring.signing_key(s)
        return jwt.encode(claims, key.private_pem, algorithm="ES256", headers={"kid": key.kid})

    def test_expired(self, client, runtime, good):
        claims = {**claims_of(good), "iat": int(time.time()) - 2000, "exp": int(time.time()) - 1000}
        assert_invalid_token(client.get("/v1/tenant", headers=bearer(self._signed(runtime, claims))))

    def test_a_ten_year_token_signed_with_the_real_key(self, client, runtime, good):
        now = int(time.time())
        claims = {**claims_of(good), "iat": now, "exp": now + 10 * 365 * 86400}
        r = client.get("/v1/tenant", headers=bearer(self._signed(runtime, claims)))
        assert_invalid_token(r)
        assert "longer than" in r.json()["error"]["message"]

    def test_issued_in_the_future(self, client, runtime, good):
        now = int(time.time())
        claims = {**claims_of(good), "iat": now + 3600, "exp": now + 3600 + 600}
        r = client.get("/v1/tenant", headers=bearer(self._signed(runtime, claims)))
        assert_invalid_token(r)
        assert "future" in r.json()["error"]["message"]

    def test_not_yet_valid(self, client, runtime, good):
        now = int(time.time())
        claims = {**claims_of(good), "iat": now, "nbf": now + 300, "exp": now + 600}
        assert_invalid_token(client.get("/v1/tenant", headers=bearer(self._signed(runtime, claims))))

    def test_a_full_lifetime_within_the_clock_skew_passes(self, client, runtime, good):
        now = int(time.time())
        claims = {**claims_of(good), "iat": now + 30, "exp": now + 30 + runtime.keyring.token_ttl}
        assert client.get("/v1/tenant", headers=bearer(self._signed(runtime, claims))).status_code == 200

    @pytest.mark.parametrize("claim,value", [("aud", "someone-else"), ("iss", "https://evil.example")])
    def test_wrong_audience_or_issuer(self, client, runtime, good, claim, value):
        claims = {**claims_of(good), claim: value}
        assert_invalid_token(client.get("/v1/tenant", headers=bearer(self._signed(runtime, claims))))

    def test_tampered_payload(self, client, good):
        header, _payload, signature = good.split(".")
        claims = {**claims_of(good), "tid": str(uuid.uuid4()), "scope": "platform:admin"}
        forged = ".".join([header, b64(json.dumps(claims).encode()), signature])
        assert_invalid_token(client.get("/v1/tenant", headers=bearer(forged)))

    def test_revoked_client_stops_at_once(self, client, runtime, tenant_client, good):
        platform = bearer(get_token(client, create_client(runtime, None)))
        r = client.delete(f"/v1/tenants/{tenant_client.tenant_id}/clients/{tenant_client.client_id}",
                          headers=platform)
        assert r.status_code == 204
        assert_invalid_token(client.get("/v1/tenant", headers=bearer(good)))

    def test_suspended_tenant(self, client, runtime, tenant_client, good):
        platform = bearer(get_token(client, create_client(runtime, None)))
        assert client.patch(f"/v1/tenants/{tenant_client.tenant_id}", json={"status": "suspended"},
                            headers=platform).status_code == 200
        assert_invalid_token(client.get("/v1/tenant", headers=bearer(good)))

    def test_garbage_and_missing(self, client):
        assert_invalid_token(client.get("/v1/tenant", headers=bearer("not.a.jwt")))
        assert_invalid_token(client.get("/v1/tenant"))


class TestScopes:
    def test_missing_scope_is_403_insufficient_scope(self, client, runtime):
        tenant_id = create_tenant(runtime)
        token = get_token(client, create_client(runtime, tenant_id, scopes=["messages:read"]))
        r = client.get("/v1/integrations", headers=bearer(token))
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]

    def test_tenant_token_cannot_administer_the_platform(self, client, runtime):
        token = get_token(client, create_client(runtime, create_tenant(runtime)))
        assert client.get("/v1/tenants", headers=bearer(token)).status_code == 403

    def test_platform_token_has_no_tenant(self, client, runtime):
        token = get_token(client, create_client(runtime, None))
        r = client.get("/v1/tenant", headers=bearer(token))
        assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_token_required"


class TestKeyRotation:
    def test_old_tokens_keep_verifying_and_new_ones_use_the_new_key(self, client, runtime, tenant_client):
        old = get_token(client, tenant_client)
        with runtime.session_factory() as s, s.begin():
            new_kid = runtime.keyring.rotate(s)
        new = get_token(client, tenant_client)
        assert jwt.get_unverified_header(new)["kid"] == new_kid != jwt.get_unverified_header(old)["kid"]
        kids = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
        assert {new_kid, jwt.get_unverified_header(old)["kid"]} <= kids
        for token in (old, new):
            assert client.get("/v1/tenant", headers=bearer(token)).status_code == 200

    def test_a_key_rotated_by_another_process_verifies_at_once(self, client, runtime, tenant_client, settings):
        from hub.runtime import build_runtime

        other = build_runtime(settings)
        with other.session_factory() as s, s.begin():
            other.keyring.rotate(s)
        other_app_token = None
        with other.session_factory() as s, s.begin():
            from hub.auth.service import authenticate_client, issue_token

            c = authenticate_client(session=s, client_id=tenant_client.client_id,
                                    client_secret=tenant_client.client_secret)
            other_app_token, _, _ = issue_token(session=s, keyring=other.keyring, issuer=ISSUER, client=c, scope=None)
        other.close()
        assert client.get("/v1/tenant", headers=bearer(other_app_token)).status_code == 200
