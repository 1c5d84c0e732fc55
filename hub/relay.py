"""The relay: hands stored webhook events to workers in batches, publishes outbox
entries that are due (first attempts the broker missed, retries, scheduled sends,
paced broadcast messages) and the expansion of broadcasts whose next chunk is due.
It runs as a thread in each API process (woken at once by new work) and as a beat
task; every step is safe to run concurrently (SKIP LOCKED / claims)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import structlog
from celery import shared_task

from hub.heartbeat import Pulse
from hub.operations.processes import mark_seen
from hub.queue import RELAY

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.relay")

BATCH_WINDOW_SECONDS = 0.05
FULL_PASS = 200  # a pass that handed on this many goes again at once


def relay_once(runtime: Runtime) -> int:
    """One pass over every relay job; returns how many items were handed on."""
    from hub.broadcasts.service import relay_due_broadcasts
    from hub.messaging.service import relay_outbox
    from hub.webhooks.service import dispatch_pending_events

    return (dispatch_pending_events(runtime=runtime) + relay_due_broadcasts(runtime=runtime)
            + relay_outbox(runtime=runtime))


@shared_task(name=RELAY, bind=True, ignore_result=True)
def relay_task(self) -> int:
    return relay_once(self.app.hub_runtime)


class RelayThread:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.interval = runtime.settings.relay_interval_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-relay", daemon=True)
        self._pulse = Pulse(runtime.settings.heartbeat_file)  # for `hub relay`'s liveness probe

    def wake(self) -> None:
        """New work was committed: run a pass now instead of at the next tick."""
        self._wake.set()

    def start(self) -> RelayThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.interval)
            if woken:
                # Let a burst gather: under load every webhook wakes the relay, and one
                # pass per webhook would cost more than the webhooks themselves.
                self._stop.wait(BATCH_WINDOW_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while relay_once(self.runtime) >= FULL_PASS and not self._stop.is_set():
                    pass  # a full batch: there is probably more right now
            except Exception:  # keep relaying after a database hiccup; it is logged
                log.exception("relay pass failed")
            # the loop turns (a database outage is readiness's business, not a reason to restart)
            self._pulse.beat()
            mark_seen(self.runtime.settings, "relay")  # Redis only, throttled
