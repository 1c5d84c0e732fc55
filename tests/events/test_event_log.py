"""The event log: what the messaging hooks write, and the retention sweep."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from hub.db import transaction, utcnow
from hub.events.models import TenantEvent
from hub.events.service import publish_event, sweep_old_events
from hub.messaging.delivery import deliver_message
from hub.messaging.inbound import apply_status, record_inbound_message
from hub.messaging.models import Direction, Message, MessageStatus
from hub.queue import EVENTS_SWEEP
from tests.support import create_tenant, tenant_headers

OUR_NUMBER = "+5511930000001"
CONTACT = "+5511987654321"


def receive(runtime, tenant_id: uuid.UUID, *, body: str = "Olá", sid: str | None = None) -> uuid.UUID:
    with transaction(runtime.session_factory) as session:
        return record_inbound_message(
            session=session, tenant_id=tenant_id, integration_id=None, channel="sms", from_address=CONTACT,
            to_address=OUR_NUMBER, body=body, media=None, provider_message_id=sid or f"SM{uuid.uuid4().hex}",
            received_at=utcnow()).id


def logged(runtime, tenant_id: uuid.UUID) -> list[TenantEvent]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(TenantEvent).where(TenantEvent.tenant_id == tenant_id)
                                    .order_by(TenantEvent.id)))


def outbound(runtime, tenant_id: uuid.UUID, **columns) -> uuid.UUID:
    with transaction(runtime.session_factory) as session:
        message = Message(tenant_id=tenant_id, direction=Direction.OUTBOUND, channel="sms", to_address=CONTACT,
                          from_address=OUR_NUMBER, body="Sua consulta é amanhã", **columns)
        session.add(message)
        session.flush()
        return message.id


class TestHooks:
    def test_an_inbound_message_logs_its_conversation_then_itself_without_its_content(self, runtime):
        tenant_id = create_tenant(runtime, "acme")
        first = receive(runtime, tenant_id, body="Quero remarcar", sid="SM1")
        second = receive(runtime, tenant_id, body="Pode ser às 10h?")
        receive(runtime, tenant_id, sid="SM1")  # a repeat of the first: already stored, nothing new

        events = logged(runtime, tenant_id)
        assert [(e.type, e.data.get("change")) for e in events] == [
            ("conversation.updated", "created"), ("message.received", None),
            ("conversation.updated", "advanced"), ("message.received", None)]
        conversation_id = events[0].data["conversation_id"]
        assert events[1].data == {"message_id": str(first), "conversation_id": conversation_id, "channel": "sms",
                                  "direction": "inbound", "status": "received"}
        assert events[3].data["message_id"] == str(second)
        assert events[2].data["status"] == "open" and events[2].data["last_message_at"]
        assert [e.id for e in events] == sorted(e.id for e in events)
        for event in events:  # nothing the person wrote, nor their number
            assert "remarcar" not in str(event.data) and CONTACT not in str(event.data)

    def test_a_status_callback_logs_only_a_status_that_moved(self, runtime):
        tenant_id = create_tenant(runtime, "acme")
        message_id = outbound(runtime, tenant_id, status=MessageStatus.SENT, provider_message_id="SM9")

        def callback(status: str, error_code: str | None = None) -> None:
            with transaction(runtime.session_factory) as session:
                apply_status(session=session, tenant_id=tenant_id, provider_message_id="SM9", status=status,
                             error_code=error_code, error_message=None, at=utcnow())

        callback("delivered")
        callback("sent")  # late: does not move it
        callback("read")

        events = logged(runtime, tenant_id)
        assert [(e.type, e.data["status"]) for e in events] == [("message.status", "delivered"),
                                                                 ("message.status", "read")]
        assert events[0].data["message_id"] == str(message_id) and events[0].data["direction"] == "outbound"

    def test_a_delivery_outcome_logs_the_new_status(self, runtime):
        tenant_id = create_tenant(runtime, "acme")
        # queued on no integration: the one attempt fails permanently, without calling anyone
        message_id = outbound(runtime, tenant_id, status=MessageStatus.QUEUED, next_attempt_at=utcnow())

        assert deliver_message(runtime=runtime, message_id=message_id) == "failed"

        [event] = logged(runtime, tenant_id)
        assert (event.type, event.data["status"], event.data["error_code"]) == (
            "message.status", "failed", "integration_missing")

    def test_closing_and_reopening_a_conversation_is_logged_by_the_api_or_a_new_message(self, client, runtime):
        tenant_id, headers = tenant_headers(client, runtime, "acme")
        receive(runtime, tenant_id)
        [conversation_id] = {e.data["conversation_id"] for e in logged(runtime, tenant_id)}

        for status in ("closed", "open"):
            answer = client.patch(f"/v1/conversations/{conversation_id}", json={"status": status}, headers=headers)
            assert answer.status_code == 200, answer.text

        answer = client.patch(f"/v1/conversations/{conversation_id}", json={"status": "closed"}, headers=headers)
        receive(runtime, tenant_id)  # the contact writes again

        changes = [(e.data["change"], e.data["status"]) for e in logged(runtime, tenant_id)
                   if e.type == "conversation.updated"]
        assert changes == [("created", "open"), ("closed", "closed"), ("open", "open"), ("closed", "closed"),
                           ("reopened", "open")]

    def test_another_tenants_hooks_stay_in_its_own_log(self, runtime):
        acme, other = create_tenant(runtime, "acme"), create_tenant(runtime, "other")
        receive(runtime, acme)
        assert logged(runtime, other) == []
        assert len(logged(runtime, acme)) == 2


    def test_an_unknown_event_type_is_refused_loudly(self, runtime):
        tenant_id = create_tenant(runtime, "acme")
        with runtime.session_factory() as session, pytest.raises(ValueError, match="EVENT_TYPES"):
            publish_event(session=session, tenant_id=tenant_id, type="message.deleted", data={})


class TestRetention:
    def test_the_sweep_deletes_only_events_older_than_the_retention(self, runtime):
        tenant_id, other = create_tenant(runtime, "acme"), create_tenant(runtime, "other")
        days = runtime.settings.events_retention_days
        with transaction(runtime.session_factory) as session:
            for tid in (tenant_id, other):
                old = publish_event(session=session, tenant_id=tid, type="message.received", data={"n": "old"})
                old.created_at = utcnow() - timedelta(days=days, minutes=1)
                young = publish_event(session=session, tenant_id=tid, type="message.received", data={"n": "young"})
                young.created_at = utcnow() - timedelta(days=days, minutes=-1)

        assert sweep_old_events(runtime=runtime) == 2
        assert [e.data["n"] for e in logged(runtime, tenant_id)] == ["young"]
        assert [e.data["n"] for e in logged(runtime, other)] == ["young"]
        assert sweep_old_events(runtime=runtime) == 0

    def test_beat_runs_the_sweep_task(self, runtime):
        tenant_id = create_tenant(runtime, "acme")
        with transaction(runtime.session_factory) as session:
            old = publish_event(session=session, tenant_id=tenant_id, type="message.received", data={})
            old.created_at = utcnow() - timedelta(days=runtime.settings.events_retention_days + 1)

        assert EVENTS_SWEEP in {entry["task"] for entry in runtime.celery.conf.beat_schedule.values()}
        runtime.celery.loader.import_default_modules()
        # .result, not .get(): an embedded worker started earlier in this process marks
        # joins as blocking, and an eager result's get() then refuses
        result = runtime.celery.tasks[EVENTS_SWEEP].apply()
        assert result.successful() and result.result == 1
        assert logged(runtime, tenant_id) == []

    def test_ids_are_never_reused_once_the_newest_events_are_swept(self, runtime):
        tenant_id = create_tenant(runtime, "acme")
        with transaction(runtime.session_factory) as session:
            newest = publish_event(session=session, tenant_id=tenant_id, type="message.received", data={}).id
        with transaction(runtime.session_factory) as session:
            session.execute(delete(TenantEvent))
        with transaction(runtime.session_factory) as session:
            assert publish_event(session=session, tenant_id=tenant_id, type="message.received", data={}).id > newest
