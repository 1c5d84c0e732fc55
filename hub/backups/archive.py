"""The encrypted dump file and its signed manifest.

A dump is sealed in chunks with AES-256-GCM (the STREAM construction of Hoang,
Reyhanitabar, Rogaway and Vizár, as Tink's streaming AEAD uses it): each chunk's
nonce is a random per-file prefix, the chunk's counter and a last-chunk flag, and
every chunk is bound to the file header. A chunk that is altered, dropped, moved
or cut off does not open, and neither does a file that ends before its last chunk.
The file key is derived (HKDF-SHA256, random salt) from the active master key, so
only a holder of HUB_MASTER_KEYS can read a backup and no two files share a key.
The manifest (counts, revision, checksum) is plain JSON with an HMAC under a key
derived from the same master key, so it cannot be edited to match a tampered dump.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.errors import Invalid
from hub.settings import MasterKey

MAGIC = b"HUB-BACKUP\x00\x01"
CHUNK_SIZE = 1 << 20  # 1 MiB of plaintext per chunk: memory stays flat whatever the dump's size
_PREFIX_BYTES = 7  # nonce = prefix (7) + counter (4) + last flag (1)
_FRAME = struct.Struct(">I")
MANIFEST_FORMAT = 1


class BackupCorrupt(Invalid):
    """The backup does not open or does not match its manifest."""

    code = "backup_corrupt"


def _derive(master: MasterKey, *, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(master.key)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


def _find_key(master_keys: list[MasterKey], key_id: str) -> MasterKey:
    for key in master_keys:
        if key.key_id == key_id:
            return key
    raise BackupCorrupt(f"the backup was sealed with master key {key_id!r}, which is not in HUB_MASTER_KEYS")


def encrypt_stream(source: BinaryIO, target: BinaryIO, master: MasterKey,
                   *, chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
    """Seal everything ``source`` yields into ``target``; returns (sha256 hex, bytes written)."""
    salt, prefix = os.urandom(32), os.urandom(_PREFIX_BYTES)
    header = json.dumps({"format": 1, "cipher": "AES-256-GCM", "kdf": "HKDF-SHA256", "key_id": master.key_id,
                         "salt": base64.b64encode(salt).decode(), "chunk_size": chunk_size,
                         "nonce_prefix": base64.b64encode(prefix).decode()}, sort_keys=True).encode()
    aead = AESGCM(_derive(master, salt=salt, info=b"hub-backup-v1"))
    digest, written = hashlib.sha256(), 0

    def put(data: bytes) -> None:
        nonlocal written
        target.write(data)
        digest.update(data)
        written += len(data)

    put(MAGIC + _FRAME.pack(len(header)) + header)
    counter, pending = 0, source.read(chunk_size)
    while True:
        following = source.read(chunk_size) if pending else b""
        last = not following
        sealed = aead.encrypt(_nonce(prefix, counter, last), pending, header)
        put(_FRAME.pack(len(sealed)) + sealed)
        if last:
            return digest.hexdigest(), written
        counter, pending = counter + 1, following


def _read_exact(source: BinaryIO, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise BackupCorrupt("the backup file is truncated")
    return data


def decrypt_stream(source: BinaryIO, master_keys: list[MasterKey]) -> Iterator[bytes]:
    """Yield the plaintext chunks of a sealed file, each one authenticated before it is yielded."""
    if source.read(len(MAGIC)) != MAGIC:
        raise BackupCorrupt("not a hub backup file (or an unknown format version)")
    (length,) = _FRAME.unpack(_read_exact(source, _FRAME.size))
    if length > 4096:
        raise BackupCorrupt("the backup header is malformed")
    header = _read_exact(source, length)
    try:
        meta = json.loads(header)
        salt, prefix = base64.b64decode(meta["salt"]), base64.b64decode(meta["nonce_prefix"])
        chunk_size = int(meta["chunk_size"])
    except (ValueError, KeyError, TypeError):
        raise BackupCorrupt("the backup header is malformed") from None
    aead = AESGCM(_derive(_find_key(master_keys, meta.get("key_id", "")), salt=salt, info=b"hub-backup-v1"))
    counter = 0
    while True:
        raw = source.read(_FRAME.size)
        if not raw:
            raise BackupCorrupt("the backup file ends before its last chunk (truncated)")
        if len(raw) < _FRAME.size:
            raw += _read_exact(source, _FRAME.size - len(raw))
        (size,) = _FRAME.unpack(raw)
        if size > chunk_size + 16:
            raise BackupCorrupt(f"chunk {counter} is malformed")
        sealed = _read_exact(source, size)
        for last in (False, True):
            try:
                plain = aead.decrypt(_nonce(prefix, counter, last), sealed, header)
                break
            except InvalidTag:
                continue
        else:
            raise BackupCorrupt(f"chunk {counter} does not open: the file was altered or the key is wrong")
        yield plain
        if last:
            if source.read(1):
                raise BackupCorrupt("the backup file has data after its last chunk")
            return
        counter += 1


def file_sha256(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_SIZE):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What a backup holds, written beside the dump (``<name>.manifest.json``)."""

    name: str
    created_at: str  # ISO 8601, UTC
    engine: str  # postgresql | sqlite
    schema_revision: str | None
    row_counts: dict[str, int]
    dump_file: str
    sha256: str  # of the sealed dump file
    size_bytes: int
    key_id: str
    dump_format: str  # pg_dump custom format, or a SQLite database file
    hub_version: str
    format: int = MANIFEST_FORMAT
    signature: str = field(default="")

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    def _signed_bytes(self) -> bytes:
        body = asdict(self)
        body.pop("signature")
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def sign(self, master: MasterKey) -> Manifest:
        key = _derive(master, salt=b"", info=b"hub-backup-manifest-v1")
        self.signature = hmac.new(key, self._signed_bytes(), hashlib.sha256).hexdigest()
        return self

    def check_signature(self, master_keys: list[MasterKey]) -> None:
        key = _derive(_find_key(master_keys, self.key_id), salt=b"", info=b"hub-backup-manifest-v1")
        expected = hmac.new(key, self._signed_bytes(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.signature):
            raise BackupCorrupt(f"the manifest of {self.name} was altered (its signature does not match)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise BackupCorrupt(f"unknown manifest format {data.get('format')!r}")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise BackupCorrupt(f"the manifest is malformed: {exc}") from None
