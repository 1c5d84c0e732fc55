"""What the worker does with verified provider events about messages: thread an
inbound message into its conversation, and move an outbound message forward on a
status callback. Plain functions over a session; the caller commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import case, func, literal, select, update
from sqlalchemy.orm import Session

from connectors.whatsapp_cloud.users import is_bsuid
from hub.db import insert_ignore, new_id
from hub.events.service import publish_conversation_updated, publish_message_received, publish_message_status
from hub.messaging.addresses import InvalidAddress, normalize_email, normalize_phone
from hub.messaging.models import (
    STATUS_RANK,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
)

log = structlog.get_logger("hub.messaging.inbound")

# Provider status words -> ours. Twilio's own (``accepted``, ``scheduled``, ``canceled``)
# and Meta's fold into the same list.
PROVIDER_STATUSES: dict[str, MessageStatus] = {
    "accepted": MessageStatus.QUEUED,
    "scheduled": MessageStatus.QUEUED,
    "queued": MessageStatus.QUEUED,
    "sending": MessageStatus.SENDING,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    # Twilio's: some of a multi-part message's segments reached the handset, not all
    # (api.twilio.com OpenAPI, message_enum_status). It did arrive: delivered, with a note.
    "partially_delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
    "read": MessageStatus.READ,
}
# A callback below "sent" says nothing the delivery worker does not know better:
# applying it could hand a message back to a worker, so it is acknowledged only.
_LOWEST_APPLIED_RANK = STATUS_RANK[MessageStatus.SENT]
# dead-lettered after transient failures; a late callback proves one attempt got through
_DEAD_RANK = STATUS_RANK[MessageStatus.SENDING]


def contact_address(channel: str, raw: str) -> str:
    """The canonical address of a contact on ``channel`` (E.164 for phones).

    A sender that is no phone number (a short code, an alphanumeric sender id) keeps
    its raw spelling: an inbound message is never dropped for its sender's format.
    """
    raw = raw.strip()
    if channel == "whatsapp" and is_bsuid(raw):
        return raw  # Meta's business-scoped id of a user who shows no phone number
    try:
        if channel == "email":
            return normalize_email(raw)
        return normalize_phone(raw)
    except InvalidAddress:
        return raw.removeprefix("whatsapp:").strip() or raw


def _media(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    media = []
    for item in items or []:
        entry: dict[str, Any] = {"url": item.get("url"), "content_type": item.get("content_type")}
        if item.get("id"):  # a provider media id to fetch later (WhatsApp Cloud)
            entry["id"] = item["id"]
        media.append(entry)
    return media


def record_inbound_message(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    integration_id: uuid.UUID | None,
    channel: str,
    from_address: str,
    to_address: str,
    body: str,
    media: list[dict[str, Any]] | None,
    provider_message_id: str | None,
    received_at: datetime,
) -> Message:
    """Store an inbound message in the conversation with its sender, reopening it."""
    if provider_message_id:
        # a repeat (a worker that died after committing) is the message already stored
        existing = session.scalar(
            select(Message).where(
                Message.tenant_id == tenant_id,
                Message.provider_message_id == provider_message_id,
                Message.direction == Direction.INBOUND,
            )
        )
        if existing is not None:
            return existing
    contact = contact_address(channel, from_address)
    ours = contact_address(channel, to_address) if to_address else None
    conversation_id = thread_conversation(
        session, tenant_id=tenant_id, integration_id=integration_id, channel=channel, contact=contact,
        hub_address=ours, received_at=received_at,
    )
    message = Message(
        tenant_id=tenant_id,
        conversation_id=conversation_id,
        integration_id=integration_id,
        direction=Direction.INBOUND,
        channel=channel,
        to_address=ours or "",
        from_address=contact,
        body=body or "",
        media=_media(media),
        status=MessageStatus.RECEIVED,
        provider_message_id=provider_message_id,
        created_at=received_at,
    )
    session.add(message)
    session.flush()
    publish_message_received(session=session, message=message)  # hub.events: the tenant's live stream
    return message


def thread_conversation(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    integration_id: uuid.UUID | None,
    channel: str,
    contact: str,
    hub_address: str | None,
    received_at: datetime,
) -> uuid.UUID:
    """The id of the tenant's conversation with ``contact`` on ``channel``, created if
    need be, (re)opened and with ``last_message_at`` advanced to ``received_at``.

    Insert-or-ignore on the unique ``(tenant, channel, contact)`` then select, so two
    workers threading the first messages of one contact end in one conversation.
    """
    created = insert_ignore(
        session,
        Conversation,
        {
            "id": new_id(),
            "tenant_id": tenant_id,
            "integration_id": integration_id,
            "channel": channel,
            "contact_address": contact,
            "hub_address": hub_address,
            "status": ConversationStatus.OPEN,
            "last_message_at": received_at,
            "created_at": received_at,
            "updated_at": received_at,
        },
        conflict=["tenant_id", "channel", "contact_address"],
    )
    key = (
        Conversation.tenant_id == tenant_id,
        Conversation.channel == channel,
        Conversation.contact_address == contact,
    )
    conversation_id, was = session.execute(select(Conversation.id, Conversation.status).where(*key)).one()
    at = literal(received_at, type_=Conversation.__table__.c.last_message_at.type)
    # One statement, so concurrent messages never move last_message_at backwards.
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(
            status=ConversationStatus.OPEN,
            last_message_at=case(
                (Conversation.last_message_at.is_(None), at),
                (Conversation.last_message_at < received_at, at),
                else_=Conversation.last_message_at,
            ),
            hub_address=func.coalesce(Conversation.hub_address, hub_address),
            integration_id=func.coalesce(Conversation.integration_id, integration_id),
        )
    )
    publish_conversation_updated(session=session, tenant_id=tenant_id, conversation_id=conversation_id,
                                 change="created" if created else "reopened" if was == ConversationStatus.CLOSED
                                 else "advanced")  # hub.events
    return conversation_id


# the name hub.messaging.service imports it under
_conversation_id = thread_conversation


def _rank(status: str) -> int:
    return STATUS_RANK.get(status, _DEAD_RANK if status == MessageStatus.DEAD else -1)


def apply_status(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    error_message: str | None,
    at: datetime,
    integration_id: uuid.UUID | None = None,
) -> Message | None:
    """Move the tenant's outbound message forward to ``status``; never backwards.

    With ``integration_id`` (a provider's callback), only a message sent through that
    integration moves: a status is news only from the account that sent the message."""
    new_status = PROVIDER_STATUSES.get((status or "").lower())
    if new_status is None:
        log.info("unknown provider status ignored", status=status, provider_message_id=provider_message_id)
        return None
    query = select(Message).where(
        Message.tenant_id == tenant_id,
        Message.provider_message_id == provider_message_id,
        Message.direction == Direction.OUTBOUND,
    )
    if integration_id is not None:
        query = query.where(Message.integration_id == integration_id)
    message = session.scalar(query)
    if message is None:
        log.info("status for an unknown message ignored", provider_message_id=provider_message_id,
                 status=status, tenant_id=str(tenant_id))
        return None
    new_rank = STATUS_RANK[new_status]
    if new_rank < _LOWEST_APPLIED_RANK:
        return message
    behind = [s for s in (*STATUS_RANK, MessageStatus.DEAD) if _rank(s) < new_rank]
    when = literal(at, type_=Message.__table__.c.delivered_at.type)
    values: dict[str, Any] = {"status": new_status}
    if new_status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ):
        values["sent_at"] = func.coalesce(Message.sent_at, when)
    if new_status in (MessageStatus.DELIVERED, MessageStatus.READ):
        values["delivered_at"] = func.coalesce(Message.delivered_at, when)
    if (status or "").lower() == "partially_delivered":
        values["error_code"] = str(error_code)[:32] if error_code else None
        values["error_message"] = error_message or "partially delivered: some segments did not reach the handset"
    if new_status in (MessageStatus.UNDELIVERED, MessageStatus.FAILED):
        values["error_code"] = str(error_code)[:32] if error_code else None
        values["error_message"] = error_message or f"the provider reported {status}" + (
            f" (error {error_code})" if error_code else "")
    # The status guard is in the UPDATE itself: two callbacks handled at once by two
    # workers cannot both win, and the later rank always stays.
    moved = session.execute(
        update(Message)
        .where(Message.id == message.id, Message.status.in_(behind))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.flush()
    session.refresh(message)
    if moved:
        publish_message_status(session=session, message=message)  # hub.events: the tenant's live stream
    else:
        log.debug("status not ahead of the message's; ignored", message_id=str(message.id),
                  current=message.status, reported=status)
    return message
