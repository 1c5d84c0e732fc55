"""The SQLite engine under concurrent writers (the embedded default runs API, worker
and relay threads against one file)."""

from __future__ import annotations

import threading

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.orm import Session

from hub.db import make_engine

rows = Table("rows", MetaData(), Column("id", Integer, primary_key=True), Column("name", String))


def test_a_savepoint_that_reads_then_writes_survives_another_writer(tmp_path):
    """A savepoint opened before the first write, a read inside it, another connection
    committing, then the write: once failed at once with 'database is locked'."""
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    rows.metadata.create_all(engine)

    def other_writer() -> None:
        with Session(engine) as second, second.begin():
            second.execute(insert(rows).values(name="other"))

    with Session(engine) as first:
        with first.begin_nested():
            assert first.scalars(select(rows.c.name)).all() == []
            writer = threading.Thread(target=other_writer)
            writer.start()
            writer.join(timeout=0.5)  # commits now unless the savepoint holds the write lock
            first.execute(insert(rows).values(name="mine"))
        first.commit()
    writer.join(timeout=30)
    assert not writer.is_alive()
    with Session(engine) as check:
        assert sorted(check.scalars(select(rows.c.name))) == ["mine", "other"]
