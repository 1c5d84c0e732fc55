"""Engine, sessions and the declarative base shared by every feature's models."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so migrations can drop what they create on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on every backend (SQLite drops the offset on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the hub stores aware UTC datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def dump_json(value: Any) -> str:
    """JSON text for a JSON column. PostgreSQL's JSONB refuses U+0000: the API refuses it
    at its edge (hub.input_guard), and anything else — a provider's payload — is stored
    with U+FFFD in its place, the same on both backends."""
    text = json.dumps(value)
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned per backend: SQLite gets WAL, foreign keys and a busy timeout."""
    kwargs.setdefault("json_serializer", dump_json)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _savepoint_writes(conn, _name) -> None:
            # sqlite3 opens a transaction only before a write, so reads run outside one,
            # but a SAVEPOINT opens one at once: a read inside it pins a WAL snapshot, and
            # if another connection commits before this one's first write, SQLite says
            # "database is locked" at once (SQLITE_BUSY_SNAPSHOT, no busy wait). A
            # savepoint is there to guard a write, so take the write lock up front,
            # waiting for it like any write does.
            dbapi_conn = conn.connection.dbapi_connection
            if dbapi_conn is not None and not dbapi_conn.in_transaction:
                dbapi_conn.execute("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it costs a round trip per checkout on the hot paths. Connections are
    # recycled instead, and a dropped one fails one transaction, which callers retry.
    kwargs.setdefault("pool_recycle", 1800)
    if "poolclass" not in kwargs:
        # as many as the threads that may hold one (anyio's default pool is 40), so
        # overflow connections are not opened and closed under load
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 30)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine, *, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``info`` is what every session carries (the audit keys)."""
    return sessionmaker(engine, expire_on_commit=False, info=info)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits once at the end, or rolls back on error (CLI, tasks)."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any], *, conflict: list[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on both backends; True when a row was written."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=conflict)
    # psycopg's rowcount of an INSERT is gone once SQLAlchemy closes the result (-1) unless preserved
    return session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount == 1
