"""contacts: the WhatsApp business-scoped user id (BSUID)

Meta names a WhatsApp user by a BSUID in every webhook, and a user who adopted a
username comes with no phone number at all. The contact keeps the BSUID, unique per
tenant, so such a user is one contact and one conversation, and can be answered.

Revision ID: 0022
Revises: 0018
Create Date: 2026-12-06 04:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('whatsapp_user_id', sa.String(length=160), nullable=True))
        batch_op.create_unique_constraint(op.f('uq_contacts_tenant_id_whatsapp_user_id'),
                                          ['tenant_id', 'whatsapp_user_id'])


def downgrade() -> None:
    # a contact known only by its BSUID keeps its row (messages point at it); the id goes
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_contacts_tenant_id_whatsapp_user_id'), type_='unique')
        batch_op.drop_column('whatsapp_user_id')
