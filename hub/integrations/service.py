"""A tenant's integration health: what the hub already records (deliveries, verified
webhooks, calendar syncs, checks, the integration's last error), newest first, and
the provider check run on demand."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import ProviderError
from hub.audit import service as audit
from hub.audit.models import AuditEvent
from hub.calendar.models import CalendarResource
from hub.db import utcnow
from hub.errors import HubError
from hub.messaging.models import Message, MessageAttempt
from hub.metrics import observe_provider_call
from hub.webhooks.models import WebhookEvent
from tenants import service as tenants
from tenants.models import Integration

if TYPE_CHECKING:
    from hub.runtime import Runtime

# deliveries older than this are not searched (the messages' tenant/created index bounds the scan)
DELIVERY_LOOKBACK = timedelta(days=7)
SUCCESS_OUTCOMES = ("sent", "recovered")
FAILURE_OUTCOMES = ("retry", "failed", "dead", "lost")
CHECKED = "integration.checked"


def _newest(*events: dict[str, Any] | None) -> dict[str, Any] | None:
    found = [e for e in events if e is not None and e["at"] is not None]
    return max(found, key=lambda e: e["at"]) if found else None


def _attempt(session: Session, integration: Integration, outcomes: tuple[str, ...]) -> dict[str, Any] | None:
    row = session.execute(
        select(MessageAttempt.finished_at, MessageAttempt.error_code, MessageAttempt.error_message)
        .join(Message, Message.id == MessageAttempt.message_id)
        .where(Message.tenant_id == integration.tenant_id, Message.integration_id == integration.id,
               Message.created_at >= utcnow() - DELIVERY_LOOKBACK, MessageAttempt.outcome.in_(outcomes),
               MessageAttempt.finished_at.is_not(None))
        .order_by(MessageAttempt.finished_at.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return {"at": row.finished_at, "source": "delivery", "code": row.error_code, "message": row.error_message}


def _last_check(session: Session, integration: Integration, outcome: str) -> dict[str, Any] | None:
    row = session.execute(
        select(AuditEvent.occurred_at, AuditEvent.details)
        .where(AuditEvent.tenant_id == integration.tenant_id, AuditEvent.action == CHECKED,
               AuditEvent.target == integration.kind, AuditEvent.outcome == outcome)
        .order_by(AuditEvent.occurred_at.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return {"at": row.occurred_at, "source": "check", "code": (row.details or {}).get("code"),
            "message": (row.details or {}).get("detail")}


def integration_health(*, session: Session, integration: Integration) -> dict[str, Any]:
    """One integration's status, newest success and newest failure."""
    webhook_at = session.scalar(select(func.max(WebhookEvent.received_at))
                                .where(WebhookEvent.tenant_id == integration.tenant_id,
                                       WebhookEvent.integration_id == integration.id))
    synced_at = None
    if integration.kind == "google_calendar":
        synced_at = session.scalar(select(func.max(CalendarResource.last_synced_at))
                                   .where(CalendarResource.tenant_id == integration.tenant_id))
    recorded = None
    if integration.last_error_at is not None:
        recorded = {"at": integration.last_error_at, "source": "integration", "code": None,
                    "message": integration.last_error}
    return {
        "kind": integration.kind,
        "status": integration.status,
        "last_success": _newest(
            _attempt(session, integration, SUCCESS_OUTCOMES),
            {"at": webhook_at, "source": "webhook"},
            {"at": synced_at, "source": "calendar_sync"},
            _last_check(session, integration, "success")),
        "last_failure": _newest(
            _attempt(session, integration, FAILURE_OUTCOMES), recorded,
            _last_check(session, integration, "failure")),
    }


def integrations_health(*, session: Session, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every integration of the tenant, with its health."""
    return [integration_health(session=session, integration=i)
            for i in tenants.list_integrations(session=session, tenant_id=tenant_id)]


def _connector(runtime: Runtime, session: Session, integration: Integration):
    if integration.kind == "google_calendar":
        from hub.calendar.tokens import calendar_connector

        return calendar_connector(runtime, session=session, integration=integration)
    from hub.providers import connector_for

    return connector_for(runtime, session, integration, timeout=runtime.settings.delivery_timeout_seconds)


def check_integration(*, session: Session, runtime: Runtime, tenant_id: uuid.UUID, kind: str, actor: str,
                      ip: str | None, request_id: str | None) -> dict[str, Any]:
    """Ask the provider now whether the integration works; the outcome is audited, and a
    failure becomes the integration's ``last_error`` (its status is left alone: one failed
    check may be the provider's hiccup, and deliveries retry on their own)."""
    integration = tenants.get_integration(session=session, tenant_id=tenant_id, kind=kind)
    began = time.perf_counter()
    code: str | None = None
    connector = None
    try:
        connector = _connector(runtime, session, integration)
        health = connector.check()
        ok, detail = health.ok, health.detail
        code = None if ok else "provider_check_failed"
    except ProviderError as exc:
        ok, detail, code = False, exc.message, exc.code or "provider_error"
    except HubError as exc:  # e.g. needs_reauth, credentials that no longer open
        ok, detail, code = False, exc.message, exc.code
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()
    seconds = time.perf_counter() - began
    observe_provider_call(kind, "check", seconds, failed=not ok)
    now = utcnow()
    if not ok:
        integration.last_error = f"check failed: {detail}"
        integration.last_error_at = now
    audit.record(session=session, tenant_id=tenant_id, actor=actor, action=CHECKED, target=kind,
                 outcome="success" if ok else "failure", ip=ip, request_id=request_id,
                 details={"detail": detail, **({"code": code} if code else {})})
    session.flush()
    return {"kind": kind, "ok": ok, "detail": detail, "checked_at": now, "duration_ms": round(seconds * 1000, 1)}
