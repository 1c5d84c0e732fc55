"""Outbound messages, the dead-letter queue and conversations. The tenant is the token's."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi import status as http

from hub.auth.deps import tenant_with
from hub.deps import DbSession, HubRuntime
from hub.errors import AUTHENTICATED_ERRORS, error_responses
from hub.messaging import channels, service
from hub.messaging.models import Message, MessageStatus
from hub.messaging.schemas import (
    AttemptRead,
    ConversationDetail,
    ConversationPage,
    ConversationRead,
    ConversationReply,
    ConversationUpdate,
    HopRead,
    MessageCreate,
    MessageDetail,
    MessagePage,
    MessageRead,
    MessagingSettingsRead,
    MessagingSettingsUpdate,
)
from hub.messaging.service import QueuedMessage
from hub.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", responses=AUTHENTICATED_ERRORS)

IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=255,
    description="repeat a request safely: the same key and body return the first answer "
                "(with Idempotent-Replay: true); a key still in progress is a 409; another body, a 422",
)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
Channel = Literal["sms", "whatsapp", "email"]
QUEUED_RESPONSES = error_responses(409)


def _queued(queued: QueuedMessage, response: Response) -> MessageRead:
    if queued.replayed:
        response.headers["Idempotent-Replay"] = "true"
    return MessageRead.model_validate(queued.message)


# --- messages -----------------------------------------------------------------------


@router.post("/messages", status_code=http.HTTP_202_ACCEPTED, response_model=MessageRead,
             responses=QUEUED_RESPONSES, tags=["messages"])
def send_message(message_in: MessageCreate, response: Response, session: DbSession, runtime: HubRuntime,
                 principal: tenant_with("messages:write"), idempotency_key: IdempotencyKey = None) -> MessageRead:
    """Queue an SMS, WhatsApp or e-mail message: a ``body`` or a ``template`` with ``data``,
    to ``to`` or to a ``contact_id``.

    A phone ``to`` is normalized to E.164 (a Brazilian mobile with or without its ninth
    digit is one number); an SMS may take at most 10 segments (GSM-7 or UCS-2). A template
    is rendered now, in the contact's locale (else the tenant's): a missing variable is a
    422 naming it. Without ``channel`` the first possible channel of the tenant's fallback
    order is used; with fallback, a channel that fails for good, runs out of retries or
    finds the recipient opted out hands over to the next (``hops`` in the message). A
    recipient opted out of every channel gives a ``suppressed`` message (202, not an
    error). ``send_at`` schedules it (``scheduled``; cancel with DELETE). The answer is
    ``queued``: delivery happens in the background, with retries; follow it with
    ``GET /v1/messages/{id}``. 409 when no integration can send it; 404 for another
    tenant's contact."""
    return _queued(service.send_message(session=session, runtime=runtime, tenant_id=principal.tenant_id,
                                        message_in=message_in, idempotency_key=idempotency_key), response)


