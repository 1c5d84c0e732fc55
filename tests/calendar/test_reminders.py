"""The appointment-reminder goes to the contact once, through the messaging pipeline."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from calendar_support import (
    SCOPES,
    appointment,
    book,
    connect,
    connected_tenant,
    eventually,
    google_tenant,
    map_resource,
    slot,
)
from sqlalchemy import select, update

from hub.calendar.models import Appointment
from hub.calendar.reminders import send_due_reminders
from hub.db import utcnow
from hub.messaging.models import Message
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.support import random_hex


def with_twilio(hub, tenant) -> str:
    """Give the tenant a bring-your-own Twilio account in the sandbox; returns its number."""
    sid, token = "AC" + random_hex(16), random_hex(16)
    hub.sandbox.twilio.register_account(sid, token)
    number = hub.sandbox.twilio.numbers(account_sid=sid)[0]["phone_number"]
    with hub.runtime.session_factory() as session, session.begin():
        tenants.put_integration(session=session, vault=hub.runtime.vault, tenant_id=tenant.tenant_id, kind="twilio",
                                credentials={"account_sid": sid, "auth_token": token},
                                config={"numbers": [number], "channels": ["sms", "whatsapp"]},
                                status=IntegrationStatus.ACTIVE)
    return number


def time_passes(hub, appointment_id: str) -> None:
    """The reminder falls due."""
    with hub.runtime.session_factory() as session, session.begin():
        session.execute(update(Appointment).where(Appointment.id == uuid.UUID(appointment_id))
                        .values(remind_at=utcnow() - timedelta(seconds=1)))


def messages_of(hub, tenant) -> list[Message]:
    with hub.runtime.session_factory() as session:
        return list(session.scalars(select(Message).where(Message.tenant_id == tenant.tenant_id)))


def test_a_due_reminder_is_sent_once(live_hub):
    tenant = connected_tenant(live_hub, "lembrete")
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1], name="Dra. Ana")
    with_twilio(live_hub, tenant)
    booked = book(live_hub, tenant, "dr-ana", slot(days=3, hour=13), title="Limpeza de pele",
                  reminder_channel="sms").json()
    assert send_due_reminders(runtime=live_hub.runtime) == 0  # not due yet
    time_passes(live_hub, booked["id"])

    with ThreadPoolExecutor(4) as pool:  # beat ticks racing each other
        claimed = list(pool.map(lambda _: send_due_reminders(runtime=live_hub.runtime), range(4)))

    assert sum(claimed) == 1
    (message,) = messages_of(live_hub, tenant)
    assert message.channel == "sms" and message.to_address == "+5511987654321"
    assert message.template == "appointment-reminder"  # sent as the tenant's template, not loose text
    assert "Maria Silva" in message.body and "Limpeza de pele" in message.body and "Dra. Ana" in message.body
    done = appointment(live_hub, tenant, booked["id"])
    assert done["reminder"]["reminded_at"] and done["reminder"]["message_id"] == str(message.id)
    eventually(lambda: live_hub.sandbox.twilio.sent_messages(to="+5511987654321"), what="the SMS at Twilio")
    assert send_due_reminders(runtime=live_hub.runtime) == 0


def test_a_reminder_that_cannot_be_sent_is_recorded_not_retried(live_hub):
    tenant = connected_tenant(live_hub, "semtwilio")  # no Twilio integration
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
    booked = book(live_hub, tenant, "dr-ana", slot(days=3, hour=14)).json()
    time_passes(live_hub, booked["id"])

    assert send_due_reminders(runtime=live_hub.runtime) == 1
    assert send_due_reminders(runtime=live_hub.runtime) == 0

    reminder = appointment(live_hub, tenant, booked["id"])["reminder"]
    assert reminder["reminded_at"] and reminder["message_id"] is None
    assert "twilio" in reminder["error"]
    assert messages_of(live_hub, tenant) == []


def test_no_reminder_for_cancelled_appointments_or_when_disabled(live_hub):
    tenant = connected_tenant(live_hub, "cancelado")
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
    with_twilio(live_hub, tenant)
    cancelled = book(live_hub, tenant, "dr-ana", slot(days=3, hour=9)).json()
    assert live_hub.http.delete(f"/v1/appointments/{cancelled['id']}", headers=tenant.headers).status_code == 204
    time_passes(live_hub, cancelled["id"])
    silent = book(live_hub, tenant, "dr-ana", slot(days=3, hour=11), remind_before_minutes=None).json()
    assert silent["reminder"]["remind_at"] is None
    soon = book(live_hub, tenant, "dr-ana", utcnow().replace(microsecond=0) + timedelta(hours=2)).json()
    assert soon["reminder"]["remind_at"] is None  # booked inside the lead time: the contact just booked

    assert send_due_reminders(runtime=live_hub.runtime) == 0
    assert messages_of(live_hub, tenant) == []


def test_moving_an_appointment_rearms_its_reminder(live_hub):
    tenant = connected_tenant(live_hub, "remarcado")
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1])
    start = slot(days=3, hour=15)
    booked = book(live_hub, tenant, "dr-ana", start, remind_before_minutes=120).json()
    later = start + timedelta(days=1)
    r = live_hub.http.patch(f"/v1/appointments/{booked['id']}", headers=tenant.headers,
                            json={"start": later.isoformat(), "end": (later + timedelta(minutes=30)).isoformat()})
    assert r.status_code == 200
    assert datetime.fromisoformat(r.json()["reminder"]["remind_at"]) == later - timedelta(hours=2)


def test_the_embedded_beat_sends_a_due_reminder_by_itself(live_hub):
    # what `make run` does: the periodic jobs run inside `hub serve` (here every half second)
    from hub.queue import CALENDAR_REMINDERS, EmbeddedBeat

    tenant = connected_tenant(live_hub, "sozinho")
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1], name="Dra. Ana")
    with_twilio(live_hub, tenant)
    booked = book(live_hub, tenant, "dr-ana", slot(days=3, hour=13), title="Consulta", reminder_channel="sms").json()
    time_passes(live_hub, booked["id"])
    live_hub.runtime.celery.conf.beat_schedule = {"calendar-reminders": {"task": CALENDAR_REMINDERS,
                                                                         "schedule": 0.5}}
    beat = EmbeddedBeat(live_hub.runtime).start()
    try:
        eventually(lambda: appointment(live_hub, tenant, booked["id"])["reminder"]["message_id"],
                   what="the beat to send the reminder")
    finally:
        beat.stop()
    (message,) = messages_of(live_hub, tenant)
    assert message.template == "appointment-reminder"


def test_a_booked_appointment_reminds_through_the_tenants_template_and_reaches_twilio(live_hub):
    """End to end: booked through the API, due, produced by the beat as the tenant's own
    version of the appointment-reminder template (a notification like any template
    send), on the first channel of the tenant's order, delivered to Twilio."""
    tenant = google_tenant(live_hub, "modelo", scopes=[*SCOPES, "messages:read", "messages:write"])
    connect(live_hub, tenant)
    map_resource(live_hub, tenant, "dr-ana", tenant.calendars[1], name="Dra. Ana")
    with_twilio(live_hub, tenant)
    own = live_hub.http.put("/v1/templates/appointment-reminder", headers=tenant.headers, json={"locales": {
        "pt-BR": {"whatsapp": {"body": "{{ business_name }} lembra {{ customer_name }}: {{ service_name }} "
                                       "com {{ location }} em {{ appointment_at|date }}."}}}})
    assert own.status_code == 200, own.text
    booked = book(live_hub, tenant, "dr-ana", slot(days=4, hour=12), title="Retorno")
    assert booked.status_code == 201, booked.text
    time_passes(live_hub, booked.json()["id"])

    assert send_due_reminders(runtime=live_hub.runtime) == 1

    (message,) = messages_of(live_hub, tenant)
    assert message.template == "appointment-reminder" and message.channel == "whatsapp"
    assert message.body.startswith("Modelo lembra Maria Silva: Retorno com Dra. Ana em ")
    reminder = appointment(live_hub, tenant, booked.json()["id"])["reminder"]
    assert reminder["channel"] == "whatsapp" and reminder["message_id"] == str(message.id)
    sent = eventually(lambda: live_hub.sandbox.twilio.sent_messages(to="whatsapp:+5511987654321"),
                      what="the WhatsApp reminder at Twilio")
    assert sent[0]["body"] == message.body
