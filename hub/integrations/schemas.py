"""The integration health report (``GET /v1/integrations/health``) and an on-demand check."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class HealthEventRead(BaseModel):
    at: datetime
    source: str = Field(description="what showed it: delivery, webhook, calendar_sync, check or integration")
    code: str | None = Field(None, description="the provider's or the hub's error code (failures)")
    message: str | None = Field(None, description="what went wrong (failures) or what the check saw")


class IntegrationHealthRead(BaseModel):
    kind: str
    status: str = Field(description="pending, active, inactive, error or needs_reauth")
    last_success: HealthEventRead | None = Field(None, description="the newest sign the integration works")
    last_failure: HealthEventRead | None = Field(None, description="the newest failure the hub recorded")


class IntegrationsHealthRead(BaseModel):
    integrations: list[IntegrationHealthRead]


class IntegrationCheckRead(BaseModel):
    kind: str
    ok: bool
    detail: str = Field(description="what the provider answered")
    checked_at: datetime
    duration_ms: float