@router.get("/messages", response_model=MessagePage, tags=["messages"])
def list_messages(
    session: DbSession,
    principal: tenant_with("messages:read"),
    status: MessageStatus | None = None,
    channel: Channel | None = None,
    to: Annotated[str | None, Query(max_length=64, description="a phone number, in any spelling")] = None,
    direction: Literal["inbound", "outbound"] | None = None,
    conversation_id: uuid.UUID | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> MessagePage:
    """The tenant's messages, newest first. ``status=dead`` lists the dead-letter queue."""
    page = service.list_messages(session=session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor,
                                 status=status, channel=channel, to=to, direction=direction,
                                 conversation_id=conversation_id)
    return MessagePage(data=[MessageRead.model_validate(m) for m in page.items], next_cursor=page.next_cursor)


@router.get("/messages/{message_id}", response_model=MessageDetail, tags=["messages"])
def get_message(message_id: uuid.UUID, session: DbSession, principal: tenant_with("messages:read")) -> MessageDetail:
    """One message with every delivery attempt."""
    message = service.get_message(session=session, tenant_id=principal.tenant_id, message_id=message_id)
    return _detail(message, service.message_attempts(session=session, tenant_id=principal.tenant_id,
                                                     message_id=message.id))


@router.post("/messages/{message_id}/retry", status_code=http.HTTP_202_ACCEPTED, response_model=MessageRead,
             responses=QUEUED_RESPONSES, tags=["messages"])
def retry_message(message_id: uuid.UUID, session: DbSession, runtime: HubRuntime,
                  principal: tenant_with("messages:write")) -> MessageRead:
    """Queue a dead, failed or undelivered message again with a fresh set of attempts;
    409 for a message in any other status."""
    return MessageRead.model_validate(service.retry_message(session=session, runtime=runtime,
                                                            tenant_id=principal.tenant_id, message_id=message_id))


@router.delete("/messages/{message_id}", response_model=MessageRead, responses=error_responses(409),
               tags=["messages"])
def cancel_message(message_id: uuid.UUID, session: DbSession, principal: tenant_with("messages:write")) -> MessageRead:
    """Cancel a scheduled (or queued) message no worker has taken yet: it becomes
    ``canceled`` and is never sent. 409 ``message_not_cancelable`` once it is being sent or was."""
    return MessageRead.model_validate(service.cancel_message(session=session, tenant_id=principal.tenant_id,
                                                             message_id=message_id))


def _detail(message: Message, attempts: list) -> MessageDetail:
    return MessageDetail(**MessageRead.model_validate(message).model_dump(),
                         attempts=[AttemptRead.model_validate(a) for a in attempts],
                         hops=[HopRead.model_validate(h) for h in message.hops or []],
                         fallback_channels=list(message.channel_plan or []))


# --- settings -----------------------------------------------------------------------


@router.get("/messaging/settings", response_model=MessagingSettingsRead, tags=["messages"])
def get_messaging_settings(session: DbSession, principal: tenant_with("messages:read")) -> MessagingSettingsRead:
    """The tenant's channel fallback order and e-mail headers (defaults until changed)."""
    return MessagingSettingsRead.model_validate(channels.messaging_settings(session, principal.tenant_id))


@router.put("/messaging/settings", response_model=MessagingSettingsRead, tags=["messages"])
def put_messaging_settings(settings_in: MessagingSettingsUpdate, session: DbSession,
                           principal: tenant_with("messages:write")) -> MessagingSettingsRead:
    """Change the fallback order (default ``[whatsapp, sms, email]``), the e-mail Reply-To and the
    List-Unsubscribe targets; fields left out keep their value, ``null`` clears one."""
    return MessagingSettingsRead.model_validate(service.put_messaging_settings(
        session=session, tenant_id=principal.tenant_id, settings_in=settings_in))


# --- conversations ------------------------------------------------------------------


@router.get("/conversations", response_model=ConversationPage, tags=["conversations"])
def list_conversations(
    session: DbSession,
    principal: tenant_with("messages:read"),
    status: Literal["open", "closed"] | None = None,
    channel: Channel | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ConversationPage:
    """The tenant's conversations, the most recently active first."""
    page = service.list_conversations(session=session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor,
                                      status=status, channel=channel)
    return ConversationPage(data=[ConversationRead.model_validate(c) for c in page.items],
                            next_cursor=page.next_cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail, tags=["conversations"])
def get_conversation(
    conversation_id: uuid.UUID,
    session: DbSession,
    principal: tenant_with("messages:read"),
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="how many of the latest messages")] = 100,
) -> ConversationDetail:
    """One conversation with its latest messages, oldest first."""
    conversation = service.get_conversation(session=session, tenant_id=principal.tenant_id,
                                            conversation_id=conversation_id)
    messages, earlier = service.conversation_messages(session=session, tenant_id=principal.tenant_id,
                                                      conversation_id=conversation.id, limit=limit)
    return ConversationDetail(**ConversationRead.model_validate(conversation).model_dump(),
                              messages=[MessageRead.model_validate(m) for m in messages],
                              has_earlier_messages=earlier)


@router.post("/conversations/{conversation_id}/messages", status_code=http.HTTP_202_ACCEPTED,
             response_model=MessageRead, responses=QUEUED_RESPONSES, tags=["conversations"])
def reply_to_conversation(conversation_id: uuid.UUID, reply_in: ConversationReply, response: Response,
                          session: DbSession, runtime: HubRuntime, principal: tenant_with("messages:write"),
                          idempotency_key: IdempotencyKey = None) -> MessageRead:
    """Reply to the conversation's contact on its channel (queued like ``POST /v1/messages``)."""
    return _queued(service.reply_to_conversation(
        session=session, runtime=runtime, tenant_id=principal.tenant_id, conversation_id=conversation_id,
        reply_in=reply_in, idempotency_key=idempotency_key), response)


@router.patch("/conversations/{conversation_id}", response_model=ConversationRead, tags=["conversations"])
def update_conversation(conversation_id: uuid.UUID, conversation_in: ConversationUpdate, session: DbSession,
                        principal: tenant_with("messages:write")) -> ConversationRead:
    """Close or reopen a conversation (a new message reopens it too)."""
    return ConversationRead.model_validate(service.update_conversation(
        session=session, tenant_id=principal.tenant_id, conversation_id=conversation_id,
        conversation_in=conversation_in))
