"""google calendar: the sync window, per-tenant OAuth clients, connect flows bound to a browser

- ``calendar_resources.sync_window_end``: the end of the window the latest full sync
  read (recurring events are read as instances within it).

Revision ID: 0018
Revises: 0012
Create Date: 2026-12-06 01:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0018'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('calendar_resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sync_window_end', hub.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calendar_resources', schema=None) as batch_op:
        batch_op.drop_column('sync_window_end')
