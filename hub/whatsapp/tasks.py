"""Celery tasks of the WhatsApp feature (thin: the logic is in service.py)."""

from __future__ import annotations

from celery import shared_task

from hub.queue import WHATSAPP_SYNC_TEMPLATES


@shared_task(name=WHATSAPP_SYNC_TEMPLATES, bind=True, ignore_result=True)
def sync_templates_task(self) -> dict[str, int]:
    from hub.whatsapp.service import sync_every_account

    return sync_every_account(runtime=self.app.hub_runtime)
