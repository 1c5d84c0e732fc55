"""Live notification of committed events to the streams open in this process.

A notice is tiny (tenant, event id, type): the stream reads the row itself, so what
it sends live is exactly what a replay sends. Without Redis the notices fan out in
process; with ``HUB_REDIS_URL`` every process publishes to a per-tenant channel
(``{prefix}events:{tenant_id}``) and each API process runs one listener that fans
what it hears out to its own streams, so a worker's event reaches any API pod.

Notices are hints, never the record: a lost one (Redis restarting) is caught up from
the database at the stream's next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine

from hub.errors import RateLimited

if TYPE_CHECKING:
    from hub.runtime import Runtime
    from hub.settings import Settings

log = structlog.get_logger("hub.events")

_CACHE_KEY = "event_bus"
# engine -> the bus of the runtime that owns it: publish_event only has a session
_BUSES: weakref.WeakKeyDictionary[Engine, EventBus] = weakref.WeakKeyDictionary()
_REDIS_TIMEOUT = 1.0  # seconds: a dead Redis must not hold a committing worker for long
_LISTENER_RETRY = 1.0


@dataclass(frozen=True)
class Notice:
    tenant_id: uuid.UUID
    event_id: int
    type: str


@dataclass(eq=False)
class Subscription:
    """One open stream's inbox: the ids of its tenant's newly committed events."""

    tenant_id: uuid.UUID
    loop: asyncio.AbstractEventLoop
    pending: list[int] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def _push(self, event_ids: list[int]) -> None:  # on the subscriber's loop
        self.pending.extend(event_ids)
        self.ready.set()

    async def wait(self, timeout: float) -> list[int] | None:
        """The ids notified since the last call, or None when ``timeout`` passed first."""
        if not self.pending:
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except TimeoutError:
                return None
        self.ready.clear()
        ids, self.pending = self.pending, []
        return ids


class EventBus:
    """The notification side of the event log for one runtime (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.redis_url = settings.redis_url
        self.channel_prefix = f"{settings.redis_prefix}events:"
        self.max_streams = settings.events_max_streams_per_tenant
        self._lock = threading.Lock()
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}
        self._streams: dict[uuid.UUID, int] = {}  # open (or opening) streams per tenant
        self._redis: Any = None  # sync client, publishing
        self._listener: asyncio.Task | None = None
        self._listener_ready: asyncio.Event | None = None
        self._listener_lock: asyncio.Lock | None = None

    # --- publishing (any thread, after commit) -------------------------------------

    def notify(self, notices: Iterable[Notice]) -> None:
        notices = list(notices)
        if not notices:
            return
        if self.redis_url:
            self._publish_redis(notices)
        else:
            self.fan_out(notices)

    def _publish_redis(self, notices: list[Notice]) -> None:
        try:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(self.redis_url, socket_connect_timeout=_REDIS_TIMEOUT,
                                                   socket_timeout=_REDIS_TIMEOUT)
            # one message per tenant and commit: a delivery batch commits many events at once
            by_tenant: dict[uuid.UUID, list[list[Any]]] = {}
            for n in notices:
                by_tenant.setdefault(n.tenant_id, []).append([n.event_id, n.type])
            pipe = self._redis.pipeline(transaction=False)
            for tenant_id, events in by_tenant.items():
                pipe.publish(f"{self.channel_prefix}{tenant_id}", json.dumps(events))
            pipe.execute()
        except Exception as exc:  # redis raises many types; the streams catch up from the database
            log.warning("event notice not published; streams catch up at their heartbeat",
                        error=type(exc).__name__)

    def fan_out(self, notices: Iterable[Notice]) -> None:
        """Hand each notice to the subscriptions of its tenant (on their own loops)."""
        by_tenant: dict[uuid.UUID, list[int]] = {}
        for n in notices:
            by_tenant.setdefault(n.tenant_id, []).append(n.event_id)
        with self._lock:
            targets = [(sub, ids) for tenant_id, ids in by_tenant.items()
                       for sub in self._subscribers.get(tenant_id, ())]
        for sub, ids in targets:
            try:
                sub.loop.call_soon_threadsafe(sub._push, ids)
            except RuntimeError:  # its loop is closed: the stream is gone
                self._discard(sub)

    # --- streams ------------------------------------------------------------------

    def reserve_stream(self, tenant_id: uuid.UUID) -> StreamSlot:
        """A slot for one more stream of the tenant, or RateLimited (429) beyond the limit."""
        with self._lock:
            if self._streams.get(tenant_id, 0) >= self.max_streams:
                raise RateLimited(f"this tenant already has {self.max_streams} event streams open here; "
                                  "close one or retry later", code="too_many_streams", headers={"Retry-After": "5"})
            self._streams[tenant_id] = self._streams.get(tenant_id, 0) + 1
        return StreamSlot(self, tenant_id)

    def _release_stream(self, tenant_id: uuid.UUID) -> None:
        with self._lock:
            left = self._streams.get(tenant_id, 0) - 1
            if left > 0:
                self._streams[tenant_id] = left
            else:
                self._streams.pop(tenant_id, None)

    def open_streams(self, tenant_id: uuid.UUID) -> int:
        with self._lock:
            return self._streams.get(tenant_id, 0)

    async def subscribe(self, tenant_id: uuid.UUID) -> Subscription:
        """Start receiving the tenant's notices; returns once they are flowing, so an
        event committed after this returns is never missed."""
        sub = Subscription(tenant_id, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(tenant_id, set()).add(sub)
        if self.redis_url:
            await self._ensure_listener()
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        self._discard(sub)
        with self._lock:
            idle = not self._subscribers
        if idle and self._listener is not None:
            await self._stop_listener()

    def _discard(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.tenant_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.tenant_id]

    # --- the Redis listener (one per process, while any stream is open) ------------

    async def _ensure_listener(self) -> None:
        if self._listener_lock is None:
            self._listener_lock = asyncio.Lock()
        async with self._listener_lock:
            if self._listener is None or self._listener.done():
                self._listener_ready = asyncio.Event()
                self._listener = asyncio.create_task(self._listen(self._listener_ready), name="hub-events-listener")
            ready = self._listener_ready
        try:
            await asyncio.wait_for(ready.wait(), 2 * _REDIS_TIMEOUT + 1)
        except TimeoutError:
            log.warning("event listener not subscribed yet; the stream catches up at its heartbeat")

    async def _stop_listener(self) -> None:
        assert self._listener_lock is not None
        async with self._listener_lock:
            with self._lock:
                if self._subscribers:  # a stream arrived meanwhile
                    return
            task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # it is being stopped
                await task

    async def _listen(self, ready: asyncio.Event) -> None:
        import redis.asyncio as aioredis

        pattern = f"{self.channel_prefix}*"
        while True:
            client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=_REDIS_TIMEOUT)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                # Redis has taken the subscription once it confirms it; from then on
                # nothing published is missed
                while (msg := await pubsub.get_message(timeout=_REDIS_TIMEOUT)) is None \
                        or msg["type"] != "psubscribe":
                    pass
                ready.set()
                async for msg in pubsub.listen():
                    if msg["type"] == "pmessage":
                        self.fan_out(self._parse(msg["channel"], msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: retry; streams catch up from the database
                log.warning("event listener lost Redis; retrying", error=type(exc).__name__)
                await asyncio.sleep(_LISTENER_RETRY)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # noqa: S110 - closing a broken connection
                    pass

    def _parse(self, channel: bytes | str, data: bytes | str) -> list[Notice]:
        """A published message: ``[[event id, type], …]`` of the channel's tenant."""
        try:
            channel = channel.decode() if isinstance(channel, bytes) else channel
            tenant_id = uuid.UUID(channel.removeprefix(self.channel_prefix))
            return [Notice(tenant_id, int(event_id), str(type)) for event_id, type in json.loads(data)]
        except (ValueError, KeyError, TypeError):
            log.warning("malformed event notice ignored", channel=str(channel))
            return []

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None


class StreamSlot:
    """One reserved stream of a tenant; ``release`` is idempotent (called from the
    stream's ``finally`` and from the response's background task, whichever runs)."""

    def __init__(self, bus: EventBus, tenant_id: uuid.UUID) -> None:
        self._bus, self._tenant_id, self._released = bus, tenant_id, False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._bus._release_stream(self._tenant_id)


def event_bus(runtime: Runtime) -> EventBus:
    """The runtime's bus, created (and found by its engine from then on) on first use."""
    bus = runtime.caches.get(_CACHE_KEY)
    if bus is None:
        bus = runtime.caches[_CACHE_KEY] = EventBus(runtime.settings)
        _BUSES[runtime.engine] = bus
    return bus


def bus_for_engine(engine: Engine) -> EventBus | None:
    return _BUSES.get(engine)


def close_event_bus(runtime: Runtime) -> None:
    bus = runtime.caches.pop(_CACHE_KEY, None)
    if bus is not None:
        bus.close()
