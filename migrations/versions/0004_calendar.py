"""calendar: google connect states, resources, appointments, busy blocks, sync log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:07:46.654704
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import hub.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('calendar_resources',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('resource_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('calendar_id', sa.String(length=255), nullable=False),
    sa.Column('calendar_time_zone', sa.String(length=64), nullable=True),
    sa.Column('channel_status', sa.String(length=16), nullable=False),
    sa.Column('channel_id', sa.String(length=64), nullable=True),
    sa.Column('channel_resource_id', sa.String(length=255), nullable=True),
    sa.Column('channel_expires_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('channel_error', sa.Text(), nullable=True),
    sa.Column('sync_token', sa.Text(), nullable=True),
    sa.Column('sync_wanted', sa.BigInteger(), nullable=False),
    sa.Column('sync_done', sa.BigInteger(), nullable=False),
    sa.Column('sync_lease_until', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sync_generation', sa.Integer(), nullable=False),
    sa.Column('last_synced_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_sync_error', sa.Text(), nullable=True),
    sa.Column('booking_seq', sa.BigInteger(), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("channel_status IN ('none', 'starting', 'active', 'error')", name=op.f('ck_calendar_resources_channel_status')),
    sa.CheckConstraint("kind IN ('professional', 'room', 'technician')", name=op.f('ck_calendar_resources_kind')),
    sa.CheckConstraint("status IN ('active', 'unmapped')", name=op.f('ck_calendar_resources_status')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_calendar_resources_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_resources')),
    sa.UniqueConstraint('channel_id', name=op.f('uq_calendar_resources_channel_id')),
    sa.UniqueConstraint('tenant_id', 'resource_id', name=op.f('uq_calendar_resources_tenant_id_resource_id'))
    )
    with op.batch_alter_table('calendar_resources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calendar_resources_channel_expires_at'), ['channel_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calendar_resources_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('google_connect_states',
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('code_verifier_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('consumed_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_google_connect_states_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('nonce', name=op.f('pk_google_connect_states'))
    )
    with op.batch_alter_table('google_connect_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_google_connect_states_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_google_connect_states_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('appointments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('resource_pk', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('start_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('location', sa.String(length=500), nullable=True),
    sa.Column('contact_name', sa.String(length=200), nullable=True),
    sa.Column('contact_phone', sa.String(length=32), nullable=True),
    sa.Column('contact_email', sa.String(length=320), nullable=True),
    sa.Column('remind_before_minutes', sa.Integer(), nullable=True),
    sa.Column('remind_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminder_channel', sa.String(length=16), nullable=True),
    sa.Column('reminder_message_id', sa.Uuid(), nullable=True),
    sa.Column('reminder_error', sa.Text(), nullable=True),
    sa.Column('cancelled_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('changed_by', sa.String(length=16), nullable=False),
    sa.Column('changed_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('calendar_id', sa.String(length=255), nullable=False),
    sa.Column('google_event_id', sa.String(length=64), nullable=False),
    sa.Column('google_etag', sa.String(length=128), nullable=True),
    sa.Column('google_updated', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('google_content_hash', sa.String(length=64), nullable=True),
    sa.Column('google_synced_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('synced_version', sa.Integer(), nullable=False),
    sa.Column('sync_state', sa.String(length=16), nullable=False),
    sa.Column('last_sync_error', sa.Text(), nullable=True),
    sa.Column('push_lease_until', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('confirmed', 'cancelled')", name=op.f('ck_appointments_status')),
    sa.CheckConstraint("sync_state IN ('pending', 'synced', 'failed')", name=op.f('ck_appointments_sync_state')),
    sa.CheckConstraint('end_at > start_at', name=op.f('ck_appointments_ends_after_start')),
    sa.ForeignKeyConstraint(['resource_pk'], ['calendar_resources.id'], name=op.f('fk_appointments_resource_pk_calendar_resources')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_appointments_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointments'))
    )
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.create_index('ix_appointments_due_reminders', ['reminded_at', 'remind_at'], unique=False)
        batch_op.create_index('ix_appointments_resource_start', ['resource_pk', 'start_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_appointments_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('calendar_busy_blocks',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('resource_pk', sa.Uuid(), nullable=False),
    sa.Column('google_event_id', sa.String(length=1024), nullable=False),
    sa.Column('start_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('google_updated', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['resource_pk'], ['calendar_resources.id'], name=op.f('fk_calendar_busy_blocks_resource_pk_calendar_resources'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_calendar_busy_blocks_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_busy_blocks')),
    sa.UniqueConstraint('google_event_id', 'resource_pk', name=op.f('uq_calendar_busy_blocks_google_event_id_resource_pk'))
    )
    with op.batch_alter_table('calendar_busy_blocks', schema=None) as batch_op:
        batch_op.create_index('ix_calendar_busy_blocks_resource_start', ['resource_pk', 'start_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calendar_busy_blocks_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('calendar_sync_log',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('resource_pk', sa.Uuid(), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('google_event_id', sa.String(length=1024), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['resource_pk'], ['calendar_resources.id'], name=op.f('fk_calendar_sync_log_resource_pk_calendar_resources'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_calendar_sync_log_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_sync_log'))
    )
    with op.batch_alter_table('calendar_sync_log', schema=None) as batch_op:
        batch_op.create_index('ix_calendar_sync_log_resource_created', ['resource_pk', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calendar_sync_log_tenant_id'), ['tenant_id'], unique=False)

def downgrade() -> None:
    with op.batch_alter_table('calendar_sync_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calendar_sync_log_tenant_id'))
        batch_op.drop_index('ix_calendar_sync_log_resource_created')

    op.drop_table('calendar_sync_log')
    with op.batch_alter_table('calendar_busy_blocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calendar_busy_blocks_tenant_id'))
        batch_op.drop_index('ix_calendar_busy_blocks_resource_start')

    op.drop_table('calendar_busy_blocks')
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_appointments_tenant_id'))
        batch_op.drop_index('ix_appointments_resource_start')
        batch_op.drop_index('ix_appointments_due_reminders')

    op.drop_table('appointments')
    with op.batch_alter_table('google_connect_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_google_connect_states_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_google_connect_states_expires_at'))

    op.drop_table('google_connect_states')
    with op.batch_alter_table('calendar_resources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calendar_resources_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_calendar_resources_channel_expires_at'))

    op.drop_table('calendar_resources')
