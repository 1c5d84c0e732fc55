"""Booking through the API: conflicts with local appointments and Google-only busy time
are refused, the Google event is written once (a retried insert never duplicates it),
and changes and cancellations reach Google."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calendar_support import (
    appointment,
    appointment_row,
    book,
    connected_tenant,
    eventually,
    google_event,
    google_time,
    map_resource,
    slot,
    synced,
)
from sqlalchemy import update

from connectors.google_calendar import event_id_for
from hub.calendar.flows import push_appointment
from hub.calendar.models import Appointment

INSERT = "POST /calendar/v3/calendars/{calendarId}/events"


SAO_PAULO = ZoneInfo("America/Sao_Paulo")  # the default tenant zone

def ready_tenant(hub, slug: str = "clinica"):
    tenant = connected_tenant(hub, slug)
    map_resource(hub, tenant, "dr-ana", tenant.calendars[1])
    return tenant


def events_of(hub, calendar_id: str, appointment_id: str) -> list[dict]:
    cal = hub.sandbox.google.calendars[calendar_id]
    return [e.resource for e in cal.events.values()
            if e.resource.get("extendedProperties", {}).get("private", {}).get("hub_appointment_id") == appointment_id]


class TestBooking:
    def test_a_booking_is_written_to_google_with_its_derived_id(self, live_hub):
        tenant = ready_tenant(live_hub)
        start = slot(days=3, hour=13)

        r = book(live_hub, tenant, "dr-ana", start, title="Limpeza", notes="primeira vez", location="Sala 2")

        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "confirmed" and body["google"]["state"] in ("pending", "synced")
        assert body["contact"]["phone"] == "+5511987654321"
        assert datetime.fromisoformat(body["reminder"]["remind_at"]) == start - timedelta(hours=24)
        done = synced(live_hub, tenant, body["id"])
        assert done["google"]["event_id"] == event_id_for(uuid.UUID(body["id"]))
        event = google_event(live_hub, tenant.calendars[1], done["google"]["event_id"])
        assert event["summary"] == "Limpeza" and event["description"] == "primeira vez"
        assert event["location"] == "Sala 2" and event["status"] == "confirmed"
        assert event["extendedProperties"]["private"]["hub_appointment_id"] == body["id"]
        assert datetime.fromisoformat(event["start"]["dateTime"]) == start
        listed = live_hub.http.get("/v1/appointments", headers=tenant.headers,
                                   params={"resource_id": "dr-ana"}).json()["data"]
        assert [a["id"] for a in listed] == [body["id"]]

    def test_naive_times_are_the_tenants_time_zone(self, live_hub):
        tenant = ready_tenant(live_hub)
        day = (datetime.now(UTC) + timedelta(days=4)).date()
        r = live_hub.http.post("/v1/appointments", headers=tenant.headers, json={
            "resource_id": "dr-ana", "start": f"{day}T10:00:00", "end": f"{day}T10:45:00", "title": "Consulta"})
        assert r.status_code == 201, r.text
        # America/Sao_Paulo is UTC-3
        assert datetime.fromisoformat(r.json()["start"]) == datetime(day.year, day.month, day.day, 13, tzinfo=UTC)
        assert r.json()["time_zone"] == "America/Sao_Paulo"

    def test_bad_input_is_a_clear_4xx_and_writes_nothing(self, live_hub):
        tenant = ready_tenant(live_hub)
        start = slot(days=3)
        cases = [
            ({"end": (start - timedelta(minutes=5)).isoformat()}, 422, "invalid_times"),
            ({"resource_id": "nobody"}, 422, "resource_not_found"),
            ({"contact": {"phone": "12"}}, 422, "invalid_contact"),
            ({"time_zone": "Mars/Olympus"}, 422, "validation_error"),
            ({"remind_at": (start + timedelta(hours=1)).isoformat()}, 422, "invalid_reminder"),
            ({"title": ""}, 422, "validation_error"),
        ]
        for fields, status, code in cases:
            resource_id = fields.pop("resource_id", "dr-ana")
            r = book(live_hub, tenant, resource_id, start, **fields)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (fields, r.text)
        assert live_hub.http.get("/v1/appointments", headers=tenant.headers).json()["data"] == []

    def test_idempotency_key_replays_the_first_booking(self, live_hub):
        tenant = ready_tenant(live_hub)
        start = slot(days=5)
        headers = tenant.headers | {"Idempotency-Key": "book-1"}
        body = {"resource_id": "dr-ana", "start": start.isoformat(),
                "end": (start + timedelta(minutes=30)).isoformat(), "title": "Consulta"}
        first = live_hub.http.post("/v1/appointments", headers=headers, json=body)
        again = live_hub.http.post("/v1/appointments", headers=headers, json=body)
        assert first.status_code == again.status_code == 201
        assert again.headers.get("Idempotent-Replay") == "true" and again.json()["id"] == first.json()["id"]


class TestConflicts:
    def test_double_booking_against_a_local_appointment_is_refused(self, live_hub):
        tenant = ready_tenant(live_hub)
        start = slot(days=3, hour=14)
        first = book(live_hub, tenant, "dr-ana", start, minutes=60).json()

        clash = book(live_hub, tenant, "dr-ana", start + timedelta(minutes=30), minutes=60)

        assert clash.status_code == 409, clash.text
        error = clash.json()["error"]
        assert error["code"] == "slot_unavailable"
        assert {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
                "source": "appointment", "appointment_id": first["id"]} in error["details"]["busy"]
        # the message names the busy interval (the tenant's zone, São Paulo), not the requested one
        busy_from, busy_to = (start.astimezone(SAO_PAULO), (start + timedelta(hours=1)).astimezone(SAO_PAULO))
        assert f"busy from {busy_from.isoformat()} to {busy_to.isoformat()}" in error["message"]
        assert (start + timedelta(minutes=30)).astimezone(SAO_PAULO).isoformat() not in error["message"]
        # back to back is fine; another resource at the same time is fine
        assert book(live_hub, tenant, "dr-ana", start + timedelta(hours=1)).status_code == 201
        map_resource(live_hub, tenant, "sala-2", tenant.calendars[2], name="Sala 2", kind="room")
        assert book(live_hub, tenant, "sala-2", start).status_code == 201

    def test_double_booking_against_busy_time_made_in_google_is_refused(self, live_hub):
        tenant = ready_tenant(live_hub)
        start = slot(days=6, hour=15)
        live_hub.sandbox.google.create_event(tenant.calendars[1], {
            "summary": "Congresso", "start": google_time(start), "end": google_time(start + timedelta(hours=2))})

        clash = book(live_hub, tenant, "dr-ana", start + timedelta(minutes=90))

        assert clash.status_code == 409
        busy = clash.json()["error"]["details"]["busy"]
        assert busy and all(b["source"] == "google" for b in busy)
        assert {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat(), "source": "google"} \
            in busy
        # a free event ("transparent") does not block
        later = start + timedelta(hours=3)
        live_hub.sandbox.google.create_event(tenant.calendars[1], {
            "summary": "lembrete", "transparency": "transparent", "start": google_time(later),
            "end": google_time(later + timedelta(hours=1))})
        assert book(live_hub, tenant, "dr-ana", later).status_code == 201

    def test_busy_blocks_kept_from_the_sync_refuse_a_booking_too(self, live_hub):
        """Even when Google's free/busy does not report it (a calendar shared with
        another tenant's bookings, say), busy time the sync recorded counts."""
        tenant = ready_tenant(live_hub)
        start = slot(days=7, hour=12)
        made = live_hub.sandbox.google.create_event(tenant.calendars[1], {
            "summary": "Cirurgia", "start": google_time(start), "end": google_time(start + timedelta(hours=1))})
        from hub.calendar.models import BusyBlock

        def block():
            with live_hub.runtime.session_factory() as session:
                return session.query(BusyBlock).filter_by(google_event_id=made["id"]).one_or_none()

        eventually(block, what="the busy block from the push")
        # make Google's free/busy blind to it (transparent), the hub's block still holds
        with live_hub.sandbox.google._lock:
            live_hub.sandbox.google.calendars[tenant.calendars[1]].events[made["id"]].resource["transparency"] = \
                "transparent"
        clash = book(live_hub, tenant, "dr-ana", start)
        assert clash.status_code == 409
        assert clash.json()["error"]["details"]["busy"][0]["source"] == "google"

    def test_moving_an_appointment_does_not_conflict_with_itself(self, live_hub):
        tenant = ready_tenant(live_hub)
        start = slot(days=3, hour=16)
        booked = book(live_hub, tenant, "dr-ana", start, minutes=30).json()
        synced(live_hub, tenant, booked["id"])

        r = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers,
                                json={"end": (start + timedelta(minutes=45)).isoformat(), "title": "Retorno"})

        assert r.status_code == 200, r.text
        done = synced(live_hub, tenant, booked["id"])
        event = google_event(live_hub, tenant.calendars[1], done["google"]["event_id"])
        assert event["summary"] == "Retorno"
        assert datetime.fromisoformat(event["end"]["dateTime"]) == start + timedelta(minutes=45)
        other = book(live_hub, tenant, "dr-ana", start + timedelta(hours=1)).json()
        clash = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers,
                                    json={"start": (start + timedelta(minutes=50)).isoformat(),
                                          "end": (start + timedelta(minutes=80)).isoformat()})
        assert clash.status_code == 409
        assert any(b.get("appointment_id") == other["id"] for b in clash.json()["error"]["details"]["busy"])


