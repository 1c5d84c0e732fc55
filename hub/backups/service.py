"""Create, verify, restore, list and prune backups in a directory.

Each backup is two files: ``<name>.dump.enc`` (the dump, sealed with the master key)
and ``<name>.manifest.json`` (created at, schema revision, row counts per table,
checksum and size of the sealed file; signed). Nothing is half written: the dump is
written aside and renamed once whole, the manifest last.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

from hub.backups import repository
from hub.backups.archive import BackupCorrupt, Manifest, decrypt_stream, encrypt_stream, file_sha256
from hub.backups.engines import engine_for
from hub.db import utcnow
from hub.errors import Conflict, NotFound
from hub.settings import MasterKey

MANIFEST_SUFFIX = ".manifest.json"
DUMP_SUFFIX = ".dump.enc"


class BackupNotFound(NotFound):
    code = "backup_not_found"


class SchemaTooNew(Conflict):
    """The dump was made by a release whose migrations this code does not have."""

    code = "backup_schema_too_new"


class WrongEngine(Conflict):
    code = "backup_wrong_engine"


@dataclass(frozen=True)
class VerifyReport:
    manifest: Manifest
    restored_counts: dict[str, int]


def _hub_version() -> str:
    try:
        return metadata.version("integrations-hub")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def create_backup(*, url: str, master_keys: list[MasterKey], directory: Path) -> Manifest:
    """Dump the database at ``url`` into ``directory``, sealed with the active master key."""
    engine, master = engine_for(url), master_keys[0]
    started = utcnow()
    name = f"hub-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    dump_path = directory / f"{name}{DUMP_SUFFIX}"
    partial = directory / f".{name}{DUMP_SUFFIX}.partial"
    sealed: dict[str, object] = {}
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            snapshot = engine.dump(url, lambda stream: sealed.update(
                zip(("sha256", "size"), encrypt_stream(stream, out, master), strict=True)))
            out.flush()
            os.fsync(out.fileno())
        manifest = Manifest(
            name=name, created_at=started.isoformat(), engine=engine.name, schema_revision=snapshot.schema_revision,
            row_counts=snapshot.row_counts, dump_file=dump_path.name, sha256=str(sealed["sha256"]),
            size_bytes=int(sealed["size"]), key_id=master.key_id, dump_format=engine.dump_format,
            hub_version=_hub_version(),
        ).sign(master)
        os.replace(partial, dump_path)
        _write_private(directory / f"{name}{MANIFEST_SUFFIX}", manifest.to_json().encode())
    except BaseException as exc:
        for leftover in (partial, dump_path):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        repository.record_run(url, name=name, status="failed", engine=engine.name, started_at=started,
                              error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    repository.record_run(url, name=name, status="succeeded", engine=engine.name, started_at=started,
                          schema_revision=manifest.schema_revision, size_bytes=manifest.size_bytes,
                          sha256=manifest.sha256, total_rows=manifest.total_rows)
    return manifest


def list_backups(*, directory: Path) -> list[Manifest]:
    """Every backup in ``directory`` whose manifest reads, newest first."""
    manifests = []
    for path in directory.glob(f"*{MANIFEST_SUFFIX}") if directory.is_dir() else []:
        with contextlib.suppress(BackupCorrupt, OSError):
            manifests.append(Manifest.from_json(path.read_text()))
    return sorted(manifests, key=lambda m: m.created_at, reverse=True)


def load_backup(*, directory: Path, name: str, master_keys: list[MasterKey]) -> Manifest:
    """The manifest of ``name`` (or ``latest``), its signature and the dump's checksum checked."""
    if name == "latest":
        found = list_backups(directory=directory)
        if not found:
            raise BackupNotFound(f"no backups in {directory}")
        name = found[0].name
    name = name.removesuffix(MANIFEST_SUFFIX).removesuffix(DUMP_SUFFIX)
    path = directory / f"{name}{MANIFEST_SUFFIX}"
    if "/" in name or not path.is_file():
        raise BackupNotFound(f"no backup named {name} in {directory}")
    manifest = Manifest.from_json(path.read_text())
    manifest.check_signature(master_keys)
    dump = directory / manifest.dump_file
    if not dump.is_file():
        raise BackupCorrupt(f"the dump file {manifest.dump_file} is missing")
    if dump.stat().st_size != manifest.size_bytes or file_sha256(dump) != manifest.sha256:
        raise BackupCorrupt(f"{manifest.dump_file} does not match its manifest's checksum")
    return manifest


def _engine_matching(url: str, manifest: Manifest):
    engine = engine_for(url)
    if engine.name != manifest.engine:
        raise WrongEngine(f"{manifest.name} is a {manifest.engine} backup; it cannot go into {engine.name}")
    return engine


def verify_backup(*, url: str, master_keys: list[MasterKey], directory: Path, name: str,
                  scratch_url: str | None = None) -> VerifyReport:
    """Checksum, then restore into a scratch database and compare every table's row count."""
    manifest = load_backup(directory=directory, name=name, master_keys=master_keys)
    engine = _engine_matching(url, manifest)
    with engine.scratch(url, scratch_url) as scratch, open(directory / manifest.dump_file, "rb") as sealed:
        engine.restore(scratch, decrypt_stream(sealed, master_keys), manifest.row_counts, replace=False)
        counts = _counts(scratch)
    if counts != manifest.row_counts:
        raise BackupCorrupt(f"{manifest.name} restored with other row counts than its manifest: {counts}")
    repository.mark_verified(url, manifest.name)
    return VerifyReport(manifest=manifest, restored_counts=counts)


def _counts(url: str) -> dict[str, int]:
    from sqlalchemy import MetaData, func, pool, select

    from hub.db import make_engine

    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in meta.sorted_tables if t.name != "alembic_version"}
    finally:
        engine.dispose()


def restore_backup(*, url: str, master_keys: list[MasterKey], directory: Path, name: str,
                   replace: bool = False) -> Manifest:
    """Restore ``name`` into the database at ``url``, then migrate it to this code's head.

    Refuses a dump whose schema revision this code does not know (a newer release made
    it), a dump from another engine, and, unless ``replace``, a database holding tables."""
    from hub.migrate import is_known, upgrade

    manifest = load_backup(directory=directory, name=name, master_keys=master_keys)
    if manifest.schema_revision is not None and not is_known(manifest.schema_revision):
        raise SchemaTooNew(f"{manifest.name} is at schema revision {manifest.schema_revision}, which this release "
                           "does not know: restore it with the release that made it (or a newer one)")
    engine = _engine_matching(url, manifest)
    with open(directory / manifest.dump_file, "rb") as sealed:
        engine.restore(url, decrypt_stream(sealed, master_keys), manifest.row_counts, replace=replace)
    upgrade(url, "head")
    return manifest


def prune_backups(*, directory: Path, keep: int | None = None, max_age_days: float | None = None,
                  now: datetime | None = None) -> list[str]:
    """Remove backups beyond the ``keep`` newest and those older than ``max_age_days``; the
    newest one always stays. Returns the names removed."""
    backups = list_backups(directory=directory)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=max_age_days) if max_age_days is not None else None
    removed = []
    for index, manifest in enumerate(backups):
        if index == 0:
            continue
        too_many = keep is not None and index >= keep
        too_old = cutoff is not None and datetime.fromisoformat(manifest.created_at) < cutoff
        if too_many or too_old:
            (directory / manifest.dump_file).unlink(missing_ok=True)
            (directory / f"{manifest.name}{MANIFEST_SUFFIX}").unlink(missing_ok=True)
            removed.append(manifest.name)
    return removed
