"""Celery tasks of the messaging feature (thin: the logic is in delivery.py)."""

from __future__ import annotations

import uuid

from celery import shared_task

from hub.queue import DELIVER_MESSAGE, DELIVER_MESSAGES


@shared_task(name=DELIVER_MESSAGE, bind=True, ignore_result=True, acks_late=True)
def deliver_message_task(self, message_id: str) -> None:
    from hub.messaging.delivery import deliver_message

    deliver_message(runtime=self.app.hub_runtime, message_id=uuid.UUID(message_id))


@shared_task(name=DELIVER_MESSAGES, bind=True, ignore_result=True, acks_late=True)
def deliver_messages_task(self, message_ids: list[str]) -> None:
    from hub.messaging.delivery import deliver_messages

    deliver_messages(runtime=self.app.hub_runtime, message_ids=[uuid.UUID(m) for m in message_ids])
