"""Alembic, driven from code: ``hub migrate``, ``make run`` and the tests share it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class UnknownRevision(ValueError):
    """A revision this code's migrations do not contain (a newer release's, or a typo)."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # kept out of the ini interpolation: URLs may contain '%'
    config.attributes["url"] = url
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def revisions() -> list[str]:
    """Every revision this code knows, oldest first."""
    return [script.revision for script in reversed(list(script_directory().walk_revisions()))]


def head_revision() -> str:
    return script_directory().get_current_head()


def is_known(revision: str) -> bool:
    return revision in revisions()


def current_revision(url: str) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    from sqlalchemy import pool

    from hub.db import make_engine

    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str
    pending: list[str]  # oldest first; empty when the database is at head

    @property
    def up_to_date(self) -> bool:
        return not self.pending


def schema_status(url: str) -> SchemaStatus:
    """Where the database stands against this code's migrations.

    Raises UnknownRevision when the database is at a revision this code does not
    contain: a newer release migrated it (roll the schema back with that release)."""
    known = revisions()
    current = current_revision(url)
    if current is not None and current not in known:
        raise UnknownRevision(current)
    start = 0 if current is None else known.index(current) + 1
    return SchemaStatus(current=current, head=known[-1], pending=known[start:])


def migrate_to(url: str, revision: str) -> str:
    """Upgrade or downgrade to ``revision`` (``head``, ``base`` or an id); returns the
    revision reached. Refuses revisions this code does not know."""
    known = revisions()
    target = {"head": known[-1], "base": None}.get(revision, revision)
    if target is not None and target not in known:
        raise UnknownRevision(revision)
    status = schema_status(url)
    position = -1 if status.current is None else known.index(status.current)
    wanted = -1 if target is None else known.index(target)
    try:
        if wanted > position:
            upgrade(url, target)
        elif wanted < position:
            downgrade(url, target or "base")
    except CommandError as exc:  # alembic's own refusals, e.g. an ambiguous revision
        raise UnknownRevision(f"{revision}: {exc}") from None
    return target or "base"
