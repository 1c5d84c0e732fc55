"""API shapes of messages and conversations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.smtp.headers import check_header_text
from hub.whatsapp.schemas import WhatsAppTemplateIn

# Twilio refuses a body longer than this on every channel (error 21617).
MAX_BODY_CHARS = 1600
# Twilio attaches at most 10 media to one message.
MAX_MEDIA = 10

MediaUrl = Annotated[AnyHttpUrl, Field(description="a public http(s) URL the provider fetches")]


class MessageContent(BaseModel):
    """What a message says: a body, media, or both."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field("", max_length=MAX_BODY_CHARS, description="the text; SMS counts GSM-7/UCS-2 segments")
    media_urls: list[MediaUrl] = Field(default_factory=list, max_length=MAX_MEDIA)
    whatsapp_template: WhatsAppTemplateIn | None = Field(
        None, description="WhatsApp through a whatsapp_cloud integration: send this approved template instead "
                          "of free text (required outside the 24-hour customer-service window); body is ignored")

    @model_validator(mode="after")
    def _not_empty(self) -> MessageContent:
        if not self.body.strip() and not self.media_urls and self.whatsapp_template is None:
            raise ValueError("a message needs a body, media_urls or a whatsapp_template")
        return self

    def media_list(self) -> list[str]:
        return [str(url) for url in self.media_urls]


class MessageCreate(BaseModel):
    """A body (and/or media) or a template with its data, to a raw address or a contact.

    Fallback: when the channel fails for good, exhausts its retries, or is not possible
    (no address there, opted out, no integration, no text for it in the template), the
    next channel of the tenant's order takes over. On by default for a template or a
    contact when no ``channel`` is named; a named channel, or a raw body to a raw
    address, is kept (a refusal is the answer) unless ``fallback: true``."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "whatsapp", "email"] | None = Field(
        None, description="default: the first possible channel of the tenant's fallback order")
    to: str | None = Field(None, min_length=1, max_length=320,
                           description="a phone number (normalized to E.164) or an e-mail address",
                           examples=["+55 11 98765-4321"])
    contact_id: uuid.UUID | None = Field(None, description="instead of to: the contact's phone / e-mail per channel")
    body: str | None = Field(None, max_length=MAX_BODY_CHARS,
                             description="the text; SMS counts GSM-7/UCS-2 segments")
    media_urls: list[MediaUrl] = Field(default_factory=list, max_length=MAX_MEDIA)
    subject: str | None = Field(None, min_length=1, max_length=200,
                                description="e-mail subject of a body message (default: 'Mensagem de <tenant>')")
    template: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
                                 description="a template name instead of body; rendered at queue time")
    data: dict[str, Any] = Field(default_factory=dict, description="the template's variables")
    locale: str | None = Field(None, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$",
                               description="default: the contact's, else the tenant's")
    fallback: bool | None = Field(None, description="let the next channel take over (see above); default: on "
                                                    "for a template or a contact without a named channel")
    send_at: datetime | None = Field(None, description="send later (status scheduled); a time without offset is "
                                                       "the tenant's time zone; at most a year ahead")
    whatsapp_template: WhatsAppTemplateIn | None = Field(
        None, description="WhatsApp through a whatsapp_cloud integration: send this approved template instead "
                          "of free text (required outside the 24-hour customer-service window)")

    @field_validator("subject")
    @classmethod
    def _one_header_line(cls, value: str | None) -> str | None:
        # checked as the e-mail will mean it: =?utf-8?q?Hi=0D=0ABcc:…?= is a line break too
        return check_header_text(value) if value is not None else value

    @model_validator(mode="after")
    def _one_of_each(self) -> MessageCreate:
        if (self.to is None) == (self.contact_id is None):
            raise ValueError("give exactly one of to, contact_id")
        has_body = bool((self.body or "").strip()) or bool(self.media_urls) or self.whatsapp_template is not None
        if self.template is None and not has_body:
            raise ValueError("a message needs a body or media_urls, or a template")
        if self.template is not None and (self.body is not None or self.media_urls or self.subject):
            raise ValueError("give either a template (with data) or a body, not both")
        if self.template is None and self.data:
            raise ValueError("data goes with a template")
        return self

    def media_list(self) -> list[str]:
        return [str(url) for url in self.media_urls]


class ConversationReply(MessageContent):
    """A reply on the conversation's own channel, to its contact."""


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "closed"]


