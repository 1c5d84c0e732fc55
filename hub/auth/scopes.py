"""The scopes an access token can carry."""

from __future__ import annotations

PLATFORM_ADMIN = "platform:admin"
TENANT_ADMIN = "tenant:admin"

TENANT_SCOPES: tuple[str, ...] = (
    TENANT_ADMIN,
    "integrations:read",
    "integrations:write",
    "messages:read",
    "messages:write",
    "contacts:read",
    "contacts:write",
    "calendar:read",
    "calendar:write",
    "audit:read",
)
PLATFORM_SCOPES: tuple[str, ...] = (PLATFORM_ADMIN, "audit:read")
ALL_SCOPES = frozenset(TENANT_SCOPES + PLATFORM_SCOPES)


def parse_scope(raw: str | None) -> list[str]:
    """OAuth's space-separated scope string, de-duplicated, order kept."""
    return list(dict.fromkeys((raw or "").split()))
