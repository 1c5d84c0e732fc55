"""Celery tasks of the messaging feature (thin: the logic is in delivery.py)."""

from __future__ import annotations

import uuid

from celery import shared_task

from hub.queue import DELIVER_MESSAGE


@shared_task(name=DELIVER_MESSAGE, bind=True, ignore_result=True, acks_late=True)
def deliver_message_task(self, message_id: str) -> None:
    from hub.messaging.delivery import deliver_message

    deliver_message(runtime=self.app.hub_runtime, message_id=uuid.UUID(message_id))
