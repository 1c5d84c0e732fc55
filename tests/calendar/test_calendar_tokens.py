"""Access tokens refresh themselves, one refresh at a time per connection, and a revoked
grant turns the integration to needs_reauth."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from calendar_support import connected_tenant, eventually, map_resource
from sqlalchemy import select
from sqlalchemy.engine import make_url

from hub.audit.models import AuditEvent
from hub.calendar import tokens
from hub.calendar.flows import sync_resource
from hub.calendar.models import CalendarResource
from hub.db import is_postgres, utcnow
from hub.errors import Unavailable
from tenants.models import Integration

THREADS = 20


def integration_of(hub, tenant) -> Integration:
    with hub.runtime.session_factory() as session:
        return session.scalar(select(Integration).where(Integration.tenant_id == tenant.tenant_id,
                                                        Integration.kind == "google_calendar"))


def refresh_token_of(hub, tenant) -> str:
    with hub.runtime.session_factory() as session:
        integration = session.get(Integration, integration_of(hub, tenant).id)
        return tokens.open_credentials(session=session, vault=hub.runtime.vault,
                                       integration=integration).refresh_token.get_secret_value()


def stored_token(hub, tenant) -> tuple[str, object]:
    with hub.runtime.session_factory() as session:
        integration = session.get(Integration, integration_of(hub, tenant).id)
        credentials = tokens.open_credentials(session=session, vault=hub.runtime.vault, integration=integration)
        return credentials.access_token.get_secret_value(), credentials.expiry


def list_calendars_in_threads(hub, tenant) -> list:
    """THREADS workers, released together, each building its own connector and calling Google."""
    barrier = threading.Barrier(THREADS)

    def call() -> int:
        barrier.wait(timeout=10)
        with hub.runtime.session_factory() as session:
            integration = tokens.get_connection(session=session, tenant_id=tenant.tenant_id)
            connector = tokens.calendar_connector(hub.runtime, session=session, integration=integration)
            return len(connector.list_calendars())

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda _: call(), range(THREADS)))


def age_stored_token(hub, tenant, *, left: timedelta) -> None:
    """Make the stored access token look like it has ``left`` of life (the vault keeps the expiry)."""
    with hub.runtime.session_factory() as session, session.begin():
        integration = session.get(Integration, integration_of(hub, tenant).id, with_for_update=True)
        credentials = tokens.open_credentials(session=session, vault=hub.runtime.vault, integration=integration)
        tokens.seal_credentials(session=session, vault=hub.runtime.vault, integration=integration,
                                credentials=credentials.model_copy(update={"expiry": utcnow() + left}))


class TestOneRefreshAtATime:
    def test_twenty_concurrent_calls_with_an_expired_token_refresh_once(self, live_hub):
        tenant = connected_tenant(live_hub, "vinte")
        google = live_hub.sandbox.google
        refresh_token = refresh_token_of(live_hub, tenant)
        old_token, _ = stored_token(live_hub, tenant)
        google.expire_access_tokens(account=tenant.account)
        age_stored_token(live_hub, tenant, left=timedelta(seconds=-5))
        assert google.refresh_count(refresh_token) == 0

        results = list_calendars_in_threads(live_hub, tenant)

        assert results == [len(tenant.calendars)] * THREADS
        assert google.refresh_count(refresh_token) == 1
        new_token, expiry = stored_token(live_hub, tenant)
        assert new_token != old_token and expiry - utcnow() > timedelta(minutes=50)

    def test_a_token_with_less_than_a_minute_left_is_refreshed_before_use(self, live_hub):
        tenant = connected_tenant(live_hub, "minuto")
        refresh_token = refresh_token_of(live_hub, tenant)
        age_stored_token(live_hub, tenant, left=timedelta(seconds=90))
        list_calendars_in_threads(live_hub, tenant)
        assert live_hub.sandbox.google.refresh_count(refresh_token) == 0  # 90 s is enough
        age_stored_token(live_hub, tenant, left=timedelta(seconds=50))
        list_calendars_in_threads(live_hub, tenant)
        assert live_hub.sandbox.google.refresh_count(refresh_token) == 1

    def test_twenty_concurrent_401s_refresh_once(self, live_hub):
        """The stored expiry still looks fine, but Google refuses the token: every worker
        gets a 401 with the same stale token, and only one refreshes."""
        tenant = connected_tenant(live_hub, "recusado")
        refresh_token = refresh_token_of(live_hub, tenant)
        live_hub.sandbox.google.expire_access_tokens(account=tenant.account)

        results = list_calendars_in_threads(live_hub, tenant)

        assert results == [len(tenant.calendars)] * THREADS
        assert live_hub.sandbox.google.refresh_count(refresh_token) == 1

    def test_a_stuck_lock_holder_does_not_block_past_the_timeout(self, live_hub):
        tenant = connected_tenant(live_hub, "preso")
        runtime = live_hub.runtime
        integration_id = integration_of(live_hub, tenant).id
        stale, _ = stored_token(live_hub, tenant)
        release = hold_refresh_lock(runtime, integration_id)
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable) as busy:
                tokens.access_token(runtime, integration_id=integration_id, stale=stale, lock_timeout=0.5)
            assert busy.value.code == "google_token_busy"
            assert 0.4 < time.monotonic() - started < 30  # waited its 0.5 s, then gave up (a hang fails)
        finally:
            release()
        # once the holder is gone, the next caller refreshes
        assert tokens.access_token(runtime, integration_id=integration_id, stale=stale).token != stale

    def test_a_waiter_proceeds_when_the_holder_dies(self, live_hub):
        tenant = connected_tenant(live_hub, "morto")
        runtime = live_hub.runtime
        integration_id = integration_of(live_hub, tenant).id
        stale, _ = stored_token(live_hub, tenant)
        release = hold_refresh_lock(runtime, integration_id)
        with ThreadPoolExecutor(1) as pool:
            waiter = pool.submit(tokens.access_token, runtime, integration_id=integration_id, stale=stale,
                                 lock_timeout=10)
            time.sleep(0.3)
            assert not waiter.done()
            release()  # PostgreSQL: the holder's connection closes, its lock goes with it
            fresh = waiter.result(timeout=5)
        assert fresh.token != stale
        assert live_hub.sandbox.google.refresh_count(refresh_token_of(live_hub, tenant)) == 1


def hold_refresh_lock(runtime, integration_id):
    """Take the refresh lock the way another worker would, and return its release: on
    PostgreSQL a row lock in another connection (released by closing it, as a crashed
    worker's is), on SQLite the in-process lock."""
    if is_postgres(runtime.engine):
        import psycopg

        url = make_url(runtime.settings.database_url).set(drivername="postgresql")
        conn = psycopg.connect(url.render_as_string(hide_password=False))
        conn.execute("SELECT id FROM integrations WHERE id = %s FOR UPDATE", (integration_id,))
        return conn.close
    lock = tokens._process_lock(runtime, integration_id)
    lock.acquire()
    return lock.release


class TestRevokedGrant:
    def test_invalid_grant_marks_needs_reauth_audits_and_stops_sync(self, live_hub):
        tenant = connected_tenant(live_hub, "revogado")
        map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
        google = live_hub.sandbox.google
        assert google.revoke_grant(account=tenant.account) == 1
        google.expire_access_tokens(account=tenant.account)

        r = live_hub.http.get("/v1/google/calendars", headers=tenant.headers)

        assert r.status_code == 409 and r.json()["error"]["code"] == "google_needs_reauth"
        view = live_hub.http.get("/v1/integrations/google", headers=tenant.headers).json()
        assert view["status"] == "needs_reauth"
        assert "connect Google again" in view["last_error"] and view["last_error_at"]
        with live_hub.runtime.session_factory() as session:
            audited = session.scalars(select(AuditEvent).where(AuditEvent.tenant_id == tenant.tenant_id,
                                                               AuditEvent.action == "integration.needs_reauth")).all()
        assert len(audited) == 1 and audited[0].outcome == "failure"
        # later calls fail fast, without asking Google again
        refreshes = google.refresh_count(refresh_token_of(live_hub, tenant))
        assert live_hub.http.get("/v1/google/calendars", headers=tenant.headers).status_code == 409
        assert google.refresh_count(refresh_token_of(live_hub, tenant)) == refreshes
        # sync has stopped: a change in Google is not pulled, a booking is refused
        resource = eventually(lambda: _resource(live_hub, tenant, "dr-ana"), what="resource")
        assert sync_resource(runtime=live_hub.runtime, resource_pk=resource.id) == "needs_reauth"
        google.create_event(tenant.calendars[1], {"summary": "x", "start": {"dateTime": "2031-01-01T10:00:00Z"},
                                                  "end": {"dateTime": "2031-01-01T11:00:00Z"}})
        assert google.wait_for_pushes(5)
        time.sleep(0.3)
        assert _resource(live_hub, tenant, "dr-ana").sync_wanted == resource.sync_wanted
        booking = live_hub.http.post("/v1/appointments", headers=tenant.headers, json={
            "resource_id": "dr-ana", "start": "2031-01-02T10:00:00Z", "end": "2031-01-02T10:30:00Z",
            "title": "Consulta"})
        assert booking.status_code == 409 and booking.json()["error"]["code"] == "google_needs_reauth"


def _resource(hub, tenant, resource_id: str) -> CalendarResource:
    with hub.runtime.session_factory() as session:
        return session.scalar(select(CalendarResource).where(CalendarResource.tenant_id == tenant.tenant_id,
                                                             CalendarResource.resource_id == resource_id))
