"""The sealed dump format: round trips, refuses every alteration, and streams in flat memory."""

from __future__ import annotations

import io
import os
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.backups.archive import CHUNK_SIZE, MAGIC, BackupCorrupt, Manifest, decrypt_stream, encrypt_stream
from hub.settings import MasterKey, new_master_key_entry, parse_master_keys

KEY = parse_master_keys(new_master_key_entry())[0]
OTHER = parse_master_keys(new_master_key_entry())[0]


def seal(data: bytes, chunk_size: int = 64) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, KEY, chunk_size=chunk_size)
    return out.getvalue()


def unseal(blob: bytes, keys: list[MasterKey] | None = None) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(blob), keys or [KEY]))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=1000), st.integers(min_value=1, max_value=200))
def test_round_trip_whatever_the_sizes(data, chunk_size):
    assert unseal(seal(data, chunk_size)) == data


def test_the_plaintext_is_not_in_the_file():
    secret = b"hubsec_do-not-leak-" * 20
    assert b"do-not-leak" not in seal(secret)


def test_opens_with_the_key_it_names_among_several_and_refuses_without_it():
    blob = seal(b"data" * 100)
    assert unseal(blob, [OTHER, KEY]) == b"data" * 100
    with pytest.raises(BackupCorrupt, match=KEY.key_id):
        unseal(blob, [OTHER])


class TestAlterations:
    blob = seal(bytes(range(256)) * 3, chunk_size=64)  # 12 chunks, the last one flagged

    def header_end(self) -> int:
        return len(MAGIC) + 4 + int.from_bytes(self.blob[len(MAGIC):len(MAGIC) + 4], "big")

    def test_a_flipped_byte_anywhere_in_a_chunk(self):
        for offset in (self.header_end() + 10, len(self.blob) // 2, len(self.blob) - 1):
            altered = bytearray(self.blob)
            altered[offset] ^= 0x01
            with pytest.raises(BackupCorrupt):
                unseal(bytes(altered))

    def test_a_cut_off_file(self):
        frame = 4 + 64 + 16
        for cut in (len(self.blob) - (4 + 16), len(self.blob) - (4 + 16) - frame, len(self.blob) - 5):
            with pytest.raises(BackupCorrupt):
                unseal(self.blob[:cut])

    def test_swapped_chunks(self):
        start, frame = self.header_end(), 4 + 64 + 16
        first, second = self.blob[start:start + frame], self.blob[start + frame:start + 2 * frame]
        swapped = self.blob[:start] + second + first + self.blob[start + 2 * frame:]
        with pytest.raises(BackupCorrupt, match="chunk 0"):
            unseal(swapped)

    def test_an_edited_header(self):
        altered = self.blob.replace(b'"chunk_size": 64', b'"chunk_size": 65')
        assert altered != self.blob
        with pytest.raises(BackupCorrupt):
            unseal(altered)

    def test_data_after_the_last_chunk(self):
        with pytest.raises(BackupCorrupt, match="after its last chunk"):
            unseal(self.blob + b"\x00")

    def test_not_a_backup(self):
        with pytest.raises(BackupCorrupt, match="not a hub backup"):
            unseal(b"PGDMP" + os.urandom(100))


def test_a_large_dump_streams_in_flat_memory(tmp_path):
    """64 MiB through encrypt and decrypt: Python's peak allocation stays a few chunks."""
    size = 64 * CHUNK_SIZE
    source, sealed = tmp_path / "dump", tmp_path / "dump.enc"
    with open(source, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(CHUNK_SIZE))
    tracemalloc.start()
    try:
        with open(source, "rb") as src, open(sealed, "wb") as out:
            encrypt_stream(src, out, KEY)
        _, encrypt_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = 0
        with open(sealed, "rb") as f:
            for chunk in decrypt_stream(f, [KEY]):
                total += len(chunk)
        _, decrypt_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert encrypt_peak < 6 * CHUNK_SIZE, encrypt_peak
    assert decrypt_peak < 6 * CHUNK_SIZE, decrypt_peak


def test_manifest_signature_refuses_an_edit():
    manifest = Manifest(name="hub-x", created_at="2026-12-05T00:00:00+00:00", engine="sqlite", schema_revision="0013",
                        row_counts={"tenants": 3}, dump_file="hub-x.dump.enc", sha256="0" * 64, size_bytes=10,
                        key_id=KEY.key_id, dump_format="f", hub_version="0.1.0").sign(KEY)
    again = Manifest.from_json(manifest.to_json())
    again.check_signature([KEY])
    again.row_counts["tenants"] = 4
    with pytest.raises(BackupCorrupt, match="altered"):
        again.check_signature([KEY])
