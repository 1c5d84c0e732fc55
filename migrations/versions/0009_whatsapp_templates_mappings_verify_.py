"""whatsapp templates, mappings, verify tokens, message templates

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 14:23:42.469927
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import hub.db

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('whatsapp_template_mappings',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('template', sa.String(length=100), nullable=False),
    sa.Column('whatsapp_name', sa.String(length=512), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('parameters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_whatsapp_template_mappings_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_template_mappings')),
    sa.UniqueConstraint('tenant_id', 'template', name=op.f('uq_whatsapp_template_mappings_tenant_id_template'))
    )
    op.create_table('whatsapp_templates',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('integration_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('provider_template_id', sa.String(length=64), nullable=True),
    sa.Column('parameter_counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('components', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('synced_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['integration_id'], ['integrations.id'], name=op.f('fk_whatsapp_templates_integration_id_integrations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_whatsapp_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_templates')),
    sa.UniqueConstraint('integration_id', 'name', 'language', name=op.f('uq_whatsapp_templates_integration_id_name_language'))
    )
    with op.batch_alter_table('whatsapp_templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_templates_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('whatsapp_verify_tokens',
    sa.Column('integration_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['integration_id'], ['integrations.id'], name=op.f('fk_whatsapp_verify_tokens_integration_id_integrations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_whatsapp_verify_tokens_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('integration_id', name=op.f('pk_whatsapp_verify_tokens'))
    )
    with op.batch_alter_table('whatsapp_verify_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_verify_tokens_token_hash'), ['token_hash'], unique=False)

    op.create_table('whatsapp_message_templates',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('parameters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_whatsapp_message_templates_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_whatsapp_message_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_whatsapp_message_templates'))
    )
    with op.batch_alter_table('whatsapp_message_templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_message_templates_tenant_id'), ['tenant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_message_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_templates_tenant_id'))

    op.drop_table('whatsapp_message_templates')
    with op.batch_alter_table('whatsapp_verify_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_verify_tokens_token_hash'))

    op.drop_table('whatsapp_verify_tokens')
    with op.batch_alter_table('whatsapp_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_templates_tenant_id'))

    op.drop_table('whatsapp_templates')
    op.drop_table('whatsapp_template_mappings')
