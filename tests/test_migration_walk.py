"""Every migration goes up, down and up again with rows in every table, one step at a time.

Rows are made from the reflected schema at each revision (so the walk needs no
fixture per revision): one row per table, foreign keys pointing at the rows of the
referenced tables, CHECK ... IN (...) columns given an allowed value. A downgrade or
upgrade that loses rows of a table it only alters (SQLite's table rebuilds cascading
deletes, say) fails the walk, and so does one that cannot run with data present.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import pool

from hub.db import make_engine
from hub.migrate import MIGRATIONS_DIR, downgrade, revisions, upgrade
from tests.scratch_db import empty_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_QUOTED = re.compile(r"'([^']*)'")


@pytest.fixture(params=BACKENDS)
def empty_url(request, tmp_path):
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")  # skips (or fails in CI) without a server
    with empty_database(request.param, tmp_path) as url:
        yield url


def _allowed_values(inspector, table: str) -> dict[str, str]:
    """column -> a value its CHECK (col IN (...)) constraint allows."""
    allowed = {}
    columns = {c["name"] for c in inspector.get_columns(table)}
    for check in inspector.get_check_constraints(table):
        text = check["sqltext"]
        literals = _QUOTED.findall(text)
        named = [c for c in columns if re.search(rf"\b{c}\b", text)]
        if literals and len(named) == 1:
            allowed[named[0]] = literals[0]
    return allowed


def _value_for(column, n: int, when: datetime):
    kind = column.type
    if isinstance(kind, sa.Uuid):
        return uuid.uuid4()
    if isinstance(kind, sa.Boolean):
        return True
    if isinstance(kind, sa.Integer):
        return n
    if isinstance(kind, sa.Float | sa.Numeric):
        return 1.5
    if isinstance(kind, sa.DateTime):
        return when
    if isinstance(kind, sa.JSON):
        return {"walk": n}
    if isinstance(kind, sa.LargeBinary):
        return b"\x00walk"
    if isinstance(kind, sa.String | sa.Text):
        value = f"w{n}{uuid.uuid4().hex}"
        length = getattr(kind, "length", None)
        return value[:length] if length else value
    raise AssertionError(f"no sample value for {column.table.name}.{column.name} ({kind!r})")


def fill_empty_tables(engine) -> dict[str, int]:
    """One representative row in every empty table; returns the row count of each table."""
    meta = sa.MetaData()
    meta.reflect(engine)
    inspector = sa.inspect(engine)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            if table.name == "alembic_version" or conn.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                continue
            allowed = _allowed_values(inspector, table.name)
            row = {}
            for i, column in enumerate(table.columns):
                if column.foreign_keys:
                    target = next(iter(column.foreign_keys)).column
                    row[column.name] = conn.execute(sa.select(target).limit(1)).scalar_one()
                elif column.name in allowed:
                    row[column.name] = allowed[column.name]
                else:
                    # later columns later in time: end_at > start_at holds
                    row[column.name] = _value_for(column, i + 1, base + timedelta(minutes=i))
            conn.execute(table.insert().values(**row))
    return row_counts(engine)


def row_counts(engine) -> dict[str, int]:
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in meta.sorted_tables if t.name != "alembic_version"}


def test_every_revision_goes_up_down_up_with_data(empty_url):
    engine = make_engine(empty_url, poolclass=pool.NullPool)
    chain = revisions()
    assert chain[0] == "0001" and len(chain) == len(list(MIGRATIONS_DIR.glob("versions/*.py")))
    previous: str | None = None
    before: dict[str, int] = {}
    for revision in chain:
        upgrade(empty_url, revision)
        at_revision = fill_empty_tables(engine)
        assert all(n == 1 for n in at_revision.values()), at_revision

        downgrade(empty_url, previous or "base")
        after_down = row_counts(engine)
        assert set(after_down) == set(before), f"{revision} down: tables {set(after_down) ^ set(before)}"
        assert after_down == before, f"downgrading {revision} lost rows: {before} -> {after_down}"

        upgrade(empty_url, revision)
        again = row_counts(engine)
        survivors = {t: n for t, n in at_revision.items() if t in before}
        assert {t: again[t] for t in survivors} == survivors, f"{revision} up again lost rows"
        assert set(again) == set(at_revision)
        before, previous = fill_empty_tables(engine), revision

    # and all the way down again, one step at a time, with every table holding a row
    for revision, down_to in zip(reversed(chain), [*reversed(chain[:-1]), "base"], strict=True):
        counts = row_counts(engine)
        downgrade(empty_url, down_to)
        remaining = row_counts(engine)
        assert remaining == {t: counts[t] for t in remaining}, f"downgrading {revision} lost rows"
    assert row_counts(engine) == {}
    engine.dispose()


class TestMigrateCommand:
    """`hub migrate --check`, `--to REV` and the positional REVISION, as an operator runs them."""

    @pytest.fixture
    def hub_env(self, empty_url, tmp_path, monkeypatch):
        from hub.settings import new_master_key_entry

        monkeypatch.setenv("HUB_DATABASE_URL", empty_url)
        monkeypatch.setenv("HUB_MASTER_KEYS", new_master_key_entry())
        monkeypatch.setenv("HUB_VAR_DIR", str(tmp_path / "var"))
        return empty_url

    @staticmethod
    def hub(*args: str):
        from typer.testing import CliRunner

        from hub.cli import app

        return CliRunner().invoke(app, ["migrate", *args], catch_exceptions=False)

    def test_check_lists_pending_and_exits_1_until_at_head(self, hub_env):
        chain = revisions()
        empty = self.hub("--check")
        assert empty.exit_code == 1
        assert [line.split()[1] for line in empty.output.splitlines() if line.startswith("pending")] == chain

        assert self.hub(chain[-3]).exit_code == 0  # the documented positional form still upgrades
        behind = self.hub("--check")
        assert behind.exit_code == 1 and f"database at {chain[-3]}" in behind.output
        assert [line.split()[1] for line in behind.output.splitlines() if line.startswith("pending")] == chain[-2:]

        assert self.hub().exit_code == 0
        current = self.hub("--check")
        assert current.exit_code == 0 and "pending" not in current.output

    def test_to_goes_down_and_up_and_refuses_unknown_revisions(self, hub_env):
        chain = revisions()
        assert self.hub().exit_code == 0
        down = self.hub("--to", chain[-2])
        assert down.exit_code == 0 and f"database at {chain[-2]}" in down.output
        from hub.migrate import current_revision

        assert current_revision(hub_env) == chain[-2]
        assert self.hub("--to", "head").exit_code == 0
        assert current_revision(hub_env) == chain[-1]

        unknown = self.hub("--to", "9999")
        assert unknown.exit_code == 2 and "9999" in unknown.output
        assert current_revision(hub_env) == chain[-1]

    def test_a_database_migrated_by_a_newer_release_is_refused_not_touched(self, hub_env):
        assert self.hub().exit_code == 0
        engine = make_engine(hub_env, poolclass=pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9001'"))
        engine.dispose()
        for args in (("--check",), (), ("--to", "head")):
            result = self.hub(*args)
            assert result.exit_code == 2 and "9001" in result.output, (args, result.output)

    def test_production_needs_only_the_database_to_migrate(self, hub_env, monkeypatch):
        """The chart's hook and init containers run before HUB_PUBLIC_URL or Redis matter."""
        monkeypatch.setenv("HUB_ENV", "production")
        assert self.hub("--check").exit_code == 1
        assert self.hub().exit_code == 0
        assert self.hub("--check").exit_code == 0
