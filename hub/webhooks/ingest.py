"""The webhook hot path on PostgreSQL, on the event loop.

``service.receive_webhook`` is the same flow with a synchronous connection (the
SQLite path). Here nothing leaves the event loop when the route and the secret are
cached: the connector verifies and parses in memory, and the events of concurrent
webhooks are stored together by one ``INSERT … ON CONFLICT DO NOTHING`` on an async
psycopg pool in autocommit (``EventStore``: one durable commit per batch, awaited
before the 200). A cache miss — the first webhook of a number in this
process, or a changed secret — reads through the synchronous path in a thread.

Measured (bench/ingest.py): a thread-pool hop plus a pooled SQLAlchemy connection
cost several times what the rest of the request costs; see the README for figures.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import structlog
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

from connectors.base import Connector, WebhookRequest
from hub.db import dump_json, new_id, utcnow
from hub.errors import BadRequest, Forbidden, NotFound
from hub.webhooks import service
from hub.webhooks.routes import RouteTarget, resolve, route_cache

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.webhooks")

# One statement stores a whole batch of events from concurrent webhooks (group
# commit: one round trip and one WAL flush for many requests). The batch travels as
# one JSON document: psycopg dumps a list-of-arrays parameter element by element in
# Python, which cost this route a fifth of its CPU; json.dumps is C. The guard
# (EXISTS …) stores an event only while its integration still holds the sealed secret
# the signature was verified with, so a cached secret is never trusted once the token
# changed (see service.receive_webhook). RETURNING names the rows written; a row not
# returned was a duplicate or met a changed secret, told apart afterwards.
_INSERT_BATCH = """
INSERT INTO webhook_events (id, kind, provider_event_id, type, tenant_id, integration_id, payload,
                            received_at, attempts)
SELECT e.id, e.kind, e.provider_event_id, e.type, e.tenant_id, e.integration_id, e.payload, e.received_at, 0
FROM jsonb_to_recordset(%s::jsonb)
     AS e(id uuid, kind text, provider_event_id text, type text, tenant_id uuid, integration_id uuid,
          payload jsonb, received_at timestamptz, field text, sealed text)
WHERE EXISTS (SELECT 1 FROM integrations i
              WHERE i.id = e.integration_id AND i.tenant_id = e.tenant_id AND i.credentials ->> e.field = e.sealed)
