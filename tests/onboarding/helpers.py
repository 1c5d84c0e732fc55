"""Helpers of the onboarding tests: a live hub with the sandbox Twilio, a tenant, and
ways to read what the sandbox holds."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx

from hub.providers import platform_twilio
from tests.support import tenant_headers

PROVISION = {"country": "BR", "area_code": "11", "channels": ["sms", "whatsapp"]}


@dataclass
class Tenant:
    id: uuid.UUID
    headers: dict[str, str]


class Onboarding:
    """A live hub, its sandbox Twilio, and the calls a tenant makes."""

    def __init__(self, live_hub) -> None:
        self.hub = live_hub
        self.runtime = live_hub.runtime
        self.http: httpx.Client = live_hub.http
        self.twilio = live_hub.sandbox.twilio

    def tenant(self, slug: str = "clinica") -> Tenant:
        tenant_id, headers = tenant_headers(self.http, self.runtime, slug)
        return Tenant(tenant_id, headers)

    def provision(self, tenant: Tenant, body: dict | None = None, key: str | None = None) -> httpx.Response:
        headers = dict(tenant.headers)
        if key:
            headers["Idempotency-Key"] = key
        return self.http.post("/v1/integrations/twilio/provision", json=body or PROVISION, headers=headers,
                              timeout=30)

    def integration(self, tenant: Tenant) -> httpx.Response:
        return self.http.get("/v1/integrations/twilio", headers=tenant.headers)

    def subaccounts(self, tenant: Tenant) -> list[dict]:
        """Every subaccount the hub created for this tenant (active or closed)."""
        return [a for a in self.twilio.accounts() if str(tenant.id) in a["friendly_name"]]

    def numbers(self, account_sid: str) -> list[str]:
        return [n["phone_number"] for n in self.twilio.numbers(account_sid=account_sid)]

    def next_offer(self, area_code: str = "11") -> str:
        """The number the saga will pick: the first one for sale."""
        main = platform_twilio(self.runtime)
        try:
            return main.find_available_numbers("BR", area_code, limit=1)[0]
        finally:
            main.close()

    def audit_actions(self, tenant: Tenant) -> list[str]:
        """The tenant's integration events in its audit trail, oldest first."""
        events = self.http.get("/v1/audit?limit=200", headers=tenant.headers).json()["data"]
        return [e["action"] for e in reversed(events) if e["action"].startswith("integration.")]


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
