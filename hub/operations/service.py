"""Queue statistics, platform health and the state gauges of ``/metrics``.

Platform-wide figures (no tenant filter: these are read with scope platform:admin or
by the metrics collector, and expose counts only). Each query is an index range
scan or a count over a status index; the collector caches the result for
``HUB_METRICS_CACHE_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import Session

from hub.backups.repository import last_success_at
from hub.calendar.models import CalendarResource, ChannelStatus, ResourceStatus
from hub.db import utcnow
from hub.messaging.models import Message as _Message
from hub.messaging.models import MessageAttempt, MessageStatus, OutboxEntry
from hub.operations.processes import seen_processes
from hub.queue import QUEUES
from hub.webhooks.models import WebhookEvent
from hub.webhooks.service import MAX_ATTEMPTS as WEBHOOK_MAX_ATTEMPTS

if TYPE_CHECKING:
    from hub.runtime import Runtime

THROUGHPUT_WINDOW = timedelta(minutes=5)
# a channel renewed hourly with less than a day left: still this close means renewal fails
CHANNEL_EXPIRING_WITHIN = timedelta(hours=24)


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


@dataclass
class StateFigures:
    """What ``hub.metrics.state`` exposes as gauges."""

    dead_letters: int = 0
    outbox_depth: int = 0
    outbox_oldest_due_age: float = 0.0
    queue_depth: dict[str, int] = field(default_factory=dict)
    channels_expiring: int = 0
    calendar_sync_lag: float = 0.0
    backup_last_success: datetime | None = None


def outbox_oldest_due(session: Session, now: datetime) -> datetime | None:
    """When the oldest outbox entry that is due (and not claimed: a claim moves it on) became due."""
    return session.scalar(select(func.min(OutboxEntry.available_at)).where(OutboxEntry.available_at <= now))


def _redis(runtime: Runtime):
    import redis

    return redis.Redis.from_url(runtime.settings.redis_url, socket_connect_timeout=1, socket_timeout=2)


def celery_queue_key(runtime: Runtime, queue: str) -> str:
    """The Redis list kombu keeps queue ``queue`` in (see hub.queue's global_keyprefix)."""
    return f"{runtime.settings.redis_prefix}celery:{queue}"


def celery_queue_depths(runtime: Runtime) -> dict[str, int]:
    """Tasks waiting in each Celery queue; empty without Redis (the embedded queue is in memory)."""
    if not runtime.settings.redis_url:
        return {}
    client = _redis(runtime)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(celery_queue_key(runtime, queue))
        return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))
    finally:
        client.close()


def state_figures(runtime: Runtime) -> StateFigures:
    """Every state gauge, from a handful of cheap queries."""
    now = utcnow()
    with runtime.session_factory() as session:
        figures = StateFigures(
            dead_letters=session.scalar(select(func.count()).select_from(_Message)
                                        .where(_Message.status == MessageStatus.DEAD)) or 0,
            outbox_depth=session.scalar(select(func.count()).select_from(OutboxEntry)) or 0,
            outbox_oldest_due_age=_age(now, outbox_oldest_due(session, now)) or 0.0,
            channels_expiring=session.scalar(
                select(func.count()).select_from(CalendarResource)
                .where(CalendarResource.channel_status == ChannelStatus.ACTIVE,
                       CalendarResource.channel_expires_at < now + CHANNEL_EXPIRING_WITHIN)) or 0,
            calendar_sync_lag=_age(now, session.scalar(
                select(func.min(CalendarResource.last_synced_at))
                .where(CalendarResource.status == ResourceStatus.ACTIVE))) or 0.0,
            backup_last_success=last_success_at(session),
        )
        session.rollback()
    figures.queue_depth = celery_queue_depths(runtime)
    return figures


def _count(session: Session, model: Any, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def queue_stats(runtime: Runtime) -> list[dict[str, Any]]:
    """Per queue: waiting, in flight, scheduled, dead, oldest age, throughput over 5 minutes."""
    now = utcnow()
    since = now - THROUGHPUT_WINDOW
    status = _Message.status
    due = (_Message.next_attempt_at.is_(None)) | (_Message.next_attempt_at <= now)
    with runtime.session_factory() as session:
        outbox = {
            "name": "outbox", "source": "database",
            "waiting": _count(session, _Message, status.in_((MessageStatus.QUEUED, MessageStatus.RETRYING,
                                                             MessageStatus.SCHEDULED)), due),
            "in_flight": _count(session, _Message, status == MessageStatus.SENDING),
            "scheduled": _count(session, _Message, status.in_((MessageStatus.SCHEDULED, MessageStatus.RETRYING)),
                                _Message.next_attempt_at > now),
            "dead": _count(session, _Message, status == MessageStatus.DEAD),
            "oldest_age_seconds": _age(now, outbox_oldest_due(session, now)),
            "throughput_5m": _count(session, MessageAttempt, MessageAttempt.finished_at >= since),
        }
        live = and_(WebhookEvent.handled_at.is_(None), WebhookEvent.attempts < WEBHOOK_MAX_ATTEMPTS)
        webhooks = {
            "name": "webhooks", "source": "database",
            "waiting": _count(session, WebhookEvent, live, WebhookEvent.dispatched_at.is_(None)),
            "in_flight": _count(session, WebhookEvent, live, WebhookEvent.dispatched_at.is_not(None)),
            "scheduled": 0,
            "dead": _count(session, WebhookEvent, WebhookEvent.handled_at.is_(None),
                           WebhookEvent.attempts >= WEBHOOK_MAX_ATTEMPTS),
            "oldest_age_seconds": _age(now, session.scalar(select(func.min(WebhookEvent.received_at)).where(live))),
            "throughput_5m": _count(session, WebhookEvent, WebhookEvent.handled_at >= since),
        }
        session.rollback()
    rows = [outbox, webhooks]
    for queue, depth in celery_queue_depths(runtime).items():
        rows.append({"name": queue, "source": "redis", "waiting": depth})
    return rows


def _check_database(runtime: Runtime) -> str:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any driver error means unreachable; the reason is shown
        return f"unreachable: {type(exc).__name__}"


def platform_health(runtime: Runtime) -> dict[str, Any]:
    """Every dependency (database, Redis) and every process kind seen recently."""
    import redis

    dependencies = [{"name": "database", "status": _check_database(runtime)}]
    processes: list[dict[str, Any]] = []
    if not runtime.settings.redis_url:
        dependencies.append({"name": "redis", "status": "embedded"})
        processes = seen_processes(runtime)
    else:
        client = _redis(runtime)
        try:
            client.ping()
            dependencies.append({"name": "redis", "status": "ok"})
            processes = seen_processes(runtime, client)
        except redis.RedisError as exc:
            dependencies.append({"name": "redis", "status": f"unreachable: {type(exc).__name__}"})
        finally:
            client.close()
    ok = all(d["status"] in ("ok", "embedded") for d in dependencies)
    return {"status": "ok" if ok else "degraded", "at": utcnow(), "dependencies": dependencies,
            "processes": processes}
