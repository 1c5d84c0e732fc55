"""Alembic environment: the URL comes from hub.migrate (or HUB_DATABASE_URL)."""

from alembic import context
from sqlalchemy import pool

from hub.db import make_engine
from hub.settings import Settings
from hub.tables import metadata

config = context.config


def _url() -> str:
    return config.attributes.get("url") or Settings().effective_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode ALTERs a SQLite table by copying it into a new one and dropping the
        # old: with foreign keys enforced, that DROP fails on a referenced table or, worse,
        # cascades and deletes the referencing rows. SQLite ignores this pragma inside a
        # transaction, so it is set before one begins; the keys are checked at the end.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    # batch mode lets the same migrations ALTER tables on SQLite
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            connection.commit()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
        raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
