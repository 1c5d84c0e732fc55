"""API shapes of the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    seq: int
    tenant_id: uuid.UUID | None
    occurred_at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    ip: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    data: list[AuditEventRead]
    next_cursor: str | None = None
