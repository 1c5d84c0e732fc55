"""Queue statistics and platform health as the API (and ``hub stats`` / ``hub health``) show them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class QueueStatsRead(BaseModel):
    name: str = Field(description="outbox (outbound messages), webhooks (stored provider events) or a Celery queue")
    source: str = Field(description="database or redis")
    waiting: int = Field(description="due now, not yet taken by a worker")
    in_flight: int | None = Field(None, description="taken by a worker, not finished (None: Redis cannot tell)")
    scheduled: int | None = Field(None, description="waiting for a later time (a scheduled send, a retry backoff)")
    dead: int | None = Field(None, description="given up on (out of attempts)")
    oldest_age_seconds: float | None = Field(None, description="how long the oldest due item has waited")
    throughput_5m: int | None = Field(None, description="items finished in the last 5 minutes")


class QueuesStatsRead(BaseModel):
    at: datetime
    queues: list[QueueStatsRead]


class DependencyRead(BaseModel):
    name: str
    status: str = Field(description="ok, embedded (no Redis: in-process) or unreachable: <reason>")


class ProcessRead(BaseModel):
    kind: str = Field(description="api, relay, worker or beat")
    instance: str = Field(description="host and process id")
    last_seen_at: datetime
    embedded: bool = Field(description="runs inside this `hub serve` (no Redis)")


class PlatformHealthRead(BaseModel):
    status: str = Field(description="ok when every dependency is reachable, else degraded")
    at: datetime
    dependencies: list[DependencyRead]
    processes: list[ProcessRead] = Field(description="every process seen in the last 2 minutes")
