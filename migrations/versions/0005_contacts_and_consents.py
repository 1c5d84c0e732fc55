"""contacts and their consent per channel

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:11:43.438224
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('contacts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('erased_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_contacts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('tenant_id', 'email', name=op.f('uq_contacts_tenant_id_email')),
    sa.UniqueConstraint('tenant_id', 'phone', name=op.f('uq_contacts_tenant_id_phone'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index('ix_contacts_tenant_created', ['tenant_id', 'created_at'], unique=False)

    op.create_table('contact_consents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('changed_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_contact_consents_contact_id_contacts'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_contact_consents_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_consents')),
    sa.UniqueConstraint('contact_id', 'channel', name=op.f('uq_contact_consents_contact_id_channel'))
    )
    with op.batch_alter_table('contact_consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_consents_tenant_id'), ['tenant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('contact_consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_consents_tenant_id'))

    op.drop_table('contact_consents')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_tenant_created')

    op.drop_table('contacts')
