"""Threading inbound messages into conversations, and status callbacks moving
outbound messages forward only — the functions the webhook worker calls."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from hub.db import utcnow
from hub.messaging.inbound import apply_status, record_inbound_message
from hub.messaging.models import Conversation, ConversationStatus, Direction, Message, MessageStatus
from tests.support import create_tenant

OUR_NUMBER = "+5511930000001"
CONTACT = "+5511987654321"


def receive(runtime, tenant_id: uuid.UUID, *, channel: str = "sms", from_address: str = CONTACT,
            body: str = "Olá", media=None, provider_message_id: str | None = None, received_at=None) -> Message:
    with runtime.session_factory() as session, session.begin():
        message = record_inbound_message(
            session=session, tenant_id=tenant_id, integration_id=None, channel=channel, from_address=from_address,
            to_address=OUR_NUMBER, body=body, media=media,
            provider_message_id=provider_message_id or f"SM{uuid.uuid4().hex}", received_at=received_at or utcnow(),
        )
        session.expunge(message)
        return message


def conversations(runtime, tenant_id: uuid.UUID) -> list[Conversation]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Conversation).where(Conversation.tenant_id == tenant_id)))


def outbound(runtime, tenant_id: uuid.UUID, *, status: str = MessageStatus.SENT, provider_message_id: str) -> uuid.UUID:
    with runtime.session_factory() as session, session.begin():
        message = Message(tenant_id=tenant_id, direction=Direction.OUTBOUND, channel="sms", to_address=CONTACT,
                          from_address=OUR_NUMBER, body="Sua consulta é amanhã", status=status,
                          provider_message_id=provider_message_id)
        session.add(message)
        session.flush()
        return message.id


def status_of(runtime, message_id: uuid.UUID) -> Message:
    with runtime.session_factory() as session:
        return session.get(Message, message_id)


def callback(runtime, tenant_id: uuid.UUID, sid: str, status: str, *, error_code: str | None = None,
             at=None) -> Message | None:
    with runtime.session_factory() as session, session.begin():
        return apply_status(session=session, tenant_id=tenant_id, provider_message_id=sid, status=status,
                            error_code=error_code, error_message=None, at=at or utcnow())


class TestThreading:
    def test_messages_from_one_contact_share_a_conversation(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        first = receive(runtime, tenant_id, body="oi")
        second = receive(runtime, tenant_id, body="tudo bem?")

        [conversation] = conversations(runtime, tenant_id)
        assert first.conversation_id == second.conversation_id == conversation.id
        assert (conversation.channel, conversation.contact_address, conversation.hub_address) == (
            "sms", CONTACT, OUR_NUMBER)
        assert conversation.status == ConversationStatus.OPEN
        assert (second.direction, second.status, second.from_address, second.to_address) == (
            "inbound", "received", CONTACT, OUR_NUMBER)

    def test_a_whatsapp_id_without_the_ninth_digit_is_the_same_contact(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        with_nine = receive(runtime, tenant_id, channel="whatsapp", from_address="whatsapp:+5511987654321")
        without = receive(runtime, tenant_id, channel="whatsapp", from_address="whatsapp:+551187654321")
        wa_id = receive(runtime, tenant_id, channel="whatsapp", from_address="551187654321")

        [conversation] = conversations(runtime, tenant_id)
        assert conversation.contact_address == "+5511987654321"
        assert {with_nine.conversation_id, without.conversation_id, wa_id.conversation_id} == {conversation.id}

    def test_a_landline_never_gains_a_ninth_digit(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        receive(runtime, tenant_id, from_address="+551133334444")
        assert [c.contact_address for c in conversations(runtime, tenant_id)] == ["+551133334444"]

    def test_channels_and_tenants_are_separate_threads(self, runtime):
        a, b = create_tenant(runtime, "a"), create_tenant(runtime, "b")
        receive(runtime, a, channel="sms")
        receive(runtime, a, channel="whatsapp")
        receive(runtime, b, channel="sms")
        assert sorted(c.channel for c in conversations(runtime, a)) == ["sms", "whatsapp"]
        assert [c.channel for c in conversations(runtime, b)] == ["sms"]

    def test_a_closed_conversation_reopens(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        message = receive(runtime, tenant_id)
        with runtime.session_factory() as session, session.begin():
            session.get(Conversation, message.conversation_id).status = ConversationStatus.CLOSED
        receive(runtime, tenant_id, body="ainda preciso de ajuda")
        [conversation] = conversations(runtime, tenant_id)
        assert conversation.status == ConversationStatus.OPEN

    def test_last_message_at_only_moves_forward(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        now = utcnow()
        receive(runtime, tenant_id, received_at=now)
        receive(runtime, tenant_id, received_at=now - timedelta(minutes=3))  # handled late, after a retry
        [conversation] = conversations(runtime, tenant_id)
        assert conversation.last_message_at == now

    def test_media_is_stored_as_url_and_content_type(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        media = [{"url": "https://api.twilio.com/…/Media/ME1", "content_type": "image/jpeg"},
                 {"url": "https://api.twilio.com/…/Media/ME2", "content_type": "application/pdf"}]
        message = receive(runtime, tenant_id, body="", media=media)
        assert message.media == media
        assert message.body == ""

    def test_a_sender_that_is_no_phone_number_keeps_its_spelling(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        receive(runtime, tenant_id, from_address="29345")  # a short code
        assert [c.contact_address for c in conversations(runtime, tenant_id)] == ["29345"]

    def test_the_same_provider_message_twice_is_stored_once(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        first = receive(runtime, tenant_id, provider_message_id="SM" + "a" * 32)
        again = receive(runtime, tenant_id, provider_message_id="SM" + "a" * 32)
        assert first.id == again.id
        with runtime.session_factory() as session:
            assert session.scalar(select(func.count()).select_from(Message)) == 1

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    def test_concurrent_first_messages_make_one_conversation(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def first_message() -> None:
            try:
                barrier.wait(5)
                receive(runtime, tenant_id)
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=first_message) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == []
        [conversation] = conversations(runtime, tenant_id)
        with runtime.session_factory() as session:
            count = session.scalar(select(func.count()).select_from(Message)
                                   .where(Message.conversation_id == conversation.id))
        assert count == 6


class TestStatus:
    def test_statuses_move_a_message_forward(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        message_id = outbound(runtime, tenant_id, status=MessageStatus.SENDING, provider_message_id="SM1")
        callback(runtime, tenant_id, "SM1", "sent")
        assert status_of(runtime, message_id).status == "sent"
        delivered_at = utcnow()
        callback(runtime, tenant_id, "SM1", "delivered", at=delivered_at)
        message = status_of(runtime, message_id)
        assert (message.status, message.delivered_at) == ("delivered", delivered_at)
        assert message.sent_at is not None

    def test_never_backwards(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        message_id = outbound(runtime, tenant_id, provider_message_id="SM1")
        callback(runtime, tenant_id, "SM1", "read")
        callback(runtime, tenant_id, "SM1", "delivered")  # a late delivered after read
        callback(runtime, tenant_id, "SM1", "sent")
        callback(runtime, tenant_id, "SM1", "queued")
        message = status_of(runtime, message_id)
        assert message.status == "read"
        assert message.delivered_at is not None  # read implies delivered

    def test_a_late_sent_after_delivered_is_ignored(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        message_id = outbound(runtime, tenant_id, provider_message_id="SM1")
        first = utcnow()
        callback(runtime, tenant_id, "SM1", "delivered", at=first)
        callback(runtime, tenant_id, "SM1", "sent", at=first + timedelta(seconds=5))
        assert status_of(runtime, message_id).status == "delivered"
        callback(runtime, tenant_id, "SM1", "delivered", at=first + timedelta(seconds=9))
        message = status_of(runtime, message_id)
        assert (message.status, message.delivered_at) == ("delivered", first)

    def test_an_undelivered_message_carries_the_providers_error(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        message_id = outbound(runtime, tenant_id, provider_message_id="SM1")
        callback(runtime, tenant_id, "SM1", "undelivered", error_code="30003")
        message = status_of(runtime, message_id)
        assert (message.status, message.error_code) == ("undelivered", "30003")
        assert "30003" in message.error_message
        # a terminal state is not left sideways either
        callback(runtime, tenant_id, "SM1", "failed", error_code="30005")
        assert status_of(runtime, message_id).error_code == "30003"

    def test_partially_delivered_is_delivered_with_a_note(self, runtime):
        """Twilio's ``partially_delivered`` (some segments of a long SMS arrived, not all)."""
        tenant_id = create_tenant(runtime, "a")
        message_id = outbound(runtime, tenant_id, provider_message_id="SM2")
        callback(runtime, tenant_id, "SM2", "partially_delivered")
        message = status_of(runtime, message_id)
        assert message.status == "delivered" and message.delivered_at is not None
        assert message.error_message == "partially delivered: some segments did not reach the handset"

    def test_provider_queued_or_sending_never_hands_a_message_back(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        message_id = outbound(runtime, tenant_id, status=MessageStatus.SENDING, provider_message_id="SM1")
        callback(runtime, tenant_id, "SM1", "queued")
        callback(runtime, tenant_id, "SM1", "accepted")
        assert status_of(runtime, message_id).status == "sending"

    def test_an_unknown_provider_id_is_ignored_with_a_log_line(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        with capture_logs() as logs:
            assert callback(runtime, tenant_id, "SM-nobody", "delivered") is None
        assert any(entry["event"] == "status for an unknown message ignored" for entry in logs)

    def test_another_tenants_callback_does_not_touch_the_message(self, runtime):
        a, b = create_tenant(runtime, "a"), create_tenant(runtime, "b")
        message_id = outbound(runtime, a, provider_message_id="SM1")
        assert callback(runtime, b, "SM1", "failed", error_code="30005") is None
        assert status_of(runtime, message_id).status == "sent"

    def test_an_inbound_message_with_that_id_is_not_an_outbound_one(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        receive(runtime, tenant_id, provider_message_id="SM1")
        assert callback(runtime, tenant_id, "SM1", "delivered") is None
