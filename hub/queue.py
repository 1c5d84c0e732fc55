"""The Celery app, the in-process worker of the embedded default, and
enqueue-after-commit.

Tasks are thin ``shared_task`` wrappers named in ``TASKS``; each reaches its
process's runtime through ``task.app.hub_runtime``. Publishing goes through
``runtime.celery.send_task`` so several apps (tests) never mix. A task requested
inside a transaction is sent only when it commits and dropped on rollback.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from celery import Celery, shared_task, signals
from celery.beat import PersistentScheduler
from celery.schedules import crontab
from sqlalchemy import event
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from hub.runtime import Runtime
    from hub.settings import Settings

log = structlog.get_logger("hub.queue")

DELIVER_MESSAGE = "hub.messaging.deliver_message"
DELIVER_MESSAGES = "hub.messaging.deliver_messages"  # a batch of message ids
HANDLE_EVENTS = "hub.webhooks.handle_events"
RELAY = "hub.relay"
EXPAND_BROADCAST = "hub.broadcasts.expand"
# calendar (hub.calendar.tasks)
PUSH_APPOINTMENT = "hub.calendar.push_appointment"
CALENDAR_SYNC_RESOURCE = "hub.calendar.sync_resource"
CALENDAR_STOP_CHANNEL = "hub.calendar.stop_channel"
CALENDAR_RESUME = "hub.calendar.resume_tenant"
CALENDAR_RENEW_CHANNELS = "hub.calendar.renew_channels"
CALENDAR_RECONCILE = "hub.calendar.reconcile"
CALENDAR_REMINDERS = "hub.calendar.send_due_reminders"
# events (hub.events.tasks)
EVENTS_SWEEP = "hub.events.sweep"
# audit (hub.audit.tasks)
AUDIT_CHECKPOINT = "hub.audit.checkpoint"
# whatsapp (hub.whatsapp.tasks)
WHATSAPP_SYNC_TEMPLATES = "hub.whatsapp.sync_templates"
# Seconds before Redis hands a task a worker fetched but never acknowledged (acks_late) to
# another worker. The hub's own work comes back sooner from the database, where claims
# and heartbeats tell a killed worker from a busy one: a message after its lease
# (hub.messaging.claims, ~30 s) or REPUBLISH_UNCLAIMED_AFTER (45 s), an event after
# REDISPATCH_AFTER (45 s). This is the backstop for the rest, above those so the relay
# acts first, and short enough that a killed worker's tasks resume within two minutes;
# a healthy task fetched longer ago runs twice, which every acks_late task allows.
VISIBILITY_TIMEOUT = 120
# With Redis, work is split over three queues so worker groups can be sized per kind of work
# (the Helm chart's workers[].queues); a `hub worker` consumes every queue unless
# HUB_WORKER_QUEUES names some. Embedded, everything shares one private queue.
DEFAULT_QUEUE, CALENDAR_QUEUE, MAINTENANCE_QUEUE = "hub", "calendar", "maintenance"
QUEUES = (DEFAULT_QUEUE, CALENDAR_QUEUE, MAINTENANCE_QUEUE)
TASK_ROUTES = {
    **{name: {"queue": CALENDAR_QUEUE} for name in (PUSH_APPOINTMENT, CALENDAR_SYNC_RESOURCE, CALENDAR_STOP_CHANNEL,
                                                     CALENDAR_RESUME, CALENDAR_REMINDERS)},
    **{name: {"queue": MAINTENANCE_QUEUE} for name in (CALENDAR_RENEW_CHANNELS, CALENDAR_RECONCILE, EVENTS_SWEEP,
                                                        WHATSAPP_SYNC_TEMPLATES, AUDIT_CHECKPOINT)},
}
TASK_MODULES = ["hub.messaging.tasks", "hub.webhooks.tasks", "hub.relay", "hub.calendar.tasks", "hub.broadcasts.tasks",
                "hub.events.tasks", "hub.whatsapp.tasks", "hub.audit.tasks"]


def make_celery(settings: Settings) -> Celery:
    """A Celery app on Redis, or on kombu's in-memory transport when embedded.

    The embedded queue gets a name of its own: kombu's memory transport is shared by
    the whole process, and two runtimes (tests) must never consume each other's tasks.
    """
    from kombu import Queue

    from hub.settings import SettingsError

    embedded = not settings.redis_url
    app = Celery("hub", broker=settings.redis_url or "memory://", set_as_current=False)
    queue = f"hub-embedded-{uuid.uuid4().hex[:8]}" if embedded else DEFAULT_QUEUE
    consumed = [q.strip() for q in settings.worker_queues.split(",") if q.strip()] or list(QUEUES)
    if unknown := sorted(set(consumed) - set(QUEUES)):
        raise SettingsError(f"HUB_WORKER_QUEUES names unknown queues {', '.join(unknown)} "
                            f"(known: {', '.join(QUEUES)})")
    app.conf.update(
        task_default_queue=queue,
        task_queues=[Queue(queue)] if embedded else [Queue(name) for name in consumed],
        task_routes={} if embedded else TASK_ROUTES,
        task_acks_late=True,  # a worker that dies mid-task leaves it for another
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        # a failed publish is caught (the outbox relay resends), so fail fast
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        broker_transport_options=(
            {"polling_interval": 0.01} if embedded
            else {"global_keyprefix": f"{settings.redis_prefix}celery:", "visibility_timeout": VISIBILITY_TIMEOUT,
                  "socket_connect_timeout": 2, "socket_timeout": 5}
        ),
        imports=TASK_MODULES,
        beat_schedule={
            "relay": {"task": RELAY, "schedule": settings.relay_interval_seconds * 2},
            # Google watch channels live 7 days; renew the ones with less than a day left
            "calendar-renew-channels": {"task": CALENDAR_RENEW_CHANNELS, "schedule": 3600.0},
            # an incremental sync of every mapped calendar catches pushes Google never sent
            "calendar-reconcile": {"task": CALENDAR_RECONCILE, "schedule": crontab(hour=3, minute=17)},
            "calendar-reminders": {"task": CALENDAR_REMINDERS, "schedule": 60.0},
            # the real-time stream's log is kept HUB_EVENTS_RETENTION_DAYS for replay
            "events-sweep": {"task": EVENTS_SWEEP, "schedule": crontab(minute=41)},
            # Meta approves, pauses and disables templates on its own: mirror them every 6 h
            "whatsapp-sync-templates": {"task": WHATSAPP_SYNC_TEMPLATES, "schedule": 6 * 3600.0},
            # a signed checkpoint of every audit chain that moved, copied out of the database
            "audit-checkpoint": {"task": AUDIT_CHECKPOINT, "schedule": 60.0},
        },
    )
    if settings.heartbeat_file is not None:
        _install_heartbeat(app, settings.heartbeat_file)
    if not embedded:
        _install_seen(app, settings)
    return app


def _install_seen(app: Celery, settings: Settings) -> None:
    """Workers and beat note themselves in Redis for `GET /v1/platform/health`
    (hub.operations.processes), from the consumer's loop and beat's tick."""
    from celery import bootsteps

    from hub.operations.processes import SEEN_EVERY_SECONDS, mark_seen

    class SeenStep(bootsteps.StartStopStep):
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def start(self, consumer) -> None:
            mark_seen(settings, "worker")
            self.timer_ref = consumer.timer.call_repeatedly(SEEN_EVERY_SECONDS, mark_seen, (settings, "worker"),
                                                            priority=10)

        def stop(self, consumer) -> None:
            if getattr(self, "timer_ref", None) is not None:
                self.timer_ref.cancel()
                self.timer_ref = None

    app.steps["consumer"].add(SeenStep)
    app.conf.beat_scheduler = HeartbeatScheduler
    app.conf.hub_seen_settings = settings


def _install_heartbeat(app: Celery, path: Path) -> None:
    """Worker: a consumer step touches the file from the consumer's own event loop, so a
    stuck loop or a lost broker connection stops the touches. Beat: its scheduler's tick."""
    from celery import bootsteps

    from hub.heartbeat import TOUCH_EVERY_SECONDS, touch

    class HeartbeatStep(bootsteps.StartStopStep):
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def start(self, consumer) -> None:
            touch(path)
            self.timer_ref = consumer.timer.call_repeatedly(TOUCH_EVERY_SECONDS, touch, (path,), priority=10)

        def stop(self, consumer) -> None:
            if getattr(self, "timer_ref", None) is not None:
                self.timer_ref.cancel()
                self.timer_ref = None

    app.steps["consumer"].add(HeartbeatStep)
    app.conf.beat_scheduler = HeartbeatScheduler
    app.conf.hub_heartbeat_file = str(path)


