"""One open event stream: subscribe, replay from the log, then follow it live.

Order matters for "no gap, no duplicate": the stream subscribes first (so nothing
committed from then on goes unnoticed), then reads the log after the client's last
id, then sends whatever it is notified of, reading those rows by id. Every sent id is
remembered, so an event both replayed and notified is sent once. A notice names its
id, so an event whose transaction committed after a higher id's (ids are taken at
insert, not at commit) is still sent when it commits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from starlette.responses import StreamingResponse

from hub.db import utcnow
from hub.events import service
from hub.events.bus import StreamSlot, Subscription, event_bus
from hub.events.ids import EventIds, event_ids
from hub.events.models import TenantEvent

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.events")

BATCH = 500
# ids remembered to drop duplicates; an out-of-order commit lands within far fewer
_SENT_MEMORY = 10_000


@dataclass(frozen=True)
class StreamRequest:
    tenant_id: uuid.UUID
    types: tuple[str, ...] | None
    after: int  # the log sequence of the client's Last-Event-ID, or the newest when the stream was asked for
    expires_at: datetime | None  # the token's expiry: the stream ends then


def format_event(row: TenantEvent, ids: EventIds) -> str:
    """One event in the SSE wire format, with its opaque id."""
    public_id = ids.public(row.tenant_id, row.id)
    data = json.dumps(service.event_envelope(row, public_id), separators=(",", ":"), ensure_ascii=False)
    return f"id: {public_id}\nevent: {row.type}\ndata: {data}\n\n"


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that always watches for the client leaving, so an idle
    stream is cleaned up at once rather than at its next write."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with anyio.create_task_group() as group:

            async def stream_then_stop() -> None:
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream_then_stop)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
        if self.background is not None:
            await self.background()


class _Cursor:
    """What this stream has sent: the highest id, and the recent ids (dedupe)."""

    def __init__(self, after: int) -> None:
        self.high = after
        self.sent: set[int] = set()

    def fresh(self, rows: list[TenantEvent]) -> list[TenantEvent]:
        out = [r for r in rows if r.id not in self.sent]
        for r in out:
            self.sent.add(r.id)
            self.high = max(self.high, r.id)
        if len(self.sent) > _SENT_MEMORY:
            floor = self.high - _SENT_MEMORY // 2
            self.sent = {i for i in self.sent if i > floor}
        return out


async def event_stream(runtime: Runtime, req: StreamRequest, slot: StreamSlot) -> AsyncIterator[str]:
    """The body of one stream (an async iterator of SSE text)."""
    settings = runtime.settings
    bus = event_bus(runtime)
    public_ids = event_ids(runtime)
    sub: Subscription | None = None

    def read(after: int, also: Collection[int] = ()) -> list[TenantEvent]:
        with runtime.session_factory() as session:
            return service.events_since(session=session, tenant_id=req.tenant_id, after=after, also=also,
                                        types=req.types, limit=BATCH)

    try:
        sub = await bus.subscribe(req.tenant_id)
        yield f"retry: {settings.events_retry_ms}\n\n"
        cursor = _Cursor(req.after)
        # replay (or, without Last-Event-ID, anything committed since the route looked)
        while rows := cursor.fresh(await anyio.to_thread.run_sync(read, cursor.high)):
            for row in rows:
                yield format_event(row, public_ids)
            if len(rows) < BATCH:
                break
        while True:
            left = (req.expires_at - utcnow()).total_seconds() if req.expires_at else None
            if left is not None and left <= 0:
                yield ": token expired; reconnect with a new token and Last-Event-ID\n\n"
                return
            wait = settings.events_heartbeat_seconds if left is None else min(left, settings.events_heartbeat_seconds)
            ids = await sub.wait(wait)
            if ids is None and left is not None and left <= wait:
                continue  # the token ran out: say so above
            # a heartbeat (ids None) also reads the log: a notice lost with Redis is caught up
            also = tuple(ids or ())
            sent_any = False
            while rows := cursor.fresh(await anyio.to_thread.run_sync(read, cursor.high, also)):
                sent_any = True
                for row in rows:
                    yield format_event(row, public_ids)
                if len(rows) < BATCH:
                    break
                also = ()
            if not sent_any and ids is None:
                yield ": heartbeat\n\n"
    finally:
        if sub is not None:
            with anyio.CancelScope(shield=True):
                await bus.unsubscribe(sub)
        slot.release()
