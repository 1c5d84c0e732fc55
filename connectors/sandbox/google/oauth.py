"""Google's OAuth 2.0 for web server apps: the consent page, the token endpoint
(``authorization_code`` with PKCE, ``refresh_token``), revocation and userinfo, plus
the bearer check every Calendar call goes through.

Sources:
- https://developers.google.com/identity/protocols/oauth2/web-server (authorization
  request parameters, ``access_type=offline``, ``login_hint``, the code exchange, the
  refresh and the revoke endpoint: either token revokes the whole grant);
- RFC 7636 (PKCE, ``S256`` and ``plain``); RFC 6749 §5.2 (error bodies);
- https://developers.google.com/workspace/calendar/api/guides/errors (401 ``authError``,
  403 ``insufficientPermissions``).

Paths are Google's own (``/o/oauth2/v2/auth``, ``/token``, ``/revoke``,
``/oauth2/v3/userinfo``), so the real libraries only need their base URL changed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from connectors.sandbox.google.errors import GoogleApiError, OAuthError
from connectors.sandbox.google.routing import bearer
from connectors.sandbox.google.scopes import USERINFO
from connectors.sandbox.google.state import (
    DEFAULT_ACCOUNT,
    AccessTokenRecord,
    AuthorizationCode,
    AuthorizationRequest,
    Grant,
    OAuthClientRecord,
    SandboxState,
)
from connectors.sandbox.google.wire import now, query_of


class OAuthServer(SandboxState):
    """Consents, codes, grants and tokens."""

    # --- control: consent as a person would give it ------------------------------

    def approve(self, authorization_url: str, *, account: str | None = None) -> str:
        """Consent as ``account`` to an authorization URL; returns the redirect URL
        carrying ``code`` and ``state``."""
        request = self._authorization_request(query_of(authorization_url))
        return self._decide(request.request_id, account=account, approved=True)

    def deny(self, authorization_url: str) -> str:
        """Refuse consent; returns the redirect URL carrying ``error=access_denied``."""
        request = self._authorization_request(query_of(authorization_url))
        return self._decide(request.request_id, account=None, approved=False)

    def revoke_grant(self, *, refresh_token: str | None = None, account: str | None = None) -> int:
        """Revoke grants (by refresh token, or every grant of an account), as a user does
        at myaccount.google.com. Returns how many were revoked."""
        with self._lock:
            hits = [
                g
                for g in self._all_grants()
                if not g.revoked
                and (refresh_token is None or g.refresh_token == refresh_token)
                and (account is None or g.account == account)
            ]
            for grant in hits:
                grant.revoked = True
            return len(hits)

    def expire_access_tokens(self, *, account: str | None = None) -> int:
        """Make current access tokens expire now (the next API call gets 401)."""
        with self._lock:
            hits = [t for t in self.access_tokens.values() if account is None or t.grant.account == account]
            past = now() - timedelta(seconds=1)
            for token in hits:
                token.expires_at = past
            return len(hits)

    def refresh_count(self, refresh_token: str) -> int:
        """How many refresh_token grant requests named this token (failed ones included)."""
        with self._lock:
            grant = self.grants.get(refresh_token)
            return grant.refresh_calls if grant else 0

    # --- the authorization and token endpoints -------------------------------------

    def _all_grants(self) -> Iterable[Grant]:
        seen: dict[int, Grant] = {id(g): g for g in self.grants.values()}
        seen |= {id(t.grant): t.grant for t in self.access_tokens.values()}
        return seen.values()

    def _authorization_request(self, query: Mapping[str, str]) -> AuthorizationRequest:
        with self._lock:
            client = self.clients.get(query.get("client_id", ""))
            if client is None:
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            redirect_uri = query.get("redirect_uri", "")
            if not redirect_uri or (client.redirect_uris and redirect_uri not in client.redirect_uris):
                raise OAuthError(400, "redirect_uri_mismatch", "Invalid redirect_uri for this client.")
            if query.get("response_type") != "code":
                raise OAuthError(400, "unsupported_response_type", "response_type must be 'code'.")
            scopes = tuple(query.get("scope", "").split())
            if not scopes:
                raise OAuthError(400, "invalid_request", "Missing required parameter: scope")
            method = query.get("code_challenge_method")
            if query.get("code_challenge") and method not in (None, "S256", "plain"):
                raise OAuthError(400, "invalid_request", "Unsupported code_challenge_method.")
            request = AuthorizationRequest(
                request_id=secrets.token_urlsafe(12),
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                state=query.get("state"),
                code_challenge=query.get("code_challenge"),
                code_challenge_method=(method or "plain") if query.get("code_challenge") else None,
                offline=query.get("access_type") == "offline",
                login_hint=query.get("login_hint"),
            )
            self.auth_requests[request.request_id] = request
            return request

    def _decide(self, request_id: str, *, account: str | None, approved: bool) -> str:
        with self._lock:
            request = self.auth_requests.pop(request_id, None)
            if request is None:
                raise OAuthError(400, "invalid_request", "Unknown or already answered consent request.")
            params: dict[str, str] = {}
            if approved:
                email = account or request.login_hint or DEFAULT_ACCOUNT
                self.seed_account(email)
                code = "4/" + secrets.token_urlsafe(24)
                expires = now() + timedelta(seconds=self.code_lifetime)
                self.codes[code] = AuthorizationCode(code, request, email, expires)
                params |= {"code": code, "scope": " ".join(request.scopes)}
            else:
                params["error"] = "access_denied"
            if request.state is not None:
                params["state"] = request.state
            separator = "&" if urlsplit(request.redirect_uri).query else "?"
            return f"{request.redirect_uri}{separator}{urlencode(params)}"

    def _client_from(self, headers: Mapping[str, str], form: Mapping[str, str]) -> OAuthClientRecord:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "Malformed Basic credentials.") from None
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, client_secret = unquote(raw_id), unquote(raw_secret)
        client = self.clients.get(client_id or "")
        if client is None or not secrets.compare_digest(client.client_secret, client_secret or ""):
            raise OAuthError(401, "invalid_client", "Unauthorized")
        return client

    def _issue_access_token(self, grant: Grant) -> AccessTokenRecord:
        token = "ya29." + secrets.token_urlsafe(32)
        expires = now() + timedelta(seconds=self.access_token_lifetime)
        record = AccessTokenRecord(token, grant, expires)
        self.access_tokens[token] = record
        return record

    def _token_answer(self, record: AccessTokenRecord, *, refresh_token: str | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "access_token": record.token,
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(record.grant.scopes),
            "token_type": "Bearer",
        }
        if refresh_token is not None:
            answer["refresh_token"] = refresh_token
        return answer

    def token_grant(self, headers: Mapping[str, str], form: Mapping[str, str]) -> dict[str, Any]:
        """The token endpoint (authorization_code and refresh_token grants)."""
        with self._lock:
            grant_type = form.get("grant_type")
            if grant_type == "refresh_token":
                # counted before any check: the hub measures attempts, not successes
                grant = self.grants.get(form.get("refresh_token", ""))
                if grant is not None:
                    grant.refresh_calls += 1
            client = self._client_from(headers, form)
            if grant_type == "authorization_code":
                return self._exchange_code(client, form)
            if grant_type == "refresh_token":
                return self._refresh(client, form)
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _exchange_code(self, client: OAuthClientRecord, form: Mapping[str, str]) -> dict[str, Any]:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used or now() >= code.expires_at:
            raise OAuthError(400, "invalid_grant", "Malformed auth code.")
        if code.request.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Unauthorized client for this code.")
        if form.get("redirect_uri") != code.request.redirect_uri:
            raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
        if code.request.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError(400, "invalid_request", "code_verifier is required.")
            if code.request.code_challenge_method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            else:
                computed = verifier
            if not secrets.compare_digest(computed, code.request.code_challenge):
                raise OAuthError(400, "invalid_grant", "Invalid code verifier.")
        code.used = True  # single use; a wrong verifier above leaves it to its rightful holder
        refresh_token = ("1//" + secrets.token_urlsafe(32)) if code.request.offline else None
        grant = Grant(refresh_token, client.client_id, code.account, code.request.scopes)
        if refresh_token is not None:
            self.grants[refresh_token] = grant
        return self._token_answer(self._issue_access_token(grant), refresh_token=refresh_token)

    def _refresh(self, client: OAuthClientRecord, form: Mapping[str, str]) -> dict[str, Any]:
        grant = self.grants.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        if grant.client_id != client.client_id:
            raise OAuthError(400, "unauthorized_client", "Unauthorized")
        asked = set(form.get("scope", "").split())
        if asked - set(grant.scopes):
            raise OAuthError(400, "invalid_scope", "Scope not granted for this refresh token.")
        return self._token_answer(self._issue_access_token(grant), refresh_token=None)

    def revoke_token(self, token: str) -> None:
        """The revoke endpoint: either token of a grant revokes the whole grant."""
        with self._lock:
            grant = self.grants.get(token)
            if grant is None and token in self.access_tokens:
                grant = self.access_tokens[token].grant
            if grant is None or grant.revoked:
                raise OAuthError(400, "invalid_token", "Token expired or revoked")
            grant.revoked = True

    def authenticate(self, authorization: str | None, allowed: frozenset[str]) -> AccessTokenRecord:
        """The bearer token of an API call, checked for life and scope."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise GoogleApiError(
                401,
                "Request is missing required authentication credential.",
                "required",
                location="Authorization",
                location_type="header",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        with self._lock:
            record = self.access_tokens.get(authorization[7:].strip())
            if record is None or not record.usable(now()):
                raise GoogleApiError(
                    401,
                    "Invalid Credentials",
                    "authError",
                    location="Authorization",
                    location_type="header",
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
                )
            if not allowed & set(record.grant.scopes):
                raise GoogleApiError(403, "Request had insufficient authentication scopes.", "insufficientPermissions")
            return record



