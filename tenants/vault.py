"""The credential vault: envelope encryption with AES-256-GCM.

Each owner (a tenant, or the platform for hub-wide secrets such as JWT signing keys)
has a random 256-bit data key, stored wrapped by the active master key
(``HUB_MASTER_KEYS``, a list: the first seals, all open, so keys rotate). Each
secret is sealed with the owner's data key and associated data naming where it
lives (``tenant_id:integration_id:field``), so a ciphertext copied to another
row, tenant or field does not open. Rotating master keys re-wraps data keys only;
erasing a tenant destroys its data key, and with it every secret it had.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.db import insert_ignore, is_postgres, utcnow
from hub.settings import MasterKey
from tenants.models import DataKey

SEALED_PREFIX = "sealed:v1:"
PLATFORM_OWNER = "platform"
_NONCE_BYTES = 12


class VaultError(Exception):
    """A secret cannot be sealed or opened; the message says why."""


class SecretCannotBeOpened(VaultError):
    pass


class DataKeyDestroyed(VaultError):
    pass


class UnknownMasterKey(VaultError):
    pass


@dataclass
class RotationReport:
    rewrapped: int = 0
    already_current: int = 0
    destroyed: int = 0
    failed: list[str] = field(default_factory=list)


def owner_of(tenant_id: uuid.UUID | None) -> str:
    return str(tenant_id) if tenant_id else PLATFORM_OWNER


def field_context(integration_id: uuid.UUID | str, field_name: str) -> str:
    return f"{integration_id}:{field_name}"


# A secret shorter than this shows nothing at all: its last four characters would be
# too large a share of it.
MASK_MIN_LENGTH = 12


def mask_secret(value: str) -> str:
    """A display form that recognises a secret without revealing it: ``…1234`` (the
    last four characters, and only of a secret at least 12 long), else ``…``."""
    if not value:
        return ""
    return f"…{value[-4:]}" if len(value) >= MASK_MIN_LENGTH else "…"


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


class Vault:
    """Seals and opens secrets. One per process; data keys are cached unwrapped."""

    def __init__(self, master_keys: list[MasterKey]) -> None:
        if not master_keys:
            raise VaultError("the vault needs at least one master key")
        self._active = master_keys[0]
        self._master = {k.key_id: k for k in master_keys}
        # (owner, wrapped bytes) -> data key: a re-wrap or a destroy changes the
        # wrapped bytes, so a cached entry can never outlive its row's state.
        self._cache: dict[tuple[str, bytes], bytes] = {}
        self._lock = threading.Lock()

    @property
    def active_key_id(self) -> str:
        return self._active.key_id

    # --- data keys ----------------------------------------------------------------
    def _wrap(self, owner: str, data_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + AESGCM(self._active.key).encrypt(nonce, data_key, f"data-key:{owner}".encode())

    def _unwrap(self, row: DataKey) -> bytes:
        if row.wrapped_key is None:
            raise DataKeyDestroyed(f"the data key of {row.owner} was destroyed; its secrets cannot be opened")
        cached = self._cache.get((row.owner, row.wrapped_key))
        if cached is not None:
            return cached
        master = self._master.get(row.master_key_id)
        if master is None:
            raise UnknownMasterKey(
                f"the data key of {row.owner} is wrapped by master key {row.master_key_id!r}, "
                "which is not in HUB_MASTER_KEYS"
            )
        blob = row.wrapped_key
        try:
            key = AESGCM(master.key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], f"data-key:{row.owner}".encode())
        except InvalidTag:
            raise SecretCannotBeOpened(f"the data key of {row.owner} does not open with its master key") from None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[(row.owner, row.wrapped_key)] = key
        return key

    def create_data_key(self, session: Session, tenant_id: uuid.UUID | None) -> None:
        """Give an owner its data key (no-op when it has one)."""
        owner = owner_of(tenant_id)
        insert_ignore(
            session,
            DataKey,
            {
                "owner": owner,
                "tenant_id": tenant_id,
                "master_key_id": self._active.key_id,
                "wrapped_key": self._wrap(owner, AESGCM.generate_key(256)),
                "created_at": utcnow(),
            },
            conflict=["owner"],
        )

    def _data_key(self, session: Session, tenant_id: uuid.UUID | None, *, create: bool) -> bytes:
        owner = owner_of(tenant_id)
        row = session.get(DataKey, owner)
        if row is None and create:
            self.create_data_key(session, tenant_id)
            row = session.get(DataKey, owner)
        if row is None:
            raise SecretCannotBeOpened(f"{owner} has no data key")
        return self._unwrap(row)

    # --- secrets ------------------------------------------------------------------
    def seal(self, session: Session, *, tenant_id: uuid.UUID | None, context: str, plaintext: bytes | str) -> str:
        """Encrypt ``plaintext`` for ``tenant_id`` bound to ``context``; returns text safe to store."""
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        key = self._data_key(session, tenant_id, create=True)
        nonce = os.urandom(_NONCE_BYTES)
        aad = f"{owner_of(tenant_id)}:{context}".encode()
        blob = nonce + AESGCM(key).encrypt(nonce, data, aad)
        return SEALED_PREFIX + base64.urlsafe_b64encode(blob).decode()

    def open_secret(self, session: Session, *, tenant_id: uuid.UUID | None, context: str, sealed: str) -> bytes:
        """Decrypt what ``seal`` returned, for the same tenant and context only."""
        if not is_sealed(sealed):
            raise SecretCannotBeOpened("not a sealed value")
        try:
            blob = base64.urlsafe_b64decode(sealed[len(SEALED_PREFIX):])
        except (binascii.Error, ValueError):
            raise SecretCannotBeOpened("sealed value is not valid base64") from None
        if len(blob) < _NONCE_BYTES + 16:
            raise SecretCannotBeOpened("sealed value is truncated")
        key = self._data_key(session, tenant_id, create=False)
        aad = f"{owner_of(tenant_id)}:{context}".encode()
        try:
            return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise SecretCannotBeOpened(
                "secret does not open here: it was altered, or it belongs to another tenant, "
                "integration or field"
            ) from None

    def seal_field(self, session: Session, *, tenant_id: uuid.UUID, integration_id: uuid.UUID,
                   field_name: str, value: str) -> str:
        return self.seal(session, tenant_id=tenant_id, context=field_context(integration_id, field_name),
                         plaintext=value)

    def open_field(self, session: Session, *, tenant_id: uuid.UUID, integration_id: uuid.UUID,
                   field_name: str, sealed: str) -> str:
        return self.open_secret(session, tenant_id=tenant_id, context=field_context(integration_id, field_name),
                                sealed=sealed).decode()

    # --- lifecycle ----------------------------------------------------------------
    def destroy(self, session: Session, tenant_id: uuid.UUID) -> None:
        """Crypto-shred: the tenant's data key is gone, so are all its secrets."""
        row = session.get(DataKey, owner_of(tenant_id))
        if row is not None and row.wrapped_key is not None:
            row.wrapped_key = None
            row.destroyed_at = utcnow()
            session.flush()

    def rotate(self, factory: sessionmaker[Session], *, batch_size: int = 100) -> RotationReport:
        """Re-wrap every data key under the active master key, a batch per transaction.

        Resumable: rows already under the active key are skipped, so an interrupted
        run simply continues where it stopped.
        """
        report = RotationReport()
        last_owner = ""
        while True:
            with factory() as session, session.begin():
                stmt = (
                    select(DataKey)
                    .where(DataKey.owner > last_owner, DataKey.master_key_id != self._active.key_id)
                    .order_by(DataKey.owner)
                    .limit(batch_size)
                )
                if is_postgres(session):
                    stmt = stmt.with_for_update(skip_locked=True)
                rows = list(session.scalars(stmt))
                if not rows:
                    break
                for row in rows:
                    last_owner = row.owner
                    if row.wrapped_key is None:
                        row.master_key_id = self._active.key_id
                        report.destroyed += 1
                        continue
                    try:
                        key = self._unwrap(row)
                    except VaultError as exc:
                        report.failed.append(f"{row.owner}: {exc}")
                        continue
                    row.wrapped_key = self._wrap(row.owner, key)
                    row.master_key_id = self._active.key_id
                    row.rotated_at = utcnow()
                    report.rewrapped += 1
        with factory() as session:
            current = session.scalar(
                select(func.count()).select_from(DataKey).where(DataKey.master_key_id == self._active.key_id)
            )
            report.already_current = (current or 0) - report.rewrapped - report.destroyed
        return report
