"""google calendar: the sync window, per-tenant OAuth clients, connect flows bound to a browser

- ``calendar_resources.sync_window_end``: the end of the window the latest full sync
  read (recurring events are read as instances within it).
- ``google_oauth_clients``: a clinic's own OAuth client (secret sealed).
- ``google_connect_states``: the consent URL, the account the tenant named, the client
  the flow uses, and the browser the flow is bound to (when opened, the digest of its
  cookie).

Revision ID: 0018
Revises: 0020
Create Date: 2026-12-06 01:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0018'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('calendar_resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sync_window_end', hub.db.UTCDateTime(timezone=True), nullable=True))

    op.create_table('google_oauth_clients',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('client_secret_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_google_oauth_clients_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_google_oauth_clients'))
    )

    with op.batch_alter_table('google_connect_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authorization_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('account_hint', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('oauth_client_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('opened_at', hub.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('browser_digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('google_connect_states', schema=None) as batch_op:
        batch_op.drop_column('browser_digest')
        batch_op.drop_column('opened_at')
        batch_op.drop_column('oauth_client_id')
        batch_op.drop_column('account_hint')
        batch_op.drop_column('authorization_url')

    op.drop_table('google_oauth_clients')

    with op.batch_alter_table('calendar_resources', schema=None) as batch_op:
        batch_op.drop_column('sync_window_end')
