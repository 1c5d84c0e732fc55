"""audit: keyed hash chain (HMAC, key id per row) and signed checkpoints of chain heads

- ``audit_events.key_id``: the master key whose derived chain key sealed the row
  (``hash = HMAC-SHA256(key, prev_hash || canonical row)``); NULL for rows written
  before this revision, whose hash stays plain SHA-256.
- ``audit_chain_heads.legacy_seq``: how many rows of the chain are such unkeyed rows
  (its length at upgrade). Every later row must be keyed, and each signed checkpoint
  carries this number, so turning keyed rows back into unkeyed ones shows.
- ``audit_checkpoints``: the newest Ed25519-signed checkpoint of each chain's head.

Why existing rows are kept as they are rather than re-sealed with the HMAC key:
re-sealing would need the master keys inside the migration, and it would launder the
old chain: a chain already rewritten with plain SHA-256 would come out sealed as if
genuine, and every hash anyone recorded of it would change. Kept as they are, old rows
prove exactly what they proved before (``hub audit verify`` checks them with SHA-256),
and the keyed rows after them link to their last hash.

Downgrade: the code before this revision checks plain SHA-256 only, so keyed rows are
re-hashed with it (each chain from its first keyed row), the checkpoints are dropped
and the two columns removed. Run ``hub audit verify`` first: the re-hash does not check
the HMACs it replaces.

Revision ID: 0021
Revises: 0023
Create Date: 2026-12-06 04:10:00
"""
import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0021'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.String(length=64), nullable=True))
    with op.batch_alter_table('audit_chain_heads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('legacy_seq', sa.BigInteger(), server_default='0', nullable=False))
    op.execute(sa.text('UPDATE audit_chain_heads SET legacy_seq = last_seq'))
    op.create_table('audit_checkpoints',
    sa.Column('chain', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('legacy_seq', sa.BigInteger(), nullable=False),
    sa.Column('signed_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('chain', name=op.f('pk_audit_checkpoints'))
    )


_events = sa.table(
    'audit_events',
    sa.column('id', sa.Uuid()), sa.column('chain', sa.String()), sa.column('seq', sa.BigInteger()),
    sa.column('tenant_id', sa.Uuid()), sa.column('occurred_at', hub.db.UTCDateTime()),
    sa.column('actor', sa.String()), sa.column('action', sa.String()), sa.column('target', sa.String()),
    sa.column('outcome', sa.String()), sa.column('ip', sa.String()), sa.column('request_id', sa.String()),
    sa.column('details', hub.db.JSONType), sa.column('prev_hash', sa.String()), sa.column('hash', sa.String()),
    sa.column('key_id', sa.String()),
)
_heads = sa.table('audit_chain_heads', sa.column('chain', sa.String()), sa.column('last_seq', sa.BigInteger()),
                  sa.column('last_hash', sa.String()))


def _plain_hash(prev_hash: str, row) -> str:
    """hub.audit.service.legacy_hash, frozen here as the code before 0021 computes it."""
    content = json.dumps(
        {"chain": row.chain, "seq": row.seq, "tenant_id": str(row.tenant_id) if row.tenant_id else None,
         "occurred_at": row.occurred_at.isoformat(timespec="microseconds"), "actor": row.actor,
         "action": row.action, "target": row.target, "outcome": row.outcome, "ip": row.ip,
         "request_id": row.request_id, "details": row.details},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
    ).encode()
    return hashlib.sha256(prev_hash.encode() + content).hexdigest()


def _rehash_keyed_rows() -> None:
    conn = op.get_bind()
    chains = conn.execute(sa.select(_events.c.chain).where(_events.c.key_id.is_not(None)).distinct()).scalars().all()
    for chain in chains:
        first = conn.execute(sa.select(sa.func.min(_events.c.seq))
                             .where(_events.c.chain == chain, _events.c.key_id.is_not(None))).scalar()
        prev_hash = conn.execute(sa.select(_events.c.hash)
                                 .where(_events.c.chain == chain, _events.c.seq == first - 1)).scalar() or "0" * 64
        rows = conn.execute(sa.select(_events).where(_events.c.chain == chain, _events.c.seq >= first)
                            .order_by(_events.c.seq)).all()
        for row in rows:
            new_hash = _plain_hash(prev_hash, row)
            conn.execute(sa.update(_events).where(_events.c.id == row.id)
                         .values(prev_hash=prev_hash, hash=new_hash))
            prev_hash = new_hash
        conn.execute(sa.update(_heads).where(_heads.c.chain == chain, _heads.c.last_seq == rows[-1].seq)
                     .values(last_hash=prev_hash))


def downgrade() -> None:
    _rehash_keyed_rows()
    op.drop_table('audit_checkpoints')
    with op.batch_alter_table('audit_chain_heads', schema=None) as batch_op:
        batch_op.drop_column('legacy_seq')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('key_id')
