"""Celery tasks of the audit log (thin: the logic is in checkpoints.py)."""

from __future__ import annotations

from celery import shared_task

from hub.queue import AUDIT_CHECKPOINT


@shared_task(name=AUDIT_CHECKPOINT, bind=True, ignore_result=True)
def checkpoint_task(self) -> int:
    """Sign a checkpoint of every chain that moved; copy them out of the database."""
    from hub.audit.checkpoints import export, take_checkpoints
    from hub.db import transaction

    runtime = self.app.hub_runtime
    with transaction(runtime.session_factory) as session:
        made = take_checkpoints(session=session)
    export(made, runtime.settings.audit_checkpoint_file)  # only once they are committed
    return len(made)
