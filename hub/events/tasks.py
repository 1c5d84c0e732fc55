"""Celery tasks of the events feature (thin: the logic is in service.py)."""

from __future__ import annotations

from celery import shared_task

from hub.queue import EVENTS_SWEEP


@shared_task(name=EVENTS_SWEEP, bind=True, ignore_result=True)
def sweep_events_task(self) -> int:
    from hub.events.service import sweep_old_events

    return sweep_old_events(runtime=self.app.hub_runtime)
