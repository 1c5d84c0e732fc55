"""webhook events: de-duplicate per integration, not across the hub

Events were unique per (kind, provider_event_id): tenant A, signing with its own
secret, could store an event under the id of B's real one first, and B's callback was
then dropped as a duplicate. The key is now the integration that verified the event.

Downgrade restores the old key; where two integrations stored the same provider id,
only the earliest row of each pair can stay under it, so the later ones are removed.

Revision ID: 0019
Revises: 0013
Create Date: 2026-12-06 01:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_webhook_events_kind_provider_event_id', type_='unique')
        batch_op.create_unique_constraint('uq_webhook_events_integration_id_provider_event_id',
                                          ['integration_id', 'provider_event_id'])


def downgrade() -> None:
    op.execute(sa.text(
        "DELETE FROM webhook_events WHERE id IN ("
        " SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY kind, provider_event_id"
        "                 ORDER BY received_at, id) AS n FROM webhook_events) ranked WHERE n > 1)"
    ))
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_webhook_events_integration_id_provider_event_id', type_='unique')
        batch_op.create_unique_constraint('uq_webhook_events_kind_provider_event_id',
                                          ['kind', 'provider_event_id'])
