"""The route table: ``(kind, route_key) -> integration -> tenant``.

Lookups are on the webhook hot path, so they are cached per process for a short
time; a route removed elsewhere stops resolving within ``ROUTE_CACHE_SECONDS``
(a stale hit still fails signature verification, because the secret went with it).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.errors import Conflict
from hub.webhooks.models import Route
from tenants.models import Integration

if TYPE_CHECKING:
    from hub.runtime import Runtime

# Routes change rarely; a stale hit fails verification (the secret went with the route).
ROUTE_CACHE_SECONDS = 300.0
MISS_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class RouteTarget:
    tenant_id: uuid.UUID
    integration_id: uuid.UUID
    route_key: str


def claim_route(session: Session, *, kind: str, route_key: str, integration: Integration) -> Route:
    """Give ``route_key`` to ``integration``; 409 if another integration holds it."""
    existing = session.scalar(select(Route).where(Route.kind == kind, Route.route_key == route_key))
    if existing is not None:
        if existing.integration_id == integration.id:
            return existing
        raise Conflict(f"{route_key} already belongs to another integration", code="route_taken")
    route = Route(kind=kind, route_key=route_key, integration_id=integration.id, tenant_id=integration.tenant_id)
    try:
        with session.begin_nested():
            session.add(route)
            session.flush()
    except IntegrityError:  # claimed concurrently by someone else
        raise Conflict(f"{route_key} already belongs to another integration", code="route_taken") from None
    return route


def release_routes(session: Session, *, integration_id: uuid.UUID, route_keys: list[str] | None = None) -> int:
    """Remove an integration's routes (all of them, or just ``route_keys``)."""
    stmt = delete(Route).where(Route.integration_id == integration_id)
    if route_keys is not None:
        stmt = stmt.where(Route.route_key.in_(route_keys))
    return session.execute(stmt).rowcount or 0


def routes_of(session: Session, *, integration_id: uuid.UUID) -> list[Route]:
    return list(session.scalars(select(Route).where(Route.integration_id == integration_id)
                                .order_by(Route.route_key)))


class RouteCache:
    """Per-process cache of ``(kind, route_key) -> RouteTarget | None``."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, RouteTarget | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[bool, RouteTarget | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: tuple[str, str], target: RouteTarget | None) -> None:
        ttl = ROUTE_CACHE_SECONDS if target else MISS_CACHE_SECONDS
        with self._lock:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + ttl, target)

    def forget(self, kind: str, route_key: str) -> None:
        self._entries.pop((kind, route_key), None)


def route_cache(runtime: Runtime) -> RouteCache:
    return runtime.caches.setdefault("routes", RouteCache())


def resolve(runtime: Runtime, session: Session, *, kind: str, route_keys: list[str]) -> RouteTarget | None:
    """The first of ``route_keys`` that names a route of ``kind``, or None."""
    cache = route_cache(runtime)
    for route_key in route_keys:
        hit, target = cache.get((kind, route_key))
        if not hit:
            row = session.execute(
                select(Route.tenant_id, Route.integration_id).where(Route.kind == kind, Route.route_key == route_key)
            ).first()
            target = RouteTarget(row.tenant_id, row.integration_id, route_key) if row else None
            cache.put((kind, route_key), target)
        if target is not None:
            return target
    return None
