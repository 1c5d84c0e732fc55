"""Which processes are alive, for ``GET /v1/platform/health``.

With Redis, each process (API, relay, worker, beat) notes itself in one Redis hash
``<prefix>processes`` at most every ``SEEN_EVERY_SECONDS`` (field ``kind|host:pid``,
value the time); the health report lists those seen within ``SEEN_WITHIN_SECONDS``.
Without Redis everything runs inside ``hub serve``, which reports its own services.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from hub.runtime import Runtime
    from hub.settings import Settings

log = structlog.get_logger("hub.operations")

SEEN_EVERY_SECONDS = 15.0
SEEN_WITHIN_SECONDS = 120.0
FORGET_AFTER_SECONDS = 86400.0
_last_seen: dict[str, float] = {}
_lock = threading.Lock()


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _key(settings: Settings) -> str:
    return f"{settings.redis_prefix}processes"


def mark_seen(settings: Settings, kind: str) -> None:
    """Note that a process of ``kind`` is alive (Redis only; throttled, never raises)."""
    if not settings.redis_url:
        return
    now = time.time()
    with _lock:
        throttle = f"{_key(settings)}|{kind}"
        if now - _last_seen.get(throttle, 0.0) < SEEN_EVERY_SECONDS:
            return
        _last_seen[throttle] = now
    import redis

    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.hset(_key(settings), f"{kind}|{instance_name()}", f"{now:.3f}")
        finally:
            client.close()
    except redis.RedisError as exc:  # the health report shows Redis unreachable anyway
        log.debug("could not note the process as seen", error=type(exc).__name__)


def seen_processes(runtime: Runtime, redis_client=None) -> list[dict]:
    """Processes seen recently: ``{kind, instance, last_seen_at, embedded}``, sorted."""
    settings = runtime.settings
    now = time.time()
    if not settings.redis_url:
        at = datetime.fromtimestamp(now, UTC)
        kinds = ["api"]
        if settings.use_embedded_worker:
            kinds.append("worker")
        if settings.use_relay_in_process:
            kinds.append("relay")
        if settings.use_embedded_beat:
            kinds.append("beat")
        return [{"kind": k, "instance": instance_name(), "last_seen_at": at, "embedded": True} for k in kinds]
    mark_seen(settings, "api")  # the process answering is alive
    rows = []
    stale = []
    for field, value in (redis_client.hgetall(_key(settings)) or {}).items():
        field = field.decode() if isinstance(field, bytes) else field
        kind, _, instance = field.partition("|")
        seen = float(value)
        if now - seen > FORGET_AFTER_SECONDS:
            stale.append(field)
        elif now - seen <= SEEN_WITHIN_SECONDS:
            rows.append({"kind": kind, "instance": instance, "embedded": False,
                         "last_seen_at": datetime.fromtimestamp(seen, UTC)})
    if stale:
        redis_client.hdel(_key(settings), *stale)
    return sorted(rows, key=lambda r: (r["kind"], r["instance"]))
