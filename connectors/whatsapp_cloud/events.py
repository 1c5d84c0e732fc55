"""Meta's ``messages`` webhook -> normalized ``InboundEvent``s.

One POST may batch many ``entry`` items (one per WhatsApp Business account) each with
many ``changes``; a change's ``value`` holds ``messages[]`` (customer -> business) or
``statuses[]`` (what became of our sends). Every message type listed in
``RECEIVED_MESSAGE_TYPES`` becomes ``message.received``; statuses in
``STATUS_VALUES`` become ``message.status``. Everything else (reactions, contacts,
system notices, ``errors[]``, other webhook fields) is acknowledged and ignored on
purpose. The parser never trusts shape: a missing or odd key skips that item rather
than failing the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import MESSAGE_RECEIVED, MESSAGE_STATUS, InboundEvent, ProviderId, load_json

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
RECEIVED_MESSAGE_TYPES = frozenset({"text", "interactive", "button", "location"} | MEDIA_TYPES)
STATUS_VALUES = frozenset({"sent", "delivered", "read", "failed"})
INTERACTIVE_REPLIES = ("button_reply", "list_reply")


class MalformedWebhook(ValueError):
    """The body is not JSON shaped like Meta's webhook envelope."""


def load_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = load_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedWebhook(f"webhook body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedWebhook("webhook body is not a JSON object")
    return payload


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _timestamp(value: Any) -> datetime | None:
    """Meta sends Unix seconds as a string."""
    try:
        return datetime.fromtimestamp(int(str(value)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _changes(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``value`` of every ``messages`` change, across all batched entries."""
    if payload.get("object", "whatsapp_business_account") != "whatsapp_business_account":
        return
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field", "messages") == "messages" and isinstance(value, dict):
                yield value


def _phone_number_id(value: dict[str, Any]) -> ProviderId | None:
    """Meta's id of the business number (a provider id: digits that are not a phone number)."""
    metadata = value.get("metadata")
    text = _text(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
    return ProviderId(text) if text else None


def _display_phone_number(value: dict[str, Any]) -> str | None:
    """The business number itself as Meta displays it (international digits, no ``+``)."""
    metadata = value.get("metadata")
    return _text(metadata.get("display_phone_number")) if isinstance(metadata, dict) else None


def route_keys_of(body: bytes) -> list[str]:
    """Every distinct ``metadata.phone_number_id`` in the payload, in order of appearance
    (a batched POST may carry the changes of several numbers)."""
    try:
        payload = load_payload(body)
    except MalformedWebhook:
        return []
    keys: dict[str, None] = {}
    for value in _changes(payload):
        phone_number_id = _phone_number_id(value)
        if phone_number_id:
            keys[phone_number_id] = None
    return list(keys)


@dataclass(frozen=True)
class _Profile:
    """A ``contacts[]`` entry: who wrote, as far as Meta says (see users.py)."""

    wa_id: str | None
    user_id: str | None
    name: str | None
    username: str | None


def _profiles(value: dict[str, Any]) -> list[_Profile]:
    profiles = []
    for contact in _dicts(value.get("contacts")):
        profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
        profiles.append(_Profile(_text(contact.get("wa_id")), _text(contact.get("user_id")),
                                 _text(profile.get("name")), _text(profile.get("username"))))
    return profiles


def _profile_of(profiles: list[_Profile], wa_id: str | None, user_id: str | None) -> _Profile | None:
    """The sender's contacts[] entry (by phone or BSUID); the only one when it names neither."""
    for profile in profiles:
        if (wa_id and profile.wa_id == wa_id) or (user_id and profile.user_id == user_id):
            return profile
    return profiles[0] if len(profiles) == 1 else None


def _content(message: dict[str, Any], kind: str) -> tuple[str, dict | None, dict | None, dict | None] | None:
    """(body, media, reply, location) for a supported message, or None to ignore it."""
    content = message.get(kind)
    if not isinstance(content, dict):
        return None
    if kind == "text":
        body = _text(content.get("body"))
        return (body, None, None, None) if body is not None else None
    if kind in MEDIA_TYPES:
        media = {
            key: content[key]
            for key in ("id", "mime_type", "sha256", "caption", "filename", "animated", "voice")
            if key in content
        }
        if not _text(media.get("id")):
            return None
        return (_text(content.get("caption")) or "", media, None, None)
    if kind == "interactive":
        reply_kind = content.get("type")
        reply = content.get(reply_kind) if reply_kind in INTERACTIVE_REPLIES else None
        if not isinstance(reply, dict) or not _text(reply.get("id")):
            return None  # flows (nfm_reply) and other interactive kinds are not handled here
        normalized = {"kind": reply_kind, "id": _text(reply.get("id")), "title": _text(reply.get("title"))}
        if reply_kind == "list_reply":
            normalized["description"] = _text(reply.get("description"))
        return (normalized["title"] or "", None, normalized, None)
    if kind == "button":
        reply = {"kind": "button", "payload": _text(content.get("payload")), "text": _text(content.get("text"))}
        return (reply["text"] or "", None, reply, None)
    if kind == "location":
        location = {key: content[key] for key in ("latitude", "longitude", "name", "address", "url") if key in content}
        if "latitude" not in location or "longitude" not in location:
            return None
        return (_text(location.get("name")) or _text(location.get("address")) or "", None, None, location)
    return None


def _message_event(message: dict[str, Any], phone_number_id: ProviderId | None, display_phone_number: str | None,
                   profiles: list[_Profile]) -> InboundEvent | None:
    message_id = _text(message.get("id"))
    kind = _text(message.get("type"))
    if not message_id or kind not in RECEIVED_MESSAGE_TYPES:
        return None
    content = _content(message, kind)
    if content is None:
        return None
    body, media, reply, location = content
    sender = _text(message.get("from"))  # the phone number; omitted for a username-only user
    user_id = _text(message.get("from_user_id"))
    profile = _profile_of(profiles, sender, user_id)
    user_id = user_id or (profile.user_id if profile else None)
    if not sender and not user_id:
        return None  # nobody to answer
    occurred_at = _timestamp(message.get("timestamp"))
    context = message.get("context")
    data = {
        "message_id": message_id,
        "phone_number_id": phone_number_id,
        # the address the customer wrote to; phone_number_id above is only Meta's id for it
        "display_phone_number": display_phone_number,
        "from": sender,
        "from_user_id": user_id,  # the business-scoped user id (BSUID)
        "username": profile.username if profile else None,
        "profile_name": profile.name if profile else None,
        "type": kind,
        "body": body,
        "media": media,
        "reply": reply,
        "location": location,
        # the business message this one answers (quoted reply, button tap)
        "context": {"message_id": _text(context.get("id")), "from": _text(context.get("from"))}
        if isinstance(context, dict)
        else None,
        "timestamp": occurred_at.isoformat() if occurred_at else None,
    }
    return InboundEvent(type=MESSAGE_RECEIVED, provider_event_id=message_id, data=data, occurred_at=occurred_at)


def _status_event(status: dict[str, Any], phone_number_id: ProviderId | None) -> InboundEvent | None:
    message_id = _text(status.get("id"))
    value = _text(status.get("status"))
    if not message_id or value not in STATUS_VALUES:
        return None
    errors = [
        {
            "code": _text(error.get("code")),
            "title": _text(error.get("title")),
            "message": _text(error.get("message")),
            "details": _text(error["error_data"].get("details")) if isinstance(error.get("error_data"), dict) else None,
        }
        for error in _dicts(status.get("errors"))
    ]
    occurred_at = _timestamp(status.get("timestamp"))
    conversation = status.get("conversation")
    pricing = status.get("pricing")
    data = {
        "message_id": message_id,
        "phone_number_id": phone_number_id,
        "status": value,
        "recipient_id": _text(status.get("recipient_id")),  # the phone; omitted for a BSUID-only user
        "recipient_user_id": _text(status.get("recipient_user_id")),
        "timestamp": occurred_at.isoformat() if occurred_at else None,
        "errors": errors,
        "error_code": errors[0]["code"] if errors else None,
        "error_title": errors[0]["title"] if errors else None,
        "conversation_id": _text(conversation.get("id")) if isinstance(conversation, dict) else None,
        "pricing_category": _text(pricing.get("category")) if isinstance(pricing, dict) else None,
        # echoes the ``biz_opaque_callback_data`` we sent (our idempotency key)
        "callback_data": _text(status.get("biz_opaque_callback_data")),
    }
    return InboundEvent(
        type=MESSAGE_STATUS, provider_event_id=f"{message_id}:{value}", data=data, occurred_at=occurred_at
    )


def parse_webhook(body: bytes) -> list[InboundEvent]:
    """Every supported message and status in a (possibly batched) webhook body."""
    payload = load_payload(body)
    events: list[InboundEvent] = []
    for value in _changes(payload):
        phone_number_id = _phone_number_id(value)
        profiles = _profiles(value)
        for message in _dicts(value.get("messages")):
            event = _message_event(message, phone_number_id, _display_phone_number(value), profiles)
            if event is not None:
                events.append(event)
        for status in _dicts(value.get("statuses")):
            event = _status_event(status, phone_number_id)
            if event is not None:
                events.append(event)
    return events