class HeartbeatScheduler(PersistentScheduler):
    """Celery beat's scheduler, touching the heartbeat file (and noting beat as seen in
    Redis) each time its loop ticks."""

    def tick(self, *args: Any, **kwargs: Any):
        from hub.heartbeat import Pulse

        heartbeat = self.app.conf.get("hub_heartbeat_file")
        if heartbeat:
            pulse = self.__dict__.setdefault("_hub_pulse", Pulse(Path(heartbeat)))
            pulse.beat()
        seen = self.app.conf.get("hub_seen_settings")
        if seen is not None:
            from hub.operations.processes import mark_seen

            mark_seen(seen, "beat")  # throttled
        return super().tick(*args, **kwargs)


@signals.setup_logging.connect(weak=False)
def _keep_the_hubs_logging(**_kwargs: Any) -> None:
    """The hub configures logging itself (hub.logs: JSON, HUB_LOG_LEVEL). Celery skips its
    own setup when this signal has a receiver; without one, starting a worker — the one
    inside `hub serve` included — set the root logger to the worker's level (WARNING)
    and silenced the hub's INFO lines and access log."""


PING = "hub.ping"


@shared_task(name=PING, ignore_result=True)
def ping_task() -> None:
    """Does nothing: measures the queue itself (bench/deliver.py's baseline)."""


