"""whatsapp_cloud: the Graph API version is the platform's setting, not a copy per tenant

Each install stored the then-default Graph version (v21.0, which Meta retires on
2027-01-21) in the integration's config, so every tenant would have kept calling it.
The version is now HUB_WHATSAPP_GRAPH_VERSION, laid over the stored config when a
connector is built; this drops the stored copies. Downgrade writes v21.0 back, the
version the code before this revision stored.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 04:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_integrations = sa.table(
    "integrations", sa.column("id", sa.Uuid()), sa.column("kind", sa.String()),
    sa.column("config", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
)


def _rewrite(change) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_integrations.c.id, _integrations.c.config)
                        .where(_integrations.c.kind == "whatsapp_cloud")).all()
    for row_id, config in rows:
        config = dict(config or {})
        if change(config):
            bind.execute(_integrations.update().where(_integrations.c.id == row_id).values(config=config))


def upgrade() -> None:
    _rewrite(lambda config: config.pop("api_version", None) is not None)


def downgrade() -> None:
    def put_back(config: dict) -> bool:
        config.setdefault("api_version", "v21.0")
        return True

    _rewrite(put_back)
