"""``GET /metrics``: the Prometheus text format (``hub.metrics``, ``hub.metrics.state``).

Open by default — the chart's NetworkPolicy lets only the ingress controller's and
Prometheus' namespaces reach the API port, and the figures carry no tenant data.
Set ``HUB_METRICS_TOKEN`` to require ``Authorization: Bearer <token>`` (a ServiceMonitor
sends it with ``bearerTokenSecret``) where the port is reachable from elsewhere.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from hub.errors import HubError
from hub.metrics.state import exposition
from hub.operations.processes import mark_seen

router = APIRouter(tags=["health"])


class MetricsUnauthorized(HubError):
    status_code, code = 401, "unauthorized"


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    runtime = request.app.state.runtime
    token = runtime.settings.metrics_token.get_secret_value()
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise MetricsUnauthorized("GET /metrics needs Authorization: Bearer <HUB_METRICS_TOKEN>",
                                      headers={"WWW-Authenticate": "Bearer"})
    mark_seen(runtime.settings, "api")
    body = await run_in_threadpool(exposition, runtime)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
