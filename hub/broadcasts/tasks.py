"""Celery tasks of broadcasts (thin: the logic is in service.py)."""

from __future__ import annotations

import uuid

from celery import shared_task

from hub.queue import EXPAND_BROADCAST


@shared_task(name=EXPAND_BROADCAST, bind=True, ignore_result=True, acks_late=True)
def expand_broadcast_task(self, broadcast_id: str) -> None:
    from hub.broadcasts.service import expand_broadcast

    expand_broadcast(runtime=self.app.hub_runtime, broadcast_id=uuid.UUID(broadcast_id))
