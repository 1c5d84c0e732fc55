"""tenants: an `erasing` status while a tenant's integrations are uninstalled

Erasing a tenant uninstalls each integration at its provider before deleting its data;
a provider that fails leaves the tenant `erasing` (its clients no longer work) until
the erase is repeated.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 02:05:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_tenants_status'), type_='check')
        batch_op.create_check_constraint('status', sa.text("status IN ('active', 'suspended', 'erasing', 'erased')"))


def downgrade() -> None:
    # a tenant caught half-erased goes back to suspended: its clients stay refused
    op.execute(sa.text("UPDATE tenants SET status = 'suspended' WHERE status = 'erasing'"))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_tenants_status'), type_='check')
        batch_op.create_check_constraint('status', sa.text("status IN ('active', 'suspended', 'erased')"))
