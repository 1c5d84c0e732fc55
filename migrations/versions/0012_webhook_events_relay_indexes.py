"""webhook events: partial indexes for the relay's two queues

The relay read pending events through an index on (handled_at, dispatched_at) and an
OR, then sorted every match: with workers behind, each pass grew with the backlog.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 21:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNDISPATCHED = sa.text("handled_at IS NULL AND dispatched_at IS NULL")
_UNHANDLED = sa.text("handled_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_pending')
        batch_op.create_index('ix_webhook_events_undispatched', ['received_at'], unique=False,
                              postgresql_where=_UNDISPATCHED, sqlite_where=_UNDISPATCHED)
        batch_op.create_index('ix_webhook_events_unhandled', ['dispatched_at'], unique=False,
                              postgresql_where=_UNHANDLED, sqlite_where=_UNHANDLED)


def downgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_unhandled')
        batch_op.drop_index('ix_webhook_events_undispatched')
        batch_op.create_index('ix_webhook_events_pending', ['handled_at', 'dispatched_at'], unique=False)
