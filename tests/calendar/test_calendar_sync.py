"""Changes made in Google reach the hub through a push notification and the incremental
sync: edits, moves and deletions of appointments, Google-only busy time, a 410 full
resync, paging, channel renewal, and the conflict policy with its sync log."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from calendar_support import (
    appointment,
    appointment_row,
    book,
    connected_tenant,
    eventually,
    google_event,
    google_time,
    map_resource,
    resource_row,
    slot,
    sync_log,
    synced,
)
from sqlalchemy import func, select, update

from hub.calendar.flows import push_appointment, renew_channels, sync_resource
from hub.calendar.flows.resources import claim_resource, release_resource
from hub.calendar.models import Appointment, BusyBlock, CalendarResource
from hub.db import utcnow
from hub.webhooks.models import Route

LIST = "GET /calendar/v3/calendars/{calendarId}/events"


def ready(hub, slug: str = "clinica"):
    tenant = connected_tenant(hub, slug)
    map_resource(hub, tenant, "dr-ana", tenant.calendars[1])
    return tenant


def booked_and_synced(hub, tenant, start: datetime, **fields) -> dict:
    r = book(hub, tenant, "dr-ana", start, **fields)
    assert r.status_code == 201, r.text
    return synced(hub, tenant, r.json()["id"])


def busy_blocks(hub, tenant) -> list[BusyBlock]:
    with hub.runtime.session_factory() as session:
        return list(session.scalars(select(BusyBlock).where(BusyBlock.tenant_id == tenant.tenant_id)))


def settle(hub, resource_pk) -> None:
    """Wait until no sync runs and none is wanted for the resource."""

    def idle() -> bool:
        with hub.runtime.session_factory() as session:
            r = session.get(CalendarResource, resource_pk)
            return r.sync_lease_until is None and r.sync_done == r.sync_wanted

    eventually(idle, what="the syncs to settle")


class TestChangesMadeInGoogle:
    def test_an_edit_in_google_reaches_the_appointment_through_a_push(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=13))
        event_id = booked["google"]["event_id"]
        pushes = len(live_hub.sandbox.google.push_log)

        live_hub.sandbox.google.edit_event(tenant.calendars[1], event_id,
                                           {"summary": "Consulta (remarcada pela recepção)", "description": "ok"})

        done = eventually(lambda: (a := appointment(live_hub, tenant, booked["id"]))["changed_by"] == "google" and a,
                          what="the Google edit to arrive")
        assert done["title"] == "Consulta (remarcada pela recepção)" and done["notes"] == "ok"
        assert done["google"]["state"] == "synced"
        assert any(p.resource_state == "exists" and p.status_code == 200
                   for p in live_hub.sandbox.google.push_log[pushes:])
        entries = sync_log(live_hub, tenant, "dr-ana", "appointment.updated_in_google")
        assert len(entries) == 1 and entries[0]["appointment_id"] == booked["id"]
        assert entries[0]["details"]["after"]["title"] == "Consulta (remarcada pela recepção)"

    def test_a_move_in_google_moves_the_appointment_and_its_reminder(self, live_hub):
        tenant = ready(live_hub)
        start = slot(days=3, hour=14)
        booked = booked_and_synced(live_hub, tenant, start)
        later = start + timedelta(days=1, hours=2)

        live_hub.sandbox.google.move_event(tenant.calendars[1], booked["google"]["event_id"], start=later)

        done = eventually(lambda: (a := appointment(live_hub, tenant, booked["id"]))["start"] != booked["start"]
                          and a, what="the move to arrive")
        assert datetime.fromisoformat(done["start"]) == later
        assert datetime.fromisoformat(done["end"]) == later + timedelta(minutes=30)
        assert datetime.fromisoformat(done["reminder"]["remind_at"]) == later - timedelta(hours=24)
        # the old slot is free, the new one taken
        assert book(live_hub, tenant, "dr-ana", start).status_code == 201
        assert book(live_hub, tenant, "dr-ana", later).status_code == 409

    def test_a_deletion_in_google_cancels_the_appointment(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=15))

        live_hub.sandbox.google.remove_event(tenant.calendars[1], booked["google"]["event_id"])

        done = eventually(lambda: (a := appointment(live_hub, tenant, booked["id"]))["status"] == "cancelled"
                          and a, what="the deletion to arrive")
        assert done["changed_by"] == "google" and done["cancelled_at"]
        assert [e["action"] for e in sync_log(live_hub, tenant, "dr-ana", "appointment.cancelled_in_google")] == \
            ["appointment.cancelled_in_google"]

    def test_events_made_in_google_become_busy_time_and_go_away_with_them(self, live_hub):
        tenant = ready(live_hub)
        start = slot(days=5, hour=11)
        google = live_hub.sandbox.google
        made = google.create_event(tenant.calendars[1], {"summary": "Almoço", "start": google_time(start),
                                                         "end": google_time(start + timedelta(hours=1))})
        block = eventually(lambda: next((b for b in busy_blocks(live_hub, tenant)
                                         if b.google_event_id == made["id"]), None), what="the busy block")
        assert (block.start_at, block.end_at) == (start, start + timedelta(hours=1))

        google.move_event(tenant.calendars[1], made["id"], start=start + timedelta(hours=2))
        eventually(lambda: [b.start_at for b in busy_blocks(live_hub, tenant)] == [start + timedelta(hours=2)],
                   what="the busy block to move")
        google.remove_event(tenant.calendars[1], made["id"])
        eventually(lambda: busy_blocks(live_hub, tenant) == [], what="the busy block to go")

    def test_the_hubs_own_writes_are_not_applied_back(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=16))
        r = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers,
                                json={"title": "Retorno", "notes": "trazer exames"})
        assert r.status_code == 200
        synced(live_hub, tenant, booked["id"])
        resource = resource_row(live_hub, tenant, "dr-ana")
        # every push of our own writes was pulled back by the sync
        settle(live_hub, resource.id)
        assert resource.sync_token
        done = appointment(live_hub, tenant, booked["id"])
        assert done["changed_by"] == "api" and done["title"] == "Retorno"
        actions = {e["action"] for e in sync_log(live_hub, tenant, "dr-ana")}
        assert not {a for a in actions if a.startswith(("appointment.", "conflict."))}, actions
        assert not busy_blocks(live_hub, tenant)
        # the sync may read our write before the push recorded Google's answer: the same
        # content is recognised as ours (here a full resync, with nothing recorded)
        # (taking the resource's lease as a worker would, so no sync in flight keeps the old state)
        eventually(lambda: claim_resource(live_hub.runtime, resource.id), what="the resource's lease")
        with live_hub.runtime.session_factory() as session, session.begin():
            session.execute(update(Appointment).where(Appointment.id == uuid.UUID(booked["id"]))
                            .values(google_etag=None, google_content_hash=None))
            session.execute(update(CalendarResource).where(CalendarResource.id == resource.id)
                            .values(sync_token=None))
        release_resource(live_hub.runtime, resource.id)
        sync_now(live_hub, resource)
        actions = {e["action"] for e in sync_log(live_hub, tenant, "dr-ana")}
        assert not {a for a in actions if a.startswith(("appointment.", "conflict."))}, actions
        assert appointment_row(live_hub, booked["id"]).google_etag


class TestResync:
    def test_an_invalidated_sync_token_triggers_a_full_resync(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=17))
        google = live_hub.sandbox.google
        old_token = resource_row(live_hub, tenant, "dr-ana").sync_token
        google.invalidate_sync_tokens(tenant.calendars[1])

        google.edit_event(tenant.calendars[1], booked["google"]["event_id"], {"summary": "Depois do 410"})

        done = eventually(lambda: (a := appointment(live_hub, tenant, booked["id"]))["title"] == "Depois do 410"
                          and a, what="the change through a full resync")
        assert done["changed_by"] == "google"
        actions = [e["action"] for e in sync_log(live_hub, tenant, "dr-ana")]
        assert "sync.token_invalid" in actions
        full = [e for e in sync_log(live_hub, tenant, "dr-ana", "sync.full")
                if e["details"]["reason"] == "token_invalid"]
        assert len(full) == 1
        new_token = resource_row(live_hub, tenant, "dr-ana").sync_token
        assert new_token and new_token != old_token

    def test_a_full_resync_drops_busy_time_deleted_while_nobody_listened(self, live_hub):
        tenant = ready(live_hub)
        google = live_hub.sandbox.google
        start = slot(days=4, hour=10)
        made = google.create_event(tenant.calendars[1], {"summary": "x", "start": google_time(start),
                                                         "end": google_time(start + timedelta(hours=1))})
        eventually(lambda: busy_blocks(live_hub, tenant), what="the busy block")
        # deleted for good while the hub was not listening (no push, and gone from listings)
        with google._lock:
            cal = google.calendars[tenant.calendars[1]]
            del cal.events[made["id"]]
            kept = [(seq, eid) for seq, eid in zip(cal.log_seqs, cal.log_ids, strict=True) if eid != made["id"]]
            cal.log_seqs, cal.log_ids = [seq for seq, _ in kept], [eid for _, eid in kept]
        google.invalidate_sync_tokens(tenant.calendars[1])
        resource = resource_row(live_hub, tenant, "dr-ana")
        with live_hub.runtime.session_factory() as session, session.begin():
            session.execute(update(CalendarResource).where(CalendarResource.id == resource.id)
                            .values(sync_wanted=CalendarResource.sync_wanted + 1))

        # the embedded worker may still hold the resource for the push's sync ("busy"):
        # then whichever of us runs after the bump does the full resync
        outcome = eventually(lambda: sync_resource(runtime=live_hub.runtime, resource_pk=resource.id) != "busy"
                             and resource_row(live_hub, tenant, "dr-ana").sync_done >= resource.sync_wanted + 1,
                             what="the resync after the bump")
        assert outcome
        assert busy_blocks(live_hub, tenant) == []

    def test_paging_through_many_changes(self, live_hub):
        tenant = ready(live_hub)
        google = live_hub.sandbox.google
        pages = google.request_counts[LIST]
        google.bulk_create_events(tenant.calendars[1], 600, start=slot(days=2, hour=0), every=timedelta(hours=1))

        eventually(lambda: len(busy_blocks(live_hub, tenant)) == 600, timeout=20, what="600 busy blocks")
        assert google.request_counts[LIST] - pages >= 3  # 250 + 250 + 100


class TestChannels:
    def test_channel_renewal_opens_a_new_channel_and_stops_the_old(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=12))
        google = live_hub.sandbox.google
        old = resource_row(live_hub, tenant, "dr-ana")
        assert old.channel_expires_at - utcnow() > timedelta(days=6)
        assert renew_channels(runtime=live_hub.runtime) == 0  # nothing due yet
        with live_hub.runtime.session_factory() as session, session.begin():
            session.execute(update(CalendarResource).where(CalendarResource.id == old.id)
                            .values(channel_expires_at=utcnow() + timedelta(hours=2)))

        assert renew_channels(runtime=live_hub.runtime) == 1

        new = eventually(lambda: (r := resource_row(live_hub, tenant, "dr-ana")).channel_id != old.channel_id
                         and r.channel_status == "active" and r, what="the new channel")
        assert new.channel_expires_at - utcnow() > timedelta(days=6)
        eventually(lambda: google.channels[old.channel_id].stopped, what="the old channel to stop")
        assert not google.channels[new.channel_id].stopped
        with live_hub.runtime.session_factory() as session:
            keys = set(session.scalars(select(Route.route_key).where(Route.kind == "google_calendar",
                                                                    Route.tenant_id == tenant.tenant_id)))
        assert keys == {new.channel_id}
        # changes still arrive, through the new channel
        google.edit_event(tenant.calendars[1], booked["google"]["event_id"], {"summary": "via novo canal"})
        eventually(lambda: appointment(live_hub, tenant, booked["id"])["title"] == "via novo canal",
                   what="the change through the renewed channel")
        assert any(p.channel_id == new.channel_id and p.resource_state == "exists" for p in google.push_log)
        assert [e["action"] for e in sync_log(live_hub, tenant, "dr-ana", "channel.renewed")] == ["channel.renewed"]

    def test_in_production_an_http_public_url_starts_no_watch(self, live_hub):
        """Google pushes to HTTPS receivers only: the hub does not ask, and says why."""
        tenant = connected_tenant(live_hub, "semtls")
        watches = live_hub.sandbox.google.request_counts["POST /calendar/v3/calendars/{calendarId}/events/watch"]
        development = live_hub.runtime.settings
        live_hub.runtime.settings = development.model_copy(update={"env": "production"})
        try:
            r = live_hub.http.put("/v1/calendars/dr-ana", headers=tenant.headers,
                                  json={"name": "Dra. Ana", "calendar_id": tenant.calendars[1]})
            assert r.status_code == 200, r.text
            mapping = eventually(lambda: (m := live_hub.http.get("/v1/calendars/dr-ana", headers=tenant.headers)
                                          .json())["channel"]["status"] == "error" and m["last_synced_at"] and m,
                                 what="the refused channel and the first sync")
        finally:
            live_hub.runtime.settings = development
        assert mapping["channel"]["error"].startswith("HUB_PUBLIC_URL must be an https:// URL")
        assert live_hub.sandbox.google.request_counts[
            "POST /calendar/v3/calendars/{calendarId}/events/watch"] == watches  # Google was never asked
        assert [e["action"] for e in sync_log(live_hub, tenant, "dr-ana", "channel.refused")] == ["channel.refused"]
        with live_hub.runtime.session_factory() as session:
            assert session.scalar(select(func.count()).select_from(Route).where(
                Route.kind == "google_calendar", Route.tenant_id == tenant.tenant_id)) == 0

    def test_unmapping_stops_the_channel(self, live_hub):
        tenant = ready(live_hub)
        channel_id = resource_row(live_hub, tenant, "dr-ana").channel_id
        assert live_hub.http.delete("/v1/calendars/dr-ana", headers=tenant.headers).status_code == 204
        eventually(lambda: live_hub.sandbox.google.channels[channel_id].stopped, what="the channel to stop")
        mapping = live_hub.http.get("/v1/calendars/dr-ana", headers=tenant.headers).json()
        assert mapping["status"] == "unmapped" and mapping["channel"]["status"] == "none"
        booking = book(live_hub, tenant, "dr-ana", slot(days=3))
        assert booking.status_code == 422

    def test_unmapping_is_refused_while_appointments_are_upcoming(self, live_hub):
        tenant = ready(live_hub)
        booked_and_synced(live_hub, tenant, slot(days=3))
        r = live_hub.http.delete("/v1/calendars/dr-ana", headers=tenant.headers)
        assert r.status_code == 409 and r.json()["error"]["code"] == "resource_has_appointments"


def hold(hub, appointment_id: str | None = None, resource: CalendarResource | None = None, *, on: bool) -> None:
    """Keep a worker's lease taken (as if a slow worker held it), or let it go."""
    until = utcnow() + timedelta(hours=1) if on else None
    if on and resource is not None:  # let a sync still running from earlier pushes finish first
        settle(hub, resource.id)
    with hub.runtime.session_factory() as session, session.begin():
        if appointment_id:
            session.execute(update(Appointment).where(Appointment.id == uuid.UUID(appointment_id))
                            .values(push_lease_until=until))
        if resource is not None:
            session.execute(update(CalendarResource).where(CalendarResource.id == resource.id)
                            .values(sync_lease_until=until))