class MediaRead(BaseModel):
    url: str | None
    content_type: str | None = None


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    channel: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str = Field(description="sending, sent, retry, failed, dead, lost (the worker stopped mid-call) or "
                                     "recovered (an earlier call had been accepted; not sent again)")
    error_code: str | None
    error_message: str | None


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    conversation_id: uuid.UUID | None
    direction: str
    channel: str
    to: str = Field(validation_alias="to_address")
    from_: str | None = Field(validation_alias="from_address", serialization_alias="from")
    body: str
    media: list[MediaRead]
    status: str = Field(description="queued, sending, retrying, sent, delivered, read, undelivered, failed, dead, "
                                    "canceled; received for inbound")
    segments: int | None
    attempt_count: int
    max_attempts: int
    next_attempt_at: datetime | None
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
    broadcast_id: uuid.UUID | None = Field(None, description="the broadcast this message is one of")
    created_at: datetime
    updated_at: datetime
    contact_id: uuid.UUID | None = None
    template: str | None = None
    locale: str | None = None
    subject: str | None = Field(None, description="e-mail only")
    send_at: datetime | None = Field(None, description="when a scheduled message is due")


class HopRead(BaseModel):
    channel: str
    to: str | None
    outcome: str = Field(description="why the message left or passed over this channel: failed, dead (retries "
                                     "exhausted), suppressed (opted out) or skipped (not possible: no address, no "
                                     "integration, no text for it)")
    error_code: str | None
    error_message: str | None
    at: datetime


class MessageDetail(MessageRead):
    attempts: list[AttemptRead] = Field(description="every provider attempt, each with its channel")
    hops: list[HopRead] = Field(default_factory=list, description="the channels this message left or passed over, "
                                                                  "oldest first; channel/status are where it is now")
    fallback_channels: list[str] = Field(default_factory=list, description="channels still to try if this one "
                                                                           "fails")


class MessagingSettingsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel_order: list[Literal["sms", "whatsapp", "email"]]
    email_reply_to: str | None
    email_unsubscribe_url: str | None
    email_unsubscribe_mailto: str | None


class MessagingSettingsUpdate(BaseModel):
    """Fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    channel_order: list[Literal["sms", "whatsapp", "email"]] | None = Field(
        None, min_length=1, max_length=3, description="fallback order, e.g. [whatsapp, sms, email]")
    email_reply_to: str | None = Field(None, max_length=320)
    email_unsubscribe_url: str | None = Field(None, max_length=2000, pattern=r"^https://",
                                              description="https URL for List-Unsubscribe (one-click)")
    email_unsubscribe_mailto: str | None = Field(None, max_length=320)

    @field_validator("email_unsubscribe_url")
    @classmethod
    def _one_header_line(cls, value: str | None) -> str | None:
        # it goes into List-Unsubscribe: a decoded line break would start another header
        return check_header_text(value, name="list-unsubscribe") if value is not None else value

    @model_validator(mode="after")
    def _distinct(self) -> MessagingSettingsUpdate:
        if self.channel_order is not None and len(set(self.channel_order)) != len(self.channel_order):
            raise ValueError("channel_order lists a channel twice")
        return self


class MessagePage(BaseModel):
    data: list[MessageRead]
    next_cursor: str | None = None


class ConversationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: str
    contact_address: str
    hub_address: str | None
    status: str
    last_message_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ConversationDetail(ConversationRead):
    messages: list[MessageRead] = Field(description="the most recent messages, oldest first")
    has_earlier_messages: bool = Field(description="older messages exist: page them with "
                                                   "GET /v1/messages?conversation_id=")


class ConversationPage(BaseModel):
    data: list[ConversationRead]
    next_cursor: str | None = None
