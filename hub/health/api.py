"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from hub.deps import HubRuntime

router = APIRouter(tags=["health"])


@router.get("/health/live")
def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _check_database(runtime) -> str:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any driver error means "not ready"; the reason is shown
        return f"unreachable: {type(exc).__name__}"


def _check_broker(runtime) -> str:
    if not runtime.settings.redis_url:
        return "embedded"
    import redis

    try:
        client = redis.Redis.from_url(runtime.settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        return "ok"
    except redis.RedisError as exc:
        return f"unreachable: {type(exc).__name__}"


@router.get(
    "/health/ready",
    responses={503: {"description": "a dependency is unreachable; the failing part is named"}},
)
def ready(runtime: HubRuntime) -> JSONResponse:
    """The database is reachable, and the broker when one is configured."""
    checks = {"database": _check_database(runtime), "broker": _check_broker(runtime)}
    failing = [name for name, state in checks.items() if state not in ("ok", "embedded")]
    if failing:
        return JSONResponse(
            status_code=503,
            content={
                "error": {"code": "not_ready", "message": f"unreachable: {', '.join(failing)}"},
                "checks": checks,
            },
        )
    return JSONResponse({"status": "ok", "checks": checks})
