"""JWT signing keys: ES256 pairs in the database, private halves sealed by the vault.

Each process caches them briefly; a token naming an unknown ``kid`` triggers one
reload (at most once a second) so a key rotated by another process verifies at once.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub.auth.models import SigningKey
from hub.db import utcnow
from tenants.vault import Vault

ALGORITHM = "ES256"
_CACHE_SECONDS = 30.0


def _context(kid: str) -> str:
    return f"jwt-signing-key:{kid}"


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    private_pem: str


class KeyRing:
    def __init__(self, vault: Vault, *, token_ttl: int) -> None:
        self.vault = vault
        self.token_ttl = token_ttl
        self._lock = threading.Lock()
        self._verifying: dict[str, dict[str, Any]] = {}
        self._active: ActiveKey | None = None
        self._loaded_at = 0.0

    # --- writes ---------------------------------------------------------------------
    def create_key(self, session: Session) -> str:
        """Add a new signing key; it signs from now on."""
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        kid = f"{utcnow():%Y%m%d}-{secrets.token_hex(4)}"
        public_jwk = {**jwk.construct(public_pem, ALGORITHM).to_dict(), "kid": kid, "use": "sig", "alg": ALGORITHM}
        session.add(SigningKey(
            kid=kid,
            algorithm=ALGORITHM,
            public_jwk=public_jwk,
            private_key_sealed=self.vault.seal(session, tenant_id=None, context=_context(kid), plaintext=pem),
        ))
        session.flush()
        self._loaded_at = 0.0
        return kid

    def rotate(self, session: Session) -> str:
        """Retire every signing key (they verify until their last token expires) and add a new one."""
        now = utcnow()
        for key in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
            key.retired_at = now
            key.verify_until = now + timedelta(seconds=self.token_ttl + 60)
        return self.create_key(session)

    # --- reads ----------------------------------------------------------------------
    def _load(self, session: Session) -> None:
        now = utcnow()
        rows = list(session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.verify_until.is_(None), SigningKey.verify_until > now))
            .order_by(SigningKey.created_at)
        ))
        active = [r for r in rows if r.retired_at is None]
        newest = active[-1] if active else None
        with self._lock:
            self._verifying = {r.kid: r.public_jwk for r in rows}
            if newest is not None and (self._active is None or self._active.kid != newest.kid):
                pem = self.vault.open_secret(session, tenant_id=None, context=_context(newest.kid),
                                             sealed=newest.private_key_sealed).decode()
                self._active = ActiveKey(newest.kid, pem)
            elif newest is None:
                self._active = None
            self._loaded_at = time.monotonic()

    def _fresh(self) -> bool:
        return time.monotonic() - self._loaded_at < _CACHE_SECONDS

    def signing_key(self, session: Session) -> ActiveKey:
        if not self._fresh() or self._active is None:
            self._load(session)
        if self._active is None:
            self.create_key(session)
            self._load(session)
        assert self._active is not None
        return self._active

    def verification_key(self, session: Session, kid: str) -> dict[str, Any] | None:
        if not self._fresh():
            self._load(session)
        key = self._verifying.get(kid)
        if key is None and time.monotonic() - self._loaded_at > 1.0:
            self._load(session)  # maybe rotated elsewhere a moment ago
            key = self._verifying.get(kid)
        return key

    def jwks(self, session: Session) -> dict[str, list[dict[str, Any]]]:
        self._load(session)
        return {"keys": list(self._verifying.values())}
