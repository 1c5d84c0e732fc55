"""The state gauges, computed when ``/metrics`` is scraped, and the exposition itself.

Dead letters, outbox depth and age, queue depth, channels expiring, calendar sync lag
and the last backup are read from the database and Redis (``hub.operations``), not
counted in memory: every API pod reports the same, correct figure whatever process
did the work, and nothing is lost on a restart. The figures are cached for
``HUB_METRICS_CACHE_SECONDS`` so frequent scrapes (several Prometheus replicas, every
API pod) do not hammer the database.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hub.operations.service import StateFigures
    from hub.runtime import Runtime

log = structlog.get_logger("hub.metrics")


class StateCollector(Collector):
    """Gauges read from the database and Redis, cached for ``ttl`` seconds."""

    def __init__(self, runtime: Runtime, ttl: float) -> None:
        self.runtime, self.ttl = runtime, ttl
        self._lock = threading.Lock()
        self._figures: StateFigures | None = None
        self._at = 0.0

    def figures(self) -> StateFigures | None:
        from hub.operations.service import state_figures

        with self._lock:  # one scrape computes; concurrent ones wait for its figures
            if self._figures is None or time.monotonic() - self._at >= self.ttl:
                try:
                    self._figures = state_figures(self.runtime)
                except Exception as exc:  # a database outage: no state gauges, the counters still answer
                    log.warning("metrics: state figures unavailable", error=type(exc).__name__)
                    self._figures = None
                    return None
                self._at = time.monotonic()
            return self._figures

    def collect(self) -> Iterator[Metric]:
        figures = self.figures()
        ok = GaugeMetricFamily("hub_metrics_state_up", "1 when the state gauges could be read from the database")
        ok.add_metric([], 0 if figures is None else 1)
        yield ok
        if figures is None:
            return
        yield GaugeMetricFamily("hub_dead_letters", "Messages in the dead-letter state (retries exhausted)",
                                value=figures.dead_letters)
        yield GaugeMetricFamily("hub_outbox_depth", "Outbound messages not yet delivered (outbox entries)",
                                value=figures.outbox_depth)
        yield GaugeMetricFamily("hub_outbox_oldest_due_age_seconds",
                                "How long the oldest due, unclaimed outbox entry has waited",
                                value=figures.outbox_oldest_due_age)
        depth = GaugeMetricFamily("hub_queue_depth", "Tasks waiting in each Celery queue (Redis)", labels=["queue"])
        for queue, n in sorted(figures.queue_depth.items()):
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily("hub_calendar_channels_expiring",
                                "Active Google watch channels expiring within 24 hours",
                                value=figures.channels_expiring)
        yield GaugeMetricFamily("hub_calendar_sync_lag_seconds",
                                "Time since the least recently synced active calendar resource last synced",
                                value=figures.calendar_sync_lag)
        if figures.backup_last_success is not None:  # absent() in the alert catches "never"
            yield GaugeMetricFamily("hub_backup_last_success_timestamp_seconds",
                                    "Unix time of the newest successful backup (backup_runs)",
                                    value=figures.backup_last_success.timestamp())


def process_registry() -> CollectorRegistry:
    """This process's counters, or every process's when PROMETHEUS_MULTIPROC_DIR is set."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def state_registry(runtime: Runtime) -> CollectorRegistry:
    """The runtime's own registry of state gauges (one per runtime: tests run several)."""
    registry = runtime.caches.get("metrics_state_registry")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(runtime, runtime.settings.metrics_cache_seconds))
        runtime.caches["metrics_state_registry"] = registry
    return registry


def exposition(runtime: Runtime) -> bytes:
    """The Prometheus text format of the counters and the state gauges."""
    return generate_latest(process_registry()) + generate_latest(state_registry(runtime))
