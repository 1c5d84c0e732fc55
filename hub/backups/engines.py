"""Dump and restore, per database: PostgreSQL through pg_dump / pg_restore / psql, SQLite
through its online backup API. Both stream: a dump never sits in memory whole."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import URL, make_url

from hub.errors import Conflict, HubError


class RestoreFailed(HubError):
    """The database refused the dump; nothing was changed (the restore is one transaction)."""

    status_code, code = 500, "restore_failed"


class TargetNotEmpty(Conflict):
    """The database to restore into already holds tables."""

    code = "restore_target_not_empty"


@dataclass(frozen=True)
class Snapshot:
    """What was in the database at the instant of the dump."""

    schema_revision: str | None
    row_counts: dict[str, int]


Sink = Callable[[BinaryIO], object]  # consumes the plaintext dump stream


def engine_for(url: str) -> PostgresEngine | SqliteEngine:
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        return PostgresEngine()
    if backend == "sqlite":
        return SqliteEngine()
    raise ValueError(f"backups support PostgreSQL and SQLite, not {backend}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- PostgreSQL -------------------------------------------------------------------------


def _libpq(url: str | URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment carrying it (kept out of argv)."""
    parsed = make_url(url) if isinstance(url, str) else url
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10")}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _psycopg_dsn(url: str | URL) -> str:
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (the PostgreSQL client tools: postgresql-client)")
    return path


class PostgresEngine:
    name = "postgresql"
    dump_format = "pg_dump custom format"

    def table_names(self, url: str) -> list[str]:
        import psycopg

        with psycopg.connect(_psycopg_dsn(url), connect_timeout=10) as conn:
            return [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]

    def dump(self, url: str, sink: Sink) -> Snapshot:
        """pg_dump in custom format, from the same snapshot the row counts are taken in."""
        import psycopg
        from psycopg import sql

        dsn, env = _libpq(url)
        with psycopg.connect(_psycopg_dsn(url), connect_timeout=10) as conn:
            conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
            snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
            counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(t))).fetchone()[0]
                      for t in tables}
            revision = (conn.execute("SELECT version_num FROM public.alembic_version").fetchone()[0]
                        if "alembic_version" in counts else None)
            # the snapshot lives while this transaction does: pg_dump must finish inside it
            with tempfile.TemporaryFile() as errors:
                proc = subprocess.Popen(  # noqa: S603 - our own argv, the password in env
                    [_tool("pg_dump"), "--format=custom", f"--snapshot={snapshot_id}", "--no-password",
                     f"--dbname={dsn}"], stdout=subprocess.PIPE, stderr=errors, env=env)
                try:
                    sink(proc.stdout)
                finally:
                    proc.stdout.close()
                    code = proc.wait()
                if code != 0:
                    errors.seek(0)
                    raise RuntimeError(f"pg_dump failed ({code}): {errors.read().decode(errors='replace')[-2000:]}")
            conn.rollback()
        counts.pop("alembic_version", None)
        return Snapshot(schema_revision=revision, row_counts=counts)

    def ensure_database(self, url: str) -> None:
        """Create the database ``url`` names if the server has none by that name."""
        import psycopg

        parsed = make_url(url)
        maintenance = _psycopg_dsn(parsed.set(database="postgres"))
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {_quote(parsed.database)}")

    def drop_database(self, url: str) -> None:
        import psycopg

        parsed = make_url(url)
        with psycopg.connect(_psycopg_dsn(parsed.set(database="postgres")), autocommit=True,
                             connect_timeout=10) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {_quote(parsed.database)} WITH (FORCE)")

    @contextlib.contextmanager
    def scratch(self, url: str, scratch_url: str | None = None) -> Iterator[str]:
        """An empty database to restore into: ``scratch_url``, or a new one beside ``url``."""
        if scratch_url:
            yield scratch_url
            return
        parsed = make_url(url)
        scratch = parsed.set(database=f"{parsed.database}_verify_{secrets.token_hex(4)}"[:63])
        rendered = scratch.render_as_string(hide_password=False)
        self.ensure_database(rendered)
        try:
            yield rendered
        finally:
            self.drop_database(rendered)

    def restore(self, url: str, chunks: Iterator[bytes], row_counts: dict[str, int], *, replace: bool) -> None:
        """Replace the database's tables with the dump's, in one transaction that also checks
        every table's row count against the manifest: on any failure nothing changes."""
        self.ensure_database(url)
        existing = self.table_names(url)
        if existing and not replace:
            raise TargetNotEmpty(f"the database holds {len(existing)} tables: restore into an empty database, "
                                 "or replace them with --force")
        prelude = "".join(f"DROP TABLE IF EXISTS public.{_quote(t)} CASCADE;\n" for t in existing)
        checks = "".join(  # identifiers quoted, counts ints: no text of the dump reaches SQL raw
            f"  SELECT count(*) INTO n FROM public.{_quote(t)};\n"  # noqa: S608
            f"  IF n <> {int(c)} THEN RAISE EXCEPTION 'table % has % rows, the manifest says {int(c)}', "
            f"'{t.replace(chr(39), chr(39) * 2)}', n; END IF;\n"
            for t, c in sorted(row_counts.items()))
        epilogue = f"DO $verify$\nDECLARE n bigint;\nBEGIN\n{checks}END\n$verify$;\n" if checks else ""
        dsn, env = _libpq(url)
        with tempfile.TemporaryFile() as restore_errors, tempfile.TemporaryFile() as psql_errors:
            restore_argv = [_tool("pg_restore"), "--file=-", "--no-owner", "--no-acl", "--exit-on-error"]
            psql_argv = [_tool("psql"), "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1",
                         "--single-transaction", f"--dbname={dsn}", "--file=-"]
            # fixed argv; the password travels in the environment
            restore = subprocess.Popen(restore_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                                       stderr=restore_errors)
            psql = subprocess.Popen(psql_argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,  # noqa: S603
                                    stderr=psql_errors, env=env)
            feed_error: list[BaseException] = []

            def feed() -> None:
                try:
                    for chunk in chunks:
                        restore.stdin.write(chunk)
                except BaseException as exc:  # handed to the main thread, which aborts the transaction
                    feed_error.append(exc)
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        restore.stdin.close()

            feeder = threading.Thread(target=feed, name="hub-restore-feed", daemon=True)
            feeder.start()
            try:
                psql.stdin.write(prelude.encode())
                shutil.copyfileobj(restore.stdout, psql.stdin, 1 << 20)
                feeder.join()
                if feed_error or restore.wait() != 0:
                    # ON_ERROR_STOP rolls the single transaction back
                    psql.stdin.write(b"DO $abort$ BEGIN RAISE EXCEPTION 'the dump stream failed'; END $abort$;\n")
                else:
                    psql.stdin.write(epilogue.encode())
                psql.stdin.close()
            except BrokenPipeError:
                pass  # psql stopped at an error; its message says which
            finally:
                restore.stdout.close()
                feeder.join()
                restore_code, psql_code = restore.wait(), psql.wait()
            if feed_error:
                raise feed_error[0]
            if restore_code != 0:
                restore_errors.seek(0)
                raise RestoreFailed(f"pg_restore failed: {restore_errors.read().decode(errors='replace')[-2000:]}")
            if psql_code != 0:
                psql_errors.seek(0)
                raise RestoreFailed(psql_errors.read().decode(errors="replace")[-2000:].strip())