def sync_now(hub, resource: CalendarResource) -> None:
    """Run a sync here (waiting out one a worker may be running after a push)."""
    eventually(lambda: sync_resource(runtime=hub.runtime, resource_pk=resource.id) == "synced", what="a sync")


class TestConflictPolicy:
    def test_the_newer_change_in_google_wins_over_an_older_local_one(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=9))
        resource = resource_row(live_hub, tenant, "dr-ana")
        hold(live_hub, booked["id"], resource, on=True)  # neither side's change travels yet
        r = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers,
                                json={"title": "mudado no hub"})
        assert r.status_code == 200
        live_hub.sandbox.google.edit_event(tenant.calendars[1], booked["google"]["event_id"],
                                           {"summary": "mudado no Google, depois"})
        assert live_hub.sandbox.google.wait_for_pushes(5)
        hold(live_hub, None, resource, on=False)

        sync_now(live_hub, resource)

        done = appointment(live_hub, tenant, booked["id"])
        assert done["title"] == "mudado no Google, depois" and done["changed_by"] == "google"
        assert done["google"]["state"] == "synced"
        (entry,) = sync_log(live_hub, tenant, "dr-ana", "conflict.google_won")
        assert entry["details"]["local"]["title"] == "mudado no hub"
        assert entry["details"]["google"]["title"] == "mudado no Google, depois"
        assert entry["details"]["policy"] == "the newer change wins"
        hold(live_hub, booked["id"], on=False)
        assert push_appointment(runtime=live_hub.runtime, appointment_id=uuid.UUID(booked["id"])) == "idle"
        event = google_event(live_hub, tenant.calendars[1], booked["google"]["event_id"])
        assert event["summary"] == "mudado no Google, depois"

    def test_the_newer_local_change_wins_over_an_older_google_one(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=10))
        resource = resource_row(live_hub, tenant, "dr-ana")
        hold(live_hub, None, resource, on=True)
        live_hub.sandbox.google.edit_event(tenant.calendars[1], booked["google"]["event_id"],
                                           {"summary": "mudado no Google, antes"})
        assert live_hub.sandbox.google.wait_for_pushes(5)
        hold(live_hub, booked["id"], on=True)
        r = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers,
                                json={"title": "mudado no hub, depois"})
        assert r.status_code == 200
        hold(live_hub, booked["id"], on=False)

        # the push meets Google's newer etag (412) and settles it by the policy (here, or
        # in the worker that ran the PATCH's push if it got there first)
        assert push_appointment(runtime=live_hub.runtime, appointment_id=uuid.UUID(booked["id"])) in ("synced", "idle")

        synced(live_hub, tenant, booked["id"])
        event = google_event(live_hub, tenant.calendars[1], booked["google"]["event_id"])
        assert event["summary"] == "mudado no hub, depois"
        (entry,) = sync_log(live_hub, tenant, "dr-ana", "conflict.local_won")
        assert entry["details"]["google"]["title"] == "mudado no Google, antes"
        hold(live_hub, None, resource, on=False)
        sync_now(live_hub, resource)
        done = appointment(live_hub, tenant, booked["id"])
        assert done["title"] == "mudado no hub, depois" and done["changed_by"] == "api"
        assert len(sync_log(live_hub, tenant, "dr-ana", "conflict.local_won")) == 1

    def test_a_google_change_of_untracked_fields_is_no_conflict(self, live_hub):
        tenant = ready(live_hub)
        booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=11))
        etag = appointment_row(live_hub, booked["id"]).google_etag
        hold(live_hub, booked["id"], on=True)
        r = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers, json={"title": "novo"})
        assert r.status_code == 200
        live_hub.sandbox.google.edit_event(tenant.calendars[1], booked["google"]["event_id"], {"colorId": "5"})
        # the sync takes Google's new version as the base for our pending change, without a conflict
        eventually(lambda: appointment_row(live_hub, booked["id"]).google_etag != etag, what="the sync")
        hold(live_hub, booked["id"], on=False)
        # (a worker may get there first)
        assert push_appointment(runtime=live_hub.runtime, appointment_id=uuid.UUID(booked["id"])) in ("synced", "idle")
        synced(live_hub, tenant, booked["id"])
        event = google_event(live_hub, tenant.calendars[1], booked["google"]["event_id"])
        assert event["summary"] == "novo" and event["colorId"] == "5"
        assert not [e for e in sync_log(live_hub, tenant, "dr-ana") if e["action"].startswith("conflict.")]


