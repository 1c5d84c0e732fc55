"""The platform's queues and health (scope platform:admin): what `hub stats` and `hub health` print."""

from __future__ import annotations

from fastapi import APIRouter

from hub.auth.deps import PlatformAdmin
from hub.db import utcnow
from hub.deps import HubRuntime
from hub.errors import AUTHENTICATED_ERRORS
from hub.operations import service as operations
from hub.operations.schemas import PlatformHealthRead, QueuesStatsRead

router = APIRouter(prefix="/v1/platform", tags=["platform"], responses=AUTHENTICATED_ERRORS)


@router.get("/queues/stats", response_model=QueuesStatsRead)
def queues_stats(runtime: HubRuntime, _principal: PlatformAdmin) -> QueuesStatsRead:
    """Per queue: waiting, in flight, scheduled, dead, the oldest due item's age and the
    items finished in the last 5 minutes. `outbox` is every tenant's outbound messages
    (the messages and outbox tables), `webhooks` the stored provider events; with Redis,
    each Celery queue (`hub`, `calendar`, `maintenance`) adds its length."""
    return QueuesStatsRead(at=utcnow(), queues=operations.queue_stats(runtime))


@router.get("/health", response_model=PlatformHealthRead)
def platform_health(runtime: HubRuntime, _principal: PlatformAdmin) -> PlatformHealthRead:
    """Every dependency (database, Redis) and every process (api, relay, worker, beat) seen
    in the last 2 minutes. Status `degraded` when a dependency is unreachable; the answer
    is still a 200 so the report can be read (readiness is `/health/ready`)."""
    return PlatformHealthRead.model_validate(operations.platform_health(runtime))
