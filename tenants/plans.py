"""Plans name a tenant's limits. Per-tenant overrides live on the tenant row."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    requests_per_minute: int
    messages_per_second: float


PLANS: dict[str, Plan] = {
    "free": Plan("free", requests_per_minute=60, messages_per_second=1),
    "standard": Plan("standard", requests_per_minute=600, messages_per_second=5),
    "enterprise": Plan("enterprise", requests_per_minute=6000, messages_per_second=30),
}
DEFAULT_PLAN = "standard"