# --- SQLite ---------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _sqlite_snapshot(conn: sqlite3.Connection) -> Snapshot:
    tables = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    counts = {t: conn.execute(f"SELECT count(*) FROM {_quote(t)}").fetchone()[0] for t in tables}  # noqa: S608
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] if "alembic_version" in counts \
        else None
    counts.pop("alembic_version", None)
    return Snapshot(schema_revision=revision, row_counts=counts)


class SqliteEngine:
    name = "sqlite"
    dump_format = "SQLite database file (online backup API)"

    def table_names(self, url: str) -> list[str]:
        path = _sqlite_path(url)
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return list(_sqlite_snapshot(conn).row_counts) + (
                ["alembic_version"] if conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone() else [])

    def dump(self, url: str, sink: Sink) -> Snapshot:
        """A consistent copy through the online backup API (writers carry on), then sealed."""
        source = _sqlite_path(url)
        if not source.exists():
            raise FileNotFoundError(f"no SQLite database at {source}")
        with tempfile.TemporaryDirectory(dir=source.parent, prefix=".hub-backup-") as work:
            copy = Path(work) / "copy.db"
            with contextlib.closing(sqlite3.connect(source, timeout=30)) as src, \
                    contextlib.closing(sqlite3.connect(copy)) as dst:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                snapshot = _sqlite_snapshot(dst)
            with open(copy, "rb") as f:
                sink(f)
        return snapshot

    @contextlib.contextmanager
    def scratch(self, url: str, scratch_url: str | None = None) -> Iterator[str]:
        if scratch_url:
            yield scratch_url
            return
        with tempfile.TemporaryDirectory(dir=_sqlite_path(url).parent, prefix=".hub-verify-") as work:
            yield f"sqlite:///{Path(work) / 'scratch.db'}"

    def restore(self, url: str, chunks: Iterator[bytes], row_counts: dict[str, int], *, replace: bool) -> None:
        """Check the dump whole (integrity, row counts) before a page of the target changes."""
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        existing = self.table_names(url)
        if existing and not replace:
            raise TargetNotEmpty(f"the database holds {len(existing)} tables: restore into an empty database, "
                                 "or replace them with --force")
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".hub-restore-") as work:
            copy = Path(work) / "restore.db"
            with open(copy, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            with contextlib.closing(sqlite3.connect(copy)) as src:
                try:
                    verdict = src.execute("PRAGMA integrity_check").fetchone()[0]
                except sqlite3.DatabaseError as exc:
                    raise RestoreFailed(f"the dump is not a SQLite database: {exc}") from None
                if verdict != "ok":
                    raise RestoreFailed(f"the dump fails SQLite's integrity check: {verdict}")
                found = _sqlite_snapshot(src).row_counts
                if found != row_counts:
                    wrong = sorted(t for t in set(found) | set(row_counts) if found.get(t) != row_counts.get(t))
                    raise RestoreFailed(f"row counts differ from the manifest in: {', '.join(wrong)}")
                with contextlib.closing(sqlite3.connect(target, timeout=30)) as dst:
                    src.backup(dst)  # page by page into the live file, under its write lock