ON CONFLICT (integration_id, provider_event_id) DO NOTHING
RETURNING id
"""
_EXISTS = "SELECT 1 FROM webhook_events WHERE integration_id = %s AND provider_event_id = %s"


def _as_json(row: dict) -> dict:
    return {**row, "id": str(row["id"]), "tenant_id": str(row["tenant_id"]),
            "integration_id": str(row["integration_id"]), "received_at": row["received_at"].isoformat()}


class EventStore:
    """Writes events for the webhooks of this event loop in batches.

    A webhook hands its rows to the queue and waits for its batch to commit; a writer
    takes everything queued at that moment, so under load a batch holds the requests
    that arrived during the previous write, and alone a webhook is written at once.
    """

    WRITERS = 4  # batches in flight at once
    MAX_BATCH = 256

    def __init__(self, database_url: str) -> None:
        self._conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool: AsyncConnectionPool | None = None
        self._queue: asyncio.Queue[tuple[list[dict], asyncio.Future]] | None = None
        self._writers: list[asyncio.Task] = []
        self._opening = asyncio.Lock()

    async def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    pool = AsyncConnectionPool(self._conninfo, min_size=2, max_size=self.WRITERS + 4, open=False,
                                               kwargs={"autocommit": True}, name="hub-webhooks")
                    await pool.open(wait=True, timeout=10)
                    self._queue = asyncio.Queue()
                    self._writers = [asyncio.create_task(self._write_batches()) for _ in range(self.WRITERS)]
                    self._pool = pool
        return self._pool

    async def insert(self, rows: list[dict]) -> set:
        """Store ``rows``; the ids of those written (others: duplicates or a changed secret)."""
        await self.pool()
        assert self._queue is not None
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((rows, done))
        return await done

    async def exists(self, integration_id: uuid.UUID, provider_event_id: str) -> bool:
        async with (await self.pool()).connection() as conn:
            return await (await conn.execute(_EXISTS, (integration_id, provider_event_id))).fetchone() is not None

    async def _write_batches(self) -> None:
        assert self._queue is not None and self._pool is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self.MAX_BATCH:
                batch.append(self._queue.get_nowait())
            rows = [row for rows, _ in batch for row in rows]
            try:
                async with self._pool.connection() as conn:
                    written = {r[0] for r in await (await conn.execute(
                        _INSERT_BATCH, [Jsonb([_as_json(row) for row in rows], dumps=dump_json)])).fetchall()}
            except Exception as exc:  # every waiter of the batch gets the failure (a 500 to the provider)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(written)

    async def close(self) -> None:
        for task in self._writers:
            task.cancel()
        self._writers = []
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def event_store(runtime: Runtime) -> EventStore:
    store = runtime.caches.get("webhook_event_store")
    if store is None:
        store = runtime.caches.setdefault("webhook_event_store",
                                          EventStore(runtime.settings.effective_database_url))
    return store


async def close_event_store(runtime: Runtime) -> None:
    store = runtime.caches.pop("webhook_event_store", None)
    if store is not None:
        await store.close()


def _resolve_sync(runtime: Runtime, kind: str, route_keys: list[str]) -> RouteTarget | None:
    with runtime.engine.connect() as conn:
        return resolve(runtime, conn, kind=kind, route_keys=route_keys)


def _cached_target(runtime: Runtime, kind: str, route_keys: list[str]) -> tuple[bool, RouteTarget | None]:
    """(every key answered from the cache, the target)."""
    cache = route_cache(runtime)
    for key in route_keys:
        hit, target = cache.get((kind, key))
        if not hit:
            return False, None
        if target is not None:
            return True, target
    return True, None


def _verify_sync(runtime: Runtime, connector: type[Connector], target: RouteTarget, request: WebhookRequest,
                 refresh: bool) -> service.OpenedSecret | None:
    with runtime.engine.connect() as conn:
        return service.verified_secret(runtime, conn, connector=connector, target=target, request=request,
                                       refresh=refresh)


async def receive_webhook_async(*, runtime: Runtime, kind: str, request: WebhookRequest) -> service.Receipt:
    """Route, verify and store one provider webhook (PostgreSQL); NotFound / Forbidden otherwise."""
    connector = service.connector_class(runtime, kind)
    route_keys = service.route_keys_of(connector, request)
    if connector.routes_per_event and len(route_keys) > 1:
        # a batch spanning several numbers (rare): the synchronous path routes each event
        return await run_in_threadpool(service.receive_webhook, runtime=runtime, kind=kind, request=request)
    cached, target = _cached_target(runtime, kind, route_keys) if route_keys else (True, None)
    if not cached:
        target = await run_in_threadpool(_resolve_sync, runtime, kind, route_keys)
    if target is None:
        service.log_unknown_route(kind, route_keys)
        raise NotFound("no integration receives this webhook", code="unknown_route")

    opened = service.secret_cache(runtime).get(target.integration_id)
    if opened is None or not connector.verify(request, opened.secret):
        opened = await run_in_threadpool(_verify_sync, runtime, connector, target, request, False)
    if opened is None:
        service.log_rejected(kind, target)
        raise Forbidden("the webhook's signature does not verify", code="invalid_signature")
    try:
        events = connector.parse(request)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"unreadable {kind} webhook: {type(exc).__name__}", code="malformed_webhook") from None

    store = event_store(runtime)
    now = utcnow()
    field = connector.webhook_secret_field or ""
    rows = [{"id": new_id(), "kind": kind, "provider_event_id": event.provider_event_id[:255], "type": event.type,
             "tenant_id": target.tenant_id, "integration_id": target.integration_id, "payload": event.data,
             "received_at": now, "field": field, "sealed": opened.sealed} for event in events]
    stored = duplicates = 0
    for attempt in (1, 2):
        written = await store.insert(rows) if rows else set()
        missing = [row for row in rows if row["id"] not in written]
        stored += len(rows) - len(missing)
        rows = [row for row in missing if not await store.exists(target.integration_id, row["provider_event_id"])]
        duplicates += len(missing) - len(rows)
        if not rows:
            break
        # the secret changed after it was cached: verify again with the stored one
        service.secret_cache(runtime).forget(target.integration_id)
        opened = (await run_in_threadpool(_verify_sync, runtime, connector, target, request, True)
                  if attempt == 1 else None)
        if opened is None:
            service.log_rejected(kind, target, reason="secret changed")
            raise Forbidden("the webhook's signature does not verify", code="invalid_signature")
        rows = [{**row, "sealed": opened.sealed} for row in rows]
    return service.Receipt(tenant_id=target.tenant_id, stored=stored, duplicates=duplicates)
