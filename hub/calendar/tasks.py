"""Celery tasks of the calendar feature (thin: the logic is in flows/ and reminders.py).

Provider calls that fail transiently (Google 5xx/429, network, a token refresh that
timed out on its lock) are retried with exponential backoff; permanent failures are
recorded on the row they concern and not retried.
"""

from __future__ import annotations

import uuid

from celery import shared_task

from hub.queue import (
    CALENDAR_RECONCILE,
    CALENDAR_REMINDERS,
    CALENDAR_RENEW_CHANNELS,
    CALENDAR_RESUME,
    CALENDAR_STOP_CHANNEL,
    CALENDAR_SYNC_RESOURCE,
    PUSH_APPOINTMENT,
)

MAX_RETRIES = 8


def _backoff(retries: int) -> float:
    return float(min(2 ** retries, 300))


def _retrying(task, call):
    from connectors.base import TransientProviderError
    from hub.errors import Unavailable

    try:
        return call()
    except (TransientProviderError, Unavailable) as exc:
        raise task.retry(exc=exc, countdown=_backoff(task.request.retries), max_retries=MAX_RETRIES) from exc


@shared_task(name=PUSH_APPOINTMENT, bind=True, ignore_result=True, acks_late=True)
def push_appointment_task(self, appointment_id: str) -> str:
    from hub.calendar.flows import push_appointment

    return _retrying(self, lambda: push_appointment(runtime=self.app.hub_runtime,
                                                    appointment_id=uuid.UUID(appointment_id)))


@shared_task(name=CALENDAR_SYNC_RESOURCE, bind=True, ignore_result=True, acks_late=True)
def sync_resource_task(self, resource_pk: str) -> str:
    from hub.calendar.flows import sync_resource

    return _retrying(self, lambda: sync_resource(runtime=self.app.hub_runtime, resource_pk=uuid.UUID(resource_pk)))


@shared_task(name=CALENDAR_STOP_CHANNEL, bind=True, ignore_result=True, acks_late=True)
def stop_channel_task(self, tenant_id: str, channel_id: str, channel_resource_id: str) -> bool:
    from hub.calendar.flows import stop_channel

    return _retrying(self, lambda: stop_channel(runtime=self.app.hub_runtime, tenant_id=uuid.UUID(tenant_id),
                                                channel_id=channel_id, channel_resource_id=channel_resource_id))


@shared_task(name=CALENDAR_RESUME, bind=True, ignore_result=True, acks_late=True)
def resume_tenant_task(self, tenant_id: str) -> int:
    from hub.calendar.flows import resume_tenant

    return resume_tenant(runtime=self.app.hub_runtime, tenant_id=uuid.UUID(tenant_id))


@shared_task(name=CALENDAR_RENEW_CHANNELS, bind=True, ignore_result=True)
def renew_channels_task(self) -> int:
    from hub.calendar.flows import renew_channels

    return renew_channels(runtime=self.app.hub_runtime)


@shared_task(name=CALENDAR_RECONCILE, bind=True, ignore_result=True)
def reconcile_task(self) -> int:
    from hub.calendar.flows import reconcile

    return reconcile(runtime=self.app.hub_runtime)


@shared_task(name=CALENDAR_REMINDERS, bind=True, ignore_result=True)
def send_due_reminders_task(self) -> int:
    from hub.calendar.reminders import send_due_reminders

    return send_due_reminders(runtime=self.app.hub_runtime)


# --- push notifications through the generic webhook ingress ----------------------------------
