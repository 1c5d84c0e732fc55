"""Appointment reminders: the ``appointment-reminder`` notification goes to the contact
once, ``remind_before_minutes`` before the start. It is a template notification like the
tenant's own sends (``POST /v1/messages`` with a template): messaging renders the
tenant's version of the template, applies consent and the WhatsApp rules, and falls
back along the tenant's channel order when the booking did not choose a channel."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.calendar.models import Appointment, AppointmentStatus, CalendarResource
from hub.db import transaction, utcnow
from hub.errors import HubError
from hub.messaging.schemas import MessageCreate
from hub.messaging.service import send_message
from tenants.models import Tenant

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.calendar")


REMINDER_TEMPLATE = "appointment-reminder"


class ReminderNotSent(Exception):
    """The reminder cannot be sent (no address, template data missing …); recorded, not retried."""


def send_due_reminders(*, runtime: Runtime, limit: int = 100) -> int:
    """Beat: send each due reminder at most once; returns how many were claimed.

    A reminder is claimed (``reminded_at`` set by a conditional UPDATE) and committed
    before it is handed to messaging, so concurrent beats never both send it; a worker
    dying between the two loses that reminder rather than sending it twice. A send the
    messaging pipeline refuses (no Twilio integration, bad number …) is recorded in
    ``reminder_error``, not retried.
    """
    now = utcnow()
    with runtime.session_factory() as session:
        due = list(session.scalars(
            select(Appointment.id).where(
                Appointment.status == AppointmentStatus.CONFIRMED, Appointment.reminded_at.is_(None),
                Appointment.remind_at <= now, Appointment.start_at > now,
            ).order_by(Appointment.remind_at).limit(limit)
        ))
    claimed = 0
    for appointment_id in due:
        with transaction(runtime.session_factory) as session:
            won = session.execute(
                update(Appointment)
                .where(Appointment.id == appointment_id, Appointment.reminded_at.is_(None),
                       Appointment.status == AppointmentStatus.CONFIRMED, Appointment.remind_at <= now)
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount == 1
        if not won:
            continue
        claimed += 1
        error: str | None = None
        sent: tuple[uuid.UUID, str] | None = None
        try:
            with transaction(runtime.session_factory) as session:
                appointment = session.get(Appointment, appointment_id)
                assert appointment is not None
                sent = _send_reminder(runtime, session, appointment)
                appointment.reminder_message_id, appointment.reminder_channel = sent
                appointment.reminder_error = None
        except (ReminderNotSent, HubError, ValueError) as exc:
            error = str(getattr(exc, "message", exc))[:1000]
            log.warning("appointment reminder not sent", appointment_id=str(appointment_id),
                        error=type(exc).__name__)
        if error is not None:
            with transaction(runtime.session_factory) as session:
                session.execute(update(Appointment).where(Appointment.id == appointment_id)
                                .values(reminder_error=error).execution_options(synchronize_session=False))
    return claimed


def _send_reminder(runtime: Runtime, session: Session, appointment: Appointment) -> tuple[uuid.UUID, str]:
    """Queue the appointment-reminder notification as any template send is queued: the
    tenant's version of the template, the contact's consent, and (unless the booking
    chose a channel) the tenant's fallback order."""
    chosen = appointment.reminder_channel
    phone, email = appointment.contact_phone, appointment.contact_email
    if chosen in ("sms", "whatsapp") and not phone:
        raise ReminderNotSent(f"the contact has no phone number for a {chosen} reminder")
    if chosen == "email" and not email:
        raise ReminderNotSent("the contact has no e-mail address for an email reminder")
    if not phone and not email:
        raise ReminderNotSent("the contact has neither a phone number nor an e-mail address")
    tenant = session.get(Tenant, appointment.tenant_id)
    resource = session.get(CalendarResource, appointment.resource_pk)
    assert tenant is not None and resource is not None
    data = {"customer_name": appointment.contact_name, "business_name": tenant.name,
            "service_name": appointment.title, "appointment_at": appointment.start_at.isoformat(),
            "location": appointment.location or resource.name}
    queued = send_message(
        session=session, runtime=runtime, tenant_id=appointment.tenant_id,
        message_in=MessageCreate(channel=chosen, to=email if chosen == "email" or not phone else phone,
                                 template=REMINDER_TEMPLATE, data=data, fallback=chosen is None),
        idempotency_key=f"{REMINDER_TEMPLATE}:{appointment.id}:{appointment.remind_at.isoformat()}"
        if appointment.remind_at else None,
    )
    return queued.message.id, queued.message.channel
