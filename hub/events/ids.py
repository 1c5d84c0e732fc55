"""Event ids as the tenant sees them: opaque, and meaningful to that tenant only.

The event log numbers events with one sequence for the whole hub, so its raw ids would
tell any tenant how much every other tenant does (two ids a minute apart count the
platform's traffic). On the wire an id is that number sealed for the tenant: one AES
block (a keyed permutation, so distinct ids stay distinct) of an 8-byte tag of the
tenant and the 8-byte sequence number, with a key derived from the master key. Reading
one back (``Last-Event-ID``) checks the tag: another tenant's id, or a made-up one,
does not decode. Every master key in the ring decodes, so ids survive a key rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import uuid
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.errors import Invalid
from hub.settings import MasterKey

PREFIX = "evt_"
_INFO = b"integrations-hub:event-ids:v1"


def _tag(tenant_id: uuid.UUID) -> bytes:
    return hashlib.sha256(b"event-id-tag:" + tenant_id.bytes).digest()[:8]


@dataclass(frozen=True)
class EventIds:
    """Encodes and decodes one deployment's event ids (see the module docstring)."""

    master_keys: tuple[MasterKey, ...]

    @cached_property
    def _keys(self) -> list[bytes]:
        return [HKDF(algorithm=SHA256(), length=16, salt=None, info=_INFO).derive(k.key) for k in self.master_keys]

    def public(self, tenant_id: uuid.UUID, sequence: int) -> str:
        """The id a tenant is shown for its event ``sequence``."""
        # ECB on a single block with a unique plaintext is a pseudorandom permutation
        encryptor = Cipher(algorithms.AES(self._keys[0]), modes.ECB()).encryptor()  # noqa: S305
        block = encryptor.update(_tag(tenant_id) + struct.pack(">Q", sequence)) + encryptor.finalize()
        return PREFIX + base64.urlsafe_b64encode(block).decode().rstrip("=")

    def sequence(self, tenant_id: uuid.UUID, public: str) -> int:
        """The sequence number behind ``public``; a 422 when it is not an id of this tenant."""
        raw = public.strip()
        try:
            if not raw.startswith(PREFIX):
                raise ValueError
            block = base64.urlsafe_b64decode(raw[len(PREFIX):] + "==")
            if len(block) != 16:
                raise ValueError
        except (ValueError, binascii.Error):
            raise _invalid() from None
        for key in self._keys:
            decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305
            plain = decryptor.update(block) + decryptor.finalize()
            if plain[:8] == _tag(tenant_id):
                return struct.unpack(">Q", plain[8:])[0]
        raise _invalid()


def _invalid() -> Invalid:
    return Invalid("Last-Event-ID must be an event id this stream sent", code="invalid_last_event_id")


def event_ids(runtime) -> EventIds:
    """The runtime's codec (built once per process)."""
    codec = runtime.caches.get("event_ids")
    if codec is None:
        codec = runtime.caches.setdefault("event_ids", EventIds(tuple(runtime.settings.master_key_ring)))
    return codec
