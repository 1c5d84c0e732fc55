"""Two tenants, each with its own Google account and a resource of the same name: their
calendars, bookings, pushes and sync logs never meet. (Every /v1 route's own isolation
case is in tests/api/test_isolation.py.)"""

from __future__ import annotations

from datetime import timedelta

from calendar_support import (
    appointment,
    book,
    connected_tenant,
    eventually,
    map_resource,
    resource_row,
    slot,
    sync_log,
    synced,
)
from sqlalchemy import select

from hub.calendar.models import BusyBlock


def test_two_tenants_calendars_are_fully_isolated(live_hub):
    a = connected_tenant(live_hub, "clinica-a")
    b = connected_tenant(live_hub, "clinica-b")
    map_resource(live_hub, a, "dr-ana", a.calendars[1])
    map_resource(live_hub, b, "dr-ana", b.calendars[1])
    start = slot(days=3, hour=13)

    # the same slot of "dr-ana" is free in each tenant
    booked_a = book(live_hub, a, "dr-ana", start).json()
    booked_b = book(live_hub, b, "dr-ana", start).json()
    synced(live_hub, a, booked_a["id"])
    synced(live_hub, b, booked_b["id"])
    assert booked_a["google"]["event_id"] != booked_b["google"]["event_id"]
    assert live_hub.sandbox.google.calendars[a.calendars[1]].events.keys() == {booked_a["google"]["event_id"]}
    assert live_hub.sandbox.google.calendars[b.calendars[1]].events.keys() == {booked_b["google"]["event_id"]}

    # each sees its own account's calendars only
    ids_a = [c["id"] for c in live_hub.http.get("/v1/google/calendars", headers=a.headers).json()]
    ids_b = [c["id"] for c in live_hub.http.get("/v1/google/calendars", headers=b.headers).json()]
    assert ids_a == a.calendars and ids_b == b.calendars

    # a change in A's Google reaches A only; busy time made in A's Google blocks A only
    google = live_hub.sandbox.google
    google.edit_event(a.calendars[1], booked_a["google"]["event_id"], {"summary": "só A"})
    later = start + timedelta(hours=2)
    google.create_event(a.calendars[1], {"summary": "bloqueio A", "start": {"dateTime": later.isoformat()},
                                         "end": {"dateTime": (later + timedelta(hours=1)).isoformat()}})
    eventually(lambda: appointment(live_hub, a, booked_a["id"])["title"] == "só A", what="A's change")
    with live_hub.runtime.session_factory() as session:
        eventually(lambda: session.scalars(select(BusyBlock)).all(), what="A's busy block")
        blocks = session.scalars(select(BusyBlock)).all()
    assert {blk.tenant_id for blk in blocks} == {a.tenant_id}
    assert book(live_hub, a, "dr-ana", later).status_code == 409
    assert book(live_hub, b, "dr-ana", later).status_code == 201
    assert appointment(live_hub, b, booked_b["id"])["title"] == "Consulta"
    assert [e for e in sync_log(live_hub, b, "dr-ana") if e["appointment_id"] == booked_a["id"]] == []
    assert [e["action"] for e in sync_log(live_hub, a, "dr-ana", "appointment.updated_in_google")] == \
        ["appointment.updated_in_google"]

    # A's channel with B's channel token is refused: tokens are per connection
    channel_a = resource_row(live_hub, a, "dr-ana").channel_id
    token_b = google.channels[resource_row(live_hub, b, "dr-ana").channel_id].token
    forged = live_hub.http.post("/webhooks/google_calendar", headers={
        "X-Goog-Channel-ID": channel_a, "X-Goog-Channel-Token": token_b, "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "12345"})
    assert forged.status_code == 403
    # and an unknown channel is a 404
    unknown = live_hub.http.post("/webhooks/google_calendar", headers={
        "X-Goog-Channel-ID": "no-such-channel", "X-Goog-Channel-Token": token_b, "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "1"})
    assert unknown.status_code == 404
