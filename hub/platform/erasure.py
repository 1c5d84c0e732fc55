"""Erasing a tenant for good, and resumably.

1. The tenant is marked ``erasing``: its clients stop working at once.
2. Every integration is uninstalled the way ``DELETE /v1/integrations/{kind}`` does it
   (numbers released and subaccounts closed, watch channels stopped, grants revoked),
   each in its own transaction. A provider that fails leaves its integration in place
   and the erasure incomplete: the report names what is left, and repeating the erase
   continues from there (nothing is uninstalled twice).
3. Once nothing is left at any provider, one transaction deletes every row the tenant
   owns — contacts, conversations, messages, appointments, stored provider payloads,
   the event log, templates, clients … every table with a ``tenant_id`` (and the rows
   that cascade from them) — destroys its data key (crypto-shredding whatever sealed
   value a backup may still hold), and keeps only a pseudonymous tenant row so the id
   is never reused.

The audit trail stays: it is the platform's security record (who did what, from which
address), holds no message content and no customer's name, number or address, and is
hash-chained, so deleting from it would be indistinguishable from tampering.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Table, delete
from sqlalchemy.orm import Session

from hub.audit import service as audit
from hub.db import transaction
from hub.errors import HubError
from hub.integrations.installers import Actor, installer_for
from hub.runtime import Runtime
from hub.tables import metadata
from tenants import service as tenants
from tenants.models import TenantStatus
from tenants.repository import IntegrationRepository

log = structlog.get_logger("hub.platform.erasure")

# Tables a tenant's erasure keeps: the pseudonymous tenant row, its destroyed data key
# (the vault's record that it is gone) and the audit trail with its head and checkpoint
# (see the module docstring).
KEPT_TABLES = frozenset({"tenants", "data_keys", "audit_events", "audit_chain_heads", "audit_checkpoints"})


@dataclass
class ErasureReport:
    tenant_id: uuid.UUID
    complete: bool
    uninstalled: list[str] = field(default_factory=list)
    left: list[dict[str, str]] = field(default_factory=list)  # [{"kind", "error"}]
    rows_deleted: int = 0


def tenant_tables() -> list[Table]:
    """Every table holding a tenant's rows by ``tenant_id``, dependents first."""
    return [table for table in reversed(metadata.sorted_tables)
            if table.name not in KEPT_TABLES and "tenant_id" in table.c]


def erase_tenant(*, runtime: Runtime, tenant_ref: str, actor: Actor) -> ErasureReport:
    """Erase the tenant named by ``tenant_ref`` (id or slug); see the module docstring."""
    with transaction(runtime.session_factory) as session:
        tenant = tenants.find_tenant(session=session, ref=tenant_ref)
        tenant_id = tenant.id
        if tenant.status != TenantStatus.ERASING:
            tenant.status = TenantStatus.ERASING
            audit.record(session=session, tenant_id=None, actor=actor.name, action="tenant.erasure_started",
                         target=str(tenant_id), ip=actor.ip, request_id=actor.request_id)
        kinds = [integration.kind for integration in IntegrationRepository(session, tenant_id).list()]

    report = ErasureReport(tenant_id, complete=False)
    for kind in kinds:
        try:
            with transaction(runtime.session_factory) as session:
                # not locked: an uninstall that fails records its state in a transaction of its own
                integration = IntegrationRepository(session, tenant_id).get(kind)
                if integration is not None:
                    installer_for(runtime, kind).uninstall(session=session, runtime=runtime, integration=integration,
                                                           actor=actor)
            report.uninstalled.append(kind)
        except HubError as exc:
            log.warning("tenant erasure: an integration could not be uninstalled", tenant_id=str(tenant_id),
                        kind=kind, code=exc.code)
            report.left.append({"kind": kind, "error": exc.message})
    if report.left:
        with transaction(runtime.session_factory) as session:
            audit.record(session=session, tenant_id=None, actor=actor.name, action="tenant.erasure_incomplete",
                         target=str(tenant_id), outcome="failure", ip=actor.ip, request_id=actor.request_id,
                         details={"uninstalled": report.uninstalled, "left": report.left})
        return report

    with transaction(runtime.session_factory) as session:
        report.rows_deleted = delete_tenant_rows(session, tenant_id)
        tenants.erase_tenant(session=session, vault=runtime.vault, tenant_id=tenant_id)  # shred, pseudonymize
        audit.record(session=session, tenant_id=None, actor=actor.name, action="tenant.erased",
                     target=str(tenant_id), ip=actor.ip, request_id=actor.request_id,
                     details={"uninstalled": report.uninstalled, "rows_deleted": report.rows_deleted})
    report.complete = True
    return report


def delete_tenant_rows(session: Session, tenant_id: uuid.UUID) -> int:
    """Delete every row the tenant owns (its tables in dependency order); how many."""
    total = 0
    for table in tenant_tables():
        total += session.execute(delete(table).where(table.c.tenant_id == tenant_id)).rowcount or 0
    return total