class TestWritingToGoogle:
    def test_a_retried_insert_does_not_duplicate_the_event(self, live_hub):
        tenant = ready_tenant(live_hub)
        booked = book(live_hub, tenant, "dr-ana", slot(days=4)).json()
        synced(live_hub, tenant, booked["id"])
        inserts = live_hub.sandbox.google.request_counts[INSERT]
        # the insert's answer was lost: the hub does not know the event exists, and the
        # appointment changed meanwhile
        with live_hub.runtime.session_factory() as session, session.begin():
            session.execute(update(Appointment).where(Appointment.id == uuid.UUID(booked["id"])).values(
                google_etag=None, google_content_hash=None, synced_version=0, version=2, title="Retorno",
                sync_state="pending"))

        assert push_appointment(runtime=live_hub.runtime, appointment_id=uuid.UUID(booked["id"])) == "synced"

        assert live_hub.sandbox.google.request_counts[INSERT] == inserts + 1  # it did try to insert again
        events = events_of(live_hub, tenant.calendars[1], booked["id"])
        assert len(events) == 1 and events[0]["summary"] == "Retorno"
        assert appointment(live_hub, tenant, booked["id"])["google"]["state"] == "synced"

    def test_transient_google_failures_are_retried(self, live_hub):
        tenant = ready_tenant(live_hub)
        live_hub.sandbox.google.inject_failure(503, times=2, path_prefix=f"/calendar/v3/calendars/"
                                                                          f"{tenant.calendars[1]}/events")
        booked = book(live_hub, tenant, "dr-ana", slot(days=4))
        assert booked.status_code == 201
        done = eventually(lambda: (a := appointment(live_hub, tenant, booked.json()["id"]))["google"]["state"]
                          == "synced" and a, timeout=15, what="the retried insert")
        assert len(events_of(live_hub, tenant.calendars[1], done["id"])) == 1

    def test_cancelling_deletes_the_google_event(self, live_hub):
        tenant = ready_tenant(live_hub)
        booked = book(live_hub, tenant, "dr-ana", slot(days=4, hour=18)).json()
        event_id = synced(live_hub, tenant, booked["id"])["google"]["event_id"]

        assert live_hub.http.delete(f"/v1/appointments/{booked['id']}", headers=tenant.headers).status_code == 204
        assert live_hub.http.delete(f"/v1/appointments/{booked['id']}", headers=tenant.headers).status_code == 204

        eventually(lambda: google_event(live_hub, tenant.calendars[1], event_id)["status"] == "cancelled",
                   what="the event to be deleted in Google")
        done = synced(live_hub, tenant, booked["id"])
        assert done["status"] == "cancelled" and done["cancelled_at"]
        assert appointment_row(live_hub, booked["id"]).reminded_at is None
        # the slot is free again
        assert book(live_hub, tenant, "dr-ana", datetime.fromisoformat(booked["start"])).status_code == 201
        edit = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers, json={"title": "x"})
        assert edit.status_code == 409 and edit.json()["error"]["code"] == "appointment_cancelled"
