"""auto-replies, business hours and their de-duplication

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 14:14:34.908070
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hub.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('auto_reply_rules',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('keywords', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_auto_reply_rules_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_reply_rules'))
    )
    with op.batch_alter_table('auto_reply_rules', schema=None) as batch_op:
        batch_op.create_index('ix_auto_reply_rules_tenant_created', ['tenant_id', 'created_at'], unique=False)

    op.create_table('business_hours',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('schedule', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('holidays', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('after_hours_reply', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_business_hours_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_business_hours'))
    )
    op.create_table('auto_replies_sent',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('conversation_id', sa.Uuid(), nullable=False),
    sa.Column('rule_key', sa.String(length=64), nullable=False),
    sa.Column('window_key', sa.String(length=64), nullable=False),
    sa.Column('sent_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_auto_replies_sent_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_auto_replies_sent_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_replies_sent')),
    sa.UniqueConstraint('conversation_id', 'rule_key', 'window_key', name=op.f('uq_auto_replies_sent_conversation_id_rule_key_window_key'))
    )
    with op.batch_alter_table('auto_replies_sent', schema=None) as batch_op:
        batch_op.create_index('ix_auto_replies_sent_latest', ['conversation_id', 'rule_key', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_auto_replies_sent_tenant_id'), ['tenant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('auto_replies_sent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auto_replies_sent_tenant_id'))
        batch_op.drop_index('ix_auto_replies_sent_latest')

    op.drop_table('auto_replies_sent')
    op.drop_table('business_hours')
    with op.batch_alter_table('auto_reply_rules', schema=None) as batch_op:
        batch_op.drop_index('ix_auto_reply_rules_tenant_created')

    op.drop_table('auto_reply_rules')
