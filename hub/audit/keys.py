"""The audit log's keys, derived from the master keys: the database holds none of them.

- The **chain key** (HMAC-SHA256) seals each row: ``hash = HMAC(key, prev_hash ||
  canonical row)``. Someone who can write to the database but does not hold the master
  keys cannot recompute the hashes after editing a row.
- The **checkpoint key** (Ed25519) signs checkpoints of each chain's head, kept
  outside the database too, so cutting the tail of a chain (and rewinding its head)
  shows: the chain no longer reaches a head it was seen at.

Both are derived with HKDF-SHA256 from a master key, one per key id: new rows and
checkpoints use the active (first) master key, and each records the id of the key
that made it, so older ones keep verifying after a rotation for as long as their
master key stays in ``HUB_MASTER_KEYS``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.orm import Session

from hub.settings import MasterKey

# where a runtime's sessions carry the keys (sessionmaker(info=...))
SESSION_INFO_KEY = "hub.audit.keys"
_CHAIN_INFO = b"integrations-hub:audit-chain:v1"
_CHECKPOINT_INFO = b"integrations-hub:audit-checkpoint:v1"


def _derive(master: MasterKey, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(master.key)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class AuditKeys:
    """One deployment's audit keys (see the module docstring)."""

    master_keys: tuple[MasterKey, ...]

    @property
    def active_id(self) -> str:
        return self.master_keys[0].key_id

    @cached_property
    def _mac_keys(self) -> dict[str, bytes]:
        return {k.key_id: _derive(k, _CHAIN_INFO) for k in self.master_keys}

    @cached_property
    def _signing_keys(self) -> dict[str, Ed25519PrivateKey]:
        return {k.key_id: Ed25519PrivateKey.from_private_bytes(_derive(k, _CHECKPOINT_INFO)) for k in self.master_keys}

    def knows(self, key_id: str) -> bool:
        return key_id in self._mac_keys

    def seal(self, key_id: str, prev_hash: str, content: bytes) -> str:
        """The keyed hash of a row; KeyError when ``key_id`` is not in the ring."""
        return hmac.new(self._mac_keys[key_id], prev_hash.encode() + content, hashlib.sha256).hexdigest()

    def sign(self, payload: bytes) -> tuple[str, str]:
        """``(key_id, signature)`` of ``payload`` with the active checkpoint key."""
        return self.active_id, b64(self._signing_keys[self.active_id].sign(payload))

    def public_key(self, key_id: str) -> str | None:
        """The raw Ed25519 public key (base64url) that checks checkpoints of ``key_id``."""
        private = self._signing_keys.get(key_id)
        if private is None:
            return None
        return b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def signature_holds(self, key_id: str, payload: bytes, signature: str) -> bool:
        public = self.public_key(key_id)
        if public is None:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(unb64(public)).verify(unb64(signature), payload)
        except (InvalidSignature, ValueError):
            return False
        return True


def audit_keys(session: Session) -> AuditKeys:
    """The keys of the runtime whose session factory made ``session``."""
    keys = session.info.get(SESSION_INFO_KEY)
    if keys is None:
        raise RuntimeError("this session carries no audit keys: open it with runtime.session_factory")
    return keys
