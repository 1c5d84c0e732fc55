"""Celery tasks of the webhook feature (thin: the logic is in service.py)."""

from __future__ import annotations

import uuid

from celery import shared_task

from hub.queue import HANDLE_EVENTS


@shared_task(name=HANDLE_EVENTS, bind=True, ignore_result=True, acks_late=True)
def handle_events_task(self, event_ids: list[str]) -> None:
    from hub.webhooks.service import handle_events

    handle_events(runtime=self.app.hub_runtime, event_ids=[uuid.UUID(i) for i in event_ids])