# --- enqueue after commit ------------------------------------------------------------

_PENDING = "hub_pending_tasks"


def enqueue_after_commit(session: Session, celery: Celery, name: str, *args: Any, **options: Any) -> None:
    """Send task ``name`` once ``session`` commits; forget it if it rolls back."""
    session.info.setdefault(_PENDING, []).append((celery, name, args, options))


def outermost_commit(session: Session) -> bool:
    """In ``after_commit``: True for the real commit. (SQLAlchemy 2.1 also calls it when
    a savepoint is released, while the outer transaction is still open.)"""
    return session.get_nested_transaction() is None


@event.listens_for(Session, "after_commit")
def _publish_pending(session: Session) -> None:
    if not outermost_commit(session):
        return
    for celery, name, args, options in session.info.pop(_PENDING, []):
        publish(celery, name, *args, **options)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:  # a rolled-back savepoint keeps the outer work
        session.info.pop(_PENDING, None)


def publish(celery: Celery, name: str, *args: Any, **options: Any) -> bool:
    """Send a task now; False (logged) when the broker is unreachable."""
    try:
        celery.send_task(name, args=args, **options)
        return True
    except Exception as exc:  # kombu raises many types; the relay resends what matters
        log.warning("publish failed; the relay will resend", task=name, error=type(exc).__name__)
        return False


# --- the embedded worker ------------------------------------------------------------


class EmbeddedWorker:
    """A Celery worker in a thread of the hub process, for the embedded default."""

    def __init__(self, runtime: Runtime, *, concurrency: int = 4) -> None:
        from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker

        self.runtime = runtime
        setup_app_for_worker(runtime.celery, runtime.settings.log_level, None)
        self._worker = TestWorkController(
            app=runtime.celery, concurrency=concurrency, pool="threads",
            hostname=f"embedded-{uuid.uuid4().hex[:6]}@hub",
            loglevel=runtime.settings.log_level, ready_callback=None, without_heartbeat=True, without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(target=self._worker.start, name="hub-embedded-worker", daemon=True)

    def start(self) -> EmbeddedWorker:
        self._thread.start()
        self._worker.ensure_started()
        return self

    def stop(self) -> None:
        # stop() closes the consumer; the thread notices within a poll and exits on its own
        self._worker.stop(in_sighandler=False)
        self._thread.join(0.5)


class EmbeddedBeat:
    """Celery beat in a thread of `hub serve`, beside the embedded worker: `make run` runs
    the periodic jobs too (reminders, channel renewal, template sync, the event log's
    retention), as `hub beat` does in production. Its schedule is kept in memory: a
    restart starts every interval afresh, which each job tolerates (they look for due
    work, they do not count runs)."""

    def __init__(self, runtime: Runtime) -> None:
        from celery.beat import EmbeddedService, Scheduler

        # a short loop interval, so stop() returns promptly
        self._service = EmbeddedService(runtime.celery, thread=True, scheduler_cls=Scheduler, max_interval=1.0)

    def start(self) -> EmbeddedBeat:
        self._service.start()
        return self

    def stop(self) -> None:
        self._service.stop()
