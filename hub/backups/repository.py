"""The backup_runs table: written by ``hub backup``, read by the API's metrics."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import func, inspect, pool, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hub.backups.models import BackupRun
from hub.db import make_engine, utcnow

log = structlog.get_logger("hub.backups")


def last_success_at(session: Session) -> datetime | None:
    """When the newest successful backup finished (``hub_backup_last_success_timestamp_seconds``)."""
    return session.scalar(select(func.max(BackupRun.finished_at)).where(BackupRun.status == "succeeded"))


def record_run(url: str, **fields) -> bool:
    """Note a backup run in the database it backed up; False (logged) when that cannot be done:
    a database not yet migrated to the table, or one that is down (the run failed for that)."""
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        if not inspect(engine).has_table(BackupRun.__tablename__):
            return False
        with Session(engine) as session, session.begin():
            session.add(BackupRun(**fields))
        return True
    except SQLAlchemyError as exc:
        log.warning("could not record the backup run", error=type(exc).__name__, name=fields.get("name"))
        return False
    finally:
        engine.dispose()


def mark_verified(url: str, name: str) -> None:
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        if inspect(engine).has_table(BackupRun.__tablename__):
            with Session(engine) as session, session.begin():
                session.execute(update(BackupRun).where(BackupRun.name == name, BackupRun.status == "succeeded")
                                .values(verified_at=utcnow()))
    except SQLAlchemyError as exc:
        log.warning("could not record the verification", error=type(exc).__name__, name=name)
    finally:
        engine.dispose()
