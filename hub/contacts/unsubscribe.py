"""One-click unsubscribe (RFC 8058) for the e-mail the hub sends for a tenant.

Every e-mail carries ``List-Unsubscribe: <{HUB_PUBLIC_URL}/unsubscribe/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. The token names the tenant and
the recipient, sealed (AES-GCM, a key derived from the master key, so the address is not
readable in the URL and a forged or altered token does not open). Per RFC 8058 a
``POST`` with ``List-Unsubscribe=One-Click`` unsubscribes at once (mail providers send
it when the person presses "unsubscribe"); a ``GET`` only shows a page with a button,
because link scanners fetch every URL in a message. https://www.rfc-editor.org/rfc/rfc8058
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.settings import MasterKey

PATH = "/unsubscribe/"
ONE_CLICK = "List-Unsubscribe=One-Click"
_INFO = b"integrations-hub:unsubscribe:v1"


@dataclass(frozen=True)
class Recipient:
    tenant_id: uuid.UUID
    address: str


@dataclass(frozen=True)
class UnsubscribeTokens:
    master_keys: tuple[MasterKey, ...]

    @cached_property
    def _keys(self) -> list[AESGCM]:
        return [AESGCM(HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(k.key))
                for k in self.master_keys]

    def token(self, tenant_id: uuid.UUID, address: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[0].encrypt(nonce, tenant_id.bytes + address.encode(), _INFO)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def read(self, token: str) -> Recipient | None:
        """The recipient a token names; None for anything not sealed by this deployment."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < 12 + 16 + 16 + 1:
            return None
        for key in self._keys:  # every master key of the ring: links survive a rotation
            try:
                plain = key.decrypt(raw[:12], raw[12:], _INFO)
            except InvalidTag:
                continue
            try:
                return Recipient(uuid.UUID(bytes=plain[:16]), plain[16:].decode())
            except (ValueError, UnicodeDecodeError):
                return None
        return None


def unsubscribe_url(public_url: str, tokens: UnsubscribeTokens, tenant_id: uuid.UUID, address: str) -> str:
    return public_url.rstrip("/") + PATH + tokens.token(tenant_id, address)
