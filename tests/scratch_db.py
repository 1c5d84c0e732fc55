"""Empty throwaway databases, for tests that create, destroy and restore a whole schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url


def _admin_dsn() -> str:
    server = make_url(os.environ["HUB_TEST_DATABASE_URL"])
    return server.set(drivername="postgresql").render_as_string(hide_password=False)


def create_postgres_database(name: str) -> str:
    """Create database ``name`` on the test server; returns its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(_admin_dsn(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(os.environ["HUB_TEST_DATABASE_URL"]).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_admin_dsn(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty (never migrated) database on ``backend``; dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'empty-{secrets.token_hex(4)}.db'}"
        return
    name = f"hubtest_scratch_{os.getpid()}_{secrets.token_hex(4)}"
    url = create_postgres_database(name)
    try:
        yield url
    finally:
        drop_postgres_database(name)
