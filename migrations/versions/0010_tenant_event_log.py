"""tenant event log for the real-time stream

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 14:17:19.918823
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import hub.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tenant_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tenant_events_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant_events')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('tenant_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tenant_events_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_tenant_events_tenant_id_id', ['tenant_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tenant_events', schema=None) as batch_op:
        batch_op.drop_index('ix_tenant_events_tenant_id_id')
        batch_op.drop_index(batch_op.f('ix_tenant_events_created_at'))

    op.drop_table('tenant_events')
