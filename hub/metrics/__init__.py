"""Prometheus metrics: the counters and histograms processes increment as work happens.

State (dead letters, outbox depth and age, queue depth, channels expiring, sync lag,
the last backup) is not counted here: ``hub.metrics.state`` reads it from the
database and Redis when ``/metrics`` is scraped, so every API pod reports the same
figure whatever process did the work.

Labels are low-cardinality on purpose: connector kinds, channels, outcomes, reasons,
route templates — never a tenant id, a phone number or a message id.

With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts), prometheus-client
keeps each process's values in files there and ``/metrics`` sums them: set it when
``hub serve --workers N`` runs several uvicorn processes, or a prefork Celery worker.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

# seconds: from a fast in-memory answer to a provider that times out
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LAG = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)

HTTP_REQUEST_DURATION = Histogram(
    "hub_http_request_duration_seconds", "API requests by route template, method and status class",
    ["method", "route", "status"], buckets=_LATENCY)
WEBHOOKS_RECEIVED = Counter(
    "hub_webhooks_received_total", "Provider webhook requests received, by connector kind", ["kind"])
WEBHOOKS_REJECTED = Counter(
    "hub_webhooks_rejected_total", "Provider webhook requests refused (nothing stored), by kind and reason",
    ["kind", "reason"])
WEBHOOK_DISPATCH_LAG = Histogram(
    "hub_webhook_dispatch_lag_seconds", "From a webhook event's receipt to its hand-over to a worker",
    buckets=_LAG)
DELIVERIES = Counter(
    "hub_deliveries_total", "Outbound delivery attempts by channel and outcome", ["channel", "outcome"])
PROVIDER_CALL_DURATION = Histogram(
    "hub_provider_call_duration_seconds", "Calls to a provider by connector kind and operation",
    ["provider", "operation"], buckets=_LATENCY)
PROVIDER_ERRORS = Counter(
    "hub_provider_errors_total", "Provider calls that failed, by connector kind and operation",
    ["provider", "operation"])
TOKEN_REFRESH = Counter(
    "hub_token_refresh_total", "OAuth access token refreshes by provider and outcome (refreshed, revoked, failed)",
    ["provider", "outcome"])


_RECEIVED_BY_KIND: dict[str, Any] = {}


def webhook_received(kind: str) -> None:
    """The webhook lane's one figure per request: the labelled child is kept per kind
    (``labels()`` costs several times the increment itself)."""
    child = _RECEIVED_BY_KIND.get(kind)
    if child is None:
        child = _RECEIVED_BY_KIND[kind] = WEBHOOKS_RECEIVED.labels(kind)
    child.inc()


def status_class(status: int) -> str:
    """``2xx`` … ``5xx``: a label with five values, not one per status code."""
    return f"{status // 100}xx"


def observe_provider_call(provider: str, operation: str, seconds: float, *, failed: bool) -> None:
    """One provider call: its duration, and an error when it failed."""
    PROVIDER_CALL_DURATION.labels(provider, operation).observe(seconds)
    if failed:
        PROVIDER_ERRORS.labels(provider, operation).inc()


def prepare_multiprocess_dir() -> None:
    """Before a process starts its children: create PROMETHEUS_MULTIPROC_DIR and empty it.
    Files left by a previous run (a container restart keeps its emptyDir) would be summed
    into this run's counters."""
    import os
    from pathlib import Path

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def serve_process_metrics(port: int) -> None:
    """`hub worker`, `hub relay`, `hub beat`: this process's counters (and, with
    PROMETHEUS_MULTIPROC_DIR, its children's) on their own port, for a PodMonitor. The
    state gauges are the API's business: every API pod reports them."""
    from prometheus_client import start_http_server

    from hub.metrics.state import process_registry

    start_http_server(port, registry=process_registry())
