"""API clients and access tokens: create, authenticate, issue, verify, revoke."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from jose import JWTError, jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.auth import scopes as sc
from hub.auth.keys import ALGORITHM, KeyRing
from hub.auth.models import ApiClient
from hub.auth.secrets import burn_time, check_secret, hash_secret, new_client_id, new_client_secret
from hub.db import utcnow
from hub.errors import BadRequest, Forbidden, Invalid, NotFound, Unauthorized
from tenants.models import Tenant, TenantStatus

AUDIENCE = "integrations-hub"


class InvalidClient(Unauthorized):
    code = "invalid_client"


class InvalidToken(Unauthorized):
    code = "invalid_token"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'
        })


class InsufficientScope(Forbidden):
    code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this call needs the {scope!r} scope", headers={
            "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'
        })


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified claims of an access token."""

    client_id: str
    tenant_id: uuid.UUID | None
    scopes: frozenset[str]
    token_id: str

    @property
    def actor(self) -> str:
        return f"client:{self.client_id}"


# --- clients ------------------------------------------------------------------------


def create_client(
    *, session: Session, tenant_id: uuid.UUID | None, name: str | None = None, scopes: list[str] | None = None
) -> tuple[ApiClient, str]:
    """A new client and its secret (the only time the secret exists in clear)."""
    allowed = sc.PLATFORM_SCOPES if tenant_id is None else sc.TENANT_SCOPES
    granted = list(dict.fromkeys(scopes)) if scopes else list(allowed)
    unknown = [s for s in granted if s not in allowed]
    if unknown:
        raise Invalid(f"scopes not allowed for this client: {', '.join(unknown)}; allowed: {', '.join(allowed)}",
                      code="invalid_scope")
    secret = new_client_secret()
    client = ApiClient(
        client_id=new_client_id(platform=tenant_id is None),
        secret_hash=hash_secret(secret),
        tenant_id=tenant_id,
        name=name or "",
        scopes=granted,
    )
    session.add(client)
    session.flush()
    return client, secret


def get_client(*, session: Session, client_id: str, tenant_id: uuid.UUID | None) -> ApiClient:
    """A client of ``tenant_id`` (None: platform clients), or NotFound."""
    client = session.scalar(select(ApiClient).where(ApiClient.client_id == client_id))
    if client is None or client.tenant_id != tenant_id:
        raise NotFound("client not found")
    return client


def list_clients(*, session: Session, tenant_id: uuid.UUID | None) -> list[ApiClient]:
    """Every client of ``tenant_id`` (None: platform clients), oldest first."""
    stmt = select(ApiClient).where(
        ApiClient.tenant_id == tenant_id if tenant_id else ApiClient.tenant_id.is_(None)
    )
    return list(session.scalars(stmt.order_by(ApiClient.created_at)))


def revoke_client(*, session: Session, client_id: str, tenant_id: uuid.UUID | None) -> ApiClient:
    """Revoke a client; its tokens stop working at once."""
    client = get_client(session=session, client_id=client_id, tenant_id=tenant_id)
    if client.revoked_at is None:
        client.revoked_at = utcnow()
        session.flush()
    return client


def authenticate_client(*, session: Session, client_id: str, client_secret: str) -> ApiClient:
    """The client whose secret this is, or InvalidClient (same answer whatever was wrong)."""
    client = session.scalar(select(ApiClient).where(ApiClient.client_id == client_id))
    if client is None:
        burn_time(client_secret)
        raise InvalidClient("client authentication failed")
    if not check_secret(client_secret, client.secret_hash) or client.revoked_at is not None:
        raise InvalidClient("client authentication failed")
    if client.tenant_id is not None:
        tenant = session.get(Tenant, client.tenant_id)
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            raise InvalidClient("client authentication failed: its tenant is not active")
    return client


# --- tokens -------------------------------------------------------------------------


def issue_token(
    *, session: Session, keyring: KeyRing, issuer: str, client: ApiClient, scope: str | None
) -> tuple[str, list[str], int]:
    """Sign an access token for ``client``, narrowed to ``scope`` when given."""
    requested = sc.parse_scope(scope)
    granted = [s for s in client.scopes if not requested or s in requested]
    missing = [s for s in requested if s not in client.scopes]
    if missing:
        raise BadRequest(f"scope not granted to this client: {' '.join(missing)}", code="invalid_scope")
    now = utcnow()
    ttl = keyring.token_ttl
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": client.client_id,
        "tid": str(client.tenant_id) if client.tenant_id else None,
        "scope": " ".join(granted),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    key = keyring.signing_key(session)
    token = jwt.encode(claims, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})
    session.execute(update(ApiClient).where(ApiClient.id == client.id).values(last_used_at=now))
    return token, granted, ttl


CLOCK_SKEW_SECONDS = 60


def _check_lifetime(claims: dict, ttl: int) -> None:
    """A token lives at most the configured lifetime from its ``iat``, which is not in
    the future (beyond a small clock skew); ``nbf``, when present, is honoured by jose."""
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float) or isinstance(iat, bool):
        raise InvalidToken("token rejected: iat and exp must be numbers")
    if iat > utcnow().timestamp() + CLOCK_SKEW_SECONDS:
        raise InvalidToken("token rejected: issued in the future")
    if exp - iat > ttl:
        raise InvalidToken(f"token rejected: lives longer than {ttl} s")


def verify_token(*, session: Session, keyring: KeyRing, issuer: str, token: str) -> Principal:
    """The principal of a valid token, or InvalidToken naming what was wrong."""
    try:
        header = jwt.get_unverified_header(token)
    except JWTError:
        raise InvalidToken("malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("unexpected signing algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token has no key id")
    key = keyring.verification_key(session, kid)
    if key is None:
        raise InvalidToken("unknown key id")
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=issuer,
            options={"require_exp": True, "require_iat": True, "require_sub": True, "require_jti": True,
                     "require_aud": True, "require_iss": True},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except JWTError as exc:
        raise InvalidToken(f"token rejected: {exc}") from None
    _check_lifetime(claims, keyring.token_ttl)
    client = session.scalar(select(ApiClient).where(ApiClient.client_id == claims["sub"]))
    if client is None or client.revoked_at is not None:
        raise InvalidToken("client revoked")
    tid = claims.get("tid")
    tenant_id = uuid.UUID(tid) if tid else None
    if tenant_id != client.tenant_id:
        raise InvalidToken("token does not match its client")
    if tenant_id is not None:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            raise InvalidToken("tenant is not active")
    granted = set(sc.parse_scope(claims.get("scope")))
    return Principal(client.client_id, tenant_id, frozenset(granted & set(client.scopes)), claims["jti"])
