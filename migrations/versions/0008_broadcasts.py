"""broadcasts, recipients, send lanes; messages.broadcast_id, tenants.messages_per_second

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-23 14:16:34.522898
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import hub.db

revision: str = '0008'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('broadcasts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('template', sa.String(length=100), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('rate', sa.Double(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('expanded', sa.Integer(), nullable=False),
    sa.Column('send_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_expand_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expand_published_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('slots_until', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('canceled_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_broadcasts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcasts'))
    )
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broadcasts_next_expand_at'), ['next_expand_at'], unique=False)
        batch_op.create_index('ix_broadcasts_tenant_created', ['tenant_id', 'created_at'], unique=False)

    op.create_table('send_lanes',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('next_slot_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_send_lanes_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'channel', name=op.f('pk_send_lanes'))
    )
    op.create_table('broadcast_recipients',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('broadcast_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('message_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_broadcast_recipients_broadcast_id_broadcasts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_broadcast_recipients_contact_id_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_broadcast_recipients_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcast_recipients')),
    sa.UniqueConstraint('broadcast_id', 'address', name=op.f('uq_broadcast_recipients_broadcast_id_address')),
    sa.UniqueConstraint('broadcast_id', 'position', name=op.f('uq_broadcast_recipients_broadcast_id_position'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('broadcast_id', sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_broadcast_id'), ['broadcast_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_messages_broadcast_id_broadcasts'), 'broadcasts', ['broadcast_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('messages_per_second', sa.Double(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('messages_per_second')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_broadcast_id_broadcasts'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_messages_broadcast_id'))
        batch_op.drop_column('broadcast_id')

    op.drop_table('broadcast_recipients')
    op.drop_table('send_lanes')
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_index('ix_broadcasts_tenant_created')
        batch_op.drop_index(batch_op.f('ix_broadcasts_next_expand_at'))

    op.drop_table('broadcasts')
