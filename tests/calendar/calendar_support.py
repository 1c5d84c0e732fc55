"""Helpers of the calendar tests (importable: this folder is on sys.path): a tenant with
its own Google account in the live hub's sandbox, the browser side of the consent
flow, and polling with short deadlines."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from hub.calendar.models import Appointment, CalendarResource
from tests.support import bearer, create_client, create_tenant, get_token, random_hex

SCOPES = ["integrations:read", "integrations:write", "calendar:read", "calendar:write", "audit:read"]


@dataclass
class GoogleTenant:
    tenant_id: uuid.UUID
    headers: dict[str, str]
    account: str
    calendars: list[str]  # sandbox calendar ids, the primary (the account e-mail) first


def google_tenant(hub, slug: str = "clinica", *, calendars: tuple[str, ...] = ("Dra. Ana", "Sala 2"),
                  scopes: list[str] | None = None) -> GoogleTenant:
    """A tenant, a token for it, and a Google account of its own in the sandbox (not connected yet)."""
    tenant_id = create_tenant(hub.runtime, slug)
    headers = bearer(get_token(hub.http, create_client(hub.runtime, tenant_id, scopes or SCOPES)))
    account = f"{slug}-{random_hex(4)}@clinic.example"
    ids = hub.sandbox.google.seed_account(account, calendars=calendars)
    return GoogleTenant(tenant_id, headers, account, ids)


def query_of(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


class Browser:
    """One person's browser: it keeps the cookies the hub sets, opens the hub's start
    link, gives (or refuses) consent on Google's (sandbox) page, and comes back."""

    def __init__(self, hub_client: httpx.Client | None = None) -> None:
        # the live hub's client has no state worth sharing: a browser gets a cookie jar of its own
        # the callback makes two calls to Google and several writes: a loaded CI machine needs room
        self.hub = hub_client if hub_client is not None else httpx.Client(timeout=30.0, trust_env=False)
        self.google = httpx.Client(timeout=5.0, trust_env=False)

    def open(self, start_url: str) -> str:
        """Open the hub's start link; returns Google's consent URL it sends the browser to."""
        r = self.hub.get(start_url, follow_redirects=False)
        assert r.status_code == 303, r.text
        return r.headers["location"]

    def consent(self, google_url: str, *, account: str | None = None, decision: str = "approve") -> str:
        """Press a button on Google's consent page; returns where the browser is sent next."""
        page = self.google.get(google_url)
        assert page.status_code == 200, page.text
        form = re.search(rf'<form[^>]*action="([^"]+)"[^>]*id="{decision}">(.*?)</form>', page.text, re.S)
        assert form, page.text
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(2)))
        if account is not None:
            fields["account"] = account
        answer = self.google.post(httpx.URL(google_url).join(form.group(1)), data=fields | {"decision": decision})
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    def back(self, callback_url: str) -> httpx.Response:
        """Follow Google's redirect back to the hub, with this browser's cookies."""
        return self.hub.get(callback_url)

    def connect(self, start_url: str, *, account: str | None = None) -> httpx.Response:
        """The whole flow in this browser; returns the hub's result page."""
        return self.back(self.consent(self.open(start_url), account=account))


def start_connect(hub, tenant: GoogleTenant, **body: Any) -> str:
    r = hub.http.post("/v1/integrations/google/connect", headers=tenant.headers, json=body or None)
    assert r.status_code == 200, r.text
    return r.json()["authorization_url"]


def connect(hub, tenant: GoogleTenant) -> httpx.Response:
    """The whole connect flow as a person does it; returns the hub's result page."""
    browser = Browser()
    location = browser.consent(browser.open(start_connect(hub, tenant)), account=tenant.account)
    assert location.startswith(hub.url + "/oauth/google/callback?"), location
    page = browser.back(location)
    assert page.status_code == 200, page.text
    return page


def eventually(probe: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def map_resource(hub, tenant: GoogleTenant, resource_id: str, calendar_id: str, *, name: str = "Dra. Ana",
                 kind: str = "professional") -> dict:
    """Map a resource and wait until its channel is open and its first sync is done."""
    r = hub.http.put(f"/v1/calendars/{resource_id}", headers=tenant.headers,
                     json={"name": name, "kind": kind, "calendar_id": calendar_id})
    assert r.status_code == 200, r.text

    def ready() -> dict | None:
        body = hub.http.get(f"/v1/calendars/{resource_id}", headers=tenant.headers).json()
        return body if body["channel"]["status"] == "active" and body["last_synced_at"] else None

    return eventually(ready, what=f"{resource_id}'s channel and first sync")


def connected_tenant(hub, slug: str = "clinica", **kwargs: Any) -> GoogleTenant:
    tenant = google_tenant(hub, slug, **kwargs)
    connect(hub, tenant)
    return tenant


def slot(days: int = 3, hour: int = 13, minutes: int = 0) -> datetime:
    """A whole-minute UTC time ``days`` from now."""
    day = (datetime.now(UTC) + timedelta(days=days)).replace(hour=hour, minute=minutes, second=0, microsecond=0)
    return day


def book(hub, tenant: GoogleTenant, resource_id: str, start: datetime, minutes: int = 30,
         **fields: Any) -> httpx.Response:
    body = {"resource_id": resource_id, "start": start.isoformat(),
            "end": (start + timedelta(minutes=minutes)).isoformat(), "title": "Consulta",
            "contact": {"name": "Maria Silva", "phone": "+55 11 98765-4321"}} | fields
    return hub.http.post("/v1/appointments", headers=tenant.headers, json=body)


def appointment(hub, tenant: GoogleTenant, appointment_id: str) -> dict:
    r = hub.http.get(f"/v1/appointments/{appointment_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()


def synced(hub, tenant: GoogleTenant, appointment_id: str) -> dict:
    """The appointment once its latest change reached Google."""
    return eventually(lambda: (a := appointment(hub, tenant, appointment_id))["google"]["state"] == "synced" and a,
                      what="the appointment to reach Google")


def sync_log(hub, tenant: GoogleTenant, resource_id: str, action: str | None = None) -> list[dict]:
    params = {"limit": 200} | ({"action": action} if action else {})
    r = hub.http.get(f"/v1/calendars/{resource_id}/sync-log", headers=tenant.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def resource_row(hub, tenant: GoogleTenant, resource_id: str) -> CalendarResource:
    with hub.runtime.session_factory() as session:
        return session.scalar(select(CalendarResource).where(CalendarResource.tenant_id == tenant.tenant_id,
                                                             CalendarResource.resource_id == resource_id))


def appointment_row(hub, appointment_id: str) -> Appointment:
    with hub.runtime.session_factory() as session:
        return session.get(Appointment, uuid.UUID(appointment_id))


def google_event(hub, calendar_id: str, event_id: str) -> dict | None:
    stored = hub.sandbox.google.calendars[calendar_id].events.get(event_id)
    return stored.resource if stored else None


def google_time(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.isoformat()}