def add_routes(api: APIRouter, state: OAuthServer) -> None:
    """The consent page and its form, ``/token``, ``/revoke`` and ``/oauth2/v3/userinfo``."""

    @api.get("/o/oauth2/v2/auth", include_in_schema=False)
    async def consent_page(request: Request) -> Response:
        try:
            auth_request = state._authorization_request(dict(request.query_params))
        except OAuthError as exc:
            body = f"<h1>Error {exc.status}: {html.escape(exc.error)}</h1><p>{html.escape(exc.description)}</p>"
            return HTMLResponse(body, status_code=exc.status)
        return HTMLResponse(consent_page_html(auth_request))

    @api.post("/o/oauth2/v2/auth/decision", include_in_schema=False)
    async def consent_decision(request: Request) -> Response:
        form = await request.form()
        approved = form.get("decision") == "approve"
        account = str(form.get("account") or "") or None
        location = state._decide(str(form.get("request_id") or ""), account=account, approved=approved)
        return RedirectResponse(location, status_code=303)

    @api.post("/token", include_in_schema=False)
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        answer = state.token_grant({k.lower(): v for k, v in request.headers.items()}, form)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    @api.post("/revoke", include_in_schema=False)
    async def revoke(request: Request) -> Response:
        form = await request.form()
        state.revoke_token(request.query_params.get("token") or str(form.get("token") or ""))
        return JSONResponse({})

    @api.get("/oauth2/v3/userinfo", include_in_schema=False)
    async def userinfo(request: Request) -> Response:
        account = bearer(state, request, USERINFO)
        sub = str(int(hashlib.sha256(account.encode()).hexdigest()[:15], 16))
        return JSONResponse({"sub": sub, "email": account, "email_verified": True})


def consent_page_html(request: AuthorizationRequest) -> str:
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in request.scopes)
    account = html.escape(request.login_hint or DEFAULT_ACCOUNT)
    rid = html.escape(request.request_id)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Google Accounts (sandbox)</title></head>
<body>
<h1>{html.escape(request.client_id)} wants to access your Google Account</h1>
<ul>{scopes}</ul>
<form method="post" action="/o/oauth2/v2/auth/decision" id="approve">
  <input type="hidden" name="request_id" value="{rid}">
  <label>Account <input type="email" name="account" value="{account}"></label>
  <button type="submit" name="decision" value="approve">Allow</button>
</form>
<form method="post" action="/o/oauth2/v2/auth/decision" id="deny">
  <input type="hidden" name="request_id" value="{rid}">
  <button type="submit" name="decision" value="deny">Cancel</button>
</form>
</body></html>"""

