"""Migrations go up, down and up again, and match the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from hub.db import make_engine
from hub.migrate import downgrade, upgrade
from hub.tables import metadata


def test_upgrade_downgrade_upgrade(database_url):
    engine = make_engine(database_url)
    tables = set(metadata.tables)
    assert tables <= set(inspect(engine).get_table_names())
    downgrade(database_url, "base")
    engine.dispose()
    assert not tables & set(inspect(engine).get_table_names())
    upgrade(database_url)
    engine.dispose()
    assert tables <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_models_and_migrations_do_not_drift(database_url):
    engine = make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == [], f"models differ from migrations; add a migration: {diff}"


@pytest.mark.parametrize("revision", ["head"])
def test_single_head(revision):
    from alembic.script import ScriptDirectory

    from hub.migrate import alembic_config

    assert len(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()) == 1