def test_reconcile_catches_a_missed_push(live_hub):
    from hub.calendar.flows import reconcile

    tenant = ready(live_hub)
    booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=8))
    google = live_hub.sandbox.google
    channel = google.channels[resource_row(live_hub, tenant, "dr-ana").channel_id]
    channel.stopped = True  # Google silently stops pushing
    google.edit_event(tenant.calendars[1], booked["google"]["event_id"], {"summary": "sem push"})
    assert appointment(live_hub, tenant, booked["id"])["title"] != "sem push"

    assert reconcile(runtime=live_hub.runtime) >= 1

    eventually(lambda: appointment(live_hub, tenant, booked["id"])["title"] == "sem push",
               what="the nightly reconciliation")
    with live_hub.runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Appointment)) == 1


def test_push_sync_and_writes_with_the_broker_on_redis(live_hub, redis_url):
    """The same round trip with Celery on Redis (the production broker)."""
    tenant = ready(live_hub, "redis")
    booked = booked_and_synced(live_hub, tenant, slot(days=3, hour=7))
    live_hub.sandbox.google.edit_event(tenant.calendars[1], booked["google"]["event_id"], {"summary": "via Redis"})
    eventually(lambda: appointment(live_hub, tenant, booked["id"])["title"] == "via Redis", what="the Google edit")
