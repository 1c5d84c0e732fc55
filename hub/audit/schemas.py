"""API shapes of the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class AuditCheckpointRead(BaseModel):
    """A signed checkpoint of an audit chain's head: save the body as it is and give the
    file to `hub audit verify --checkpoint`."""

    v: int = Field(description="format of the checkpoint")
    chain: str = Field(description="the chain: a tenant id, or `platform`")
    seq: int = Field(description="number of rows the chain had")
    hash: str = Field(description="keyed hash of its last row")
    legacy_seq: int = Field(description="rows written before the chain was keyed (plain SHA-256)")
    signed_at: str = Field(description="when it was signed (ISO 8601, UTC; signed as written)")
    key_id: str = Field(description="id of the master key the signing key derives from")
    signature: str = Field(description="Ed25519 signature (base64url) of the other fields as canonical JSON")
    public_key: str | None = Field(description="raw Ed25519 public key (base64url) that checks the signature")


class AuditPage(BaseModel):
    data: list[AuditEventRead]
    next_cursor: str | None = None
