"""Queries of contacts, their consents and auto-replies, tenant-filtered here and nowhere else."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.contacts.models import AutoReplyRule, AutoReplySent, BusinessHours, ConsentStatus, Contact, ContactConsent
from hub.db import insert_ignore, new_id
from hub.messaging.models import Conversation, Message
from hub.messaging.repository import _newest_first
from hub.pagination import Page

PHONE_CHANNELS = ("sms", "whatsapp")


class ContactRepository:
    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def _scoped(self) -> Select[tuple[Contact]]:
        return select(Contact).where(Contact.tenant_id == self.tenant_id)

    def get(self, contact_id: uuid.UUID) -> Contact | None:
        contact = self.session.get(Contact, contact_id)
        return contact if contact is not None and contact.tenant_id == self.tenant_id else None

    def live(self, contact_id: uuid.UUID) -> Contact | None:
        """The contact unless it was erased."""
        contact = self.get(contact_id)
        return contact if contact is not None and contact.erased_at is None else None

    def list(self, *, limit: int, cursor: str | None, phone: str | None = None,
             email: str | None = None) -> Page[Contact]:
        """Contacts not erased, newest first."""
        stmt = self._scoped().where(Contact.erased_at.is_(None))
        if phone:
            stmt = stmt.where(Contact.phone == phone)
        if email:
            stmt = stmt.where(Contact.email == email)
        return _newest_first(self.session, stmt, key=Contact.created_at, row_id=Contact.id, limit=limit,
                             cursor=cursor, key_of=lambda c: c.created_at)

    def by_address(self, channel: str, address: str) -> Contact | None:
        """The contact reached at ``address`` (E.164 or normalized e-mail) on ``channel``."""
        column = Contact.phone if channel in PHONE_CHANNELS else Contact.email
        return self.session.scalar(self._scoped().where(column == address))

    def by_phone_or_email(self, *, phone: str | None, email: str | None,
                          excluding: uuid.UUID | None = None) -> Contact | None:
        """A contact holding ``phone`` or ``email`` (other than ``excluding``)."""
        matches = [c == v for c, v in ((Contact.phone, phone), (Contact.email, email)) if v]
        if not matches:
            return None
        stmt = self._scoped().where(or_(*matches))
        if excluding is not None:
            stmt = stmt.where(Contact.id != excluding)
        return self.session.scalars(stmt.limit(1)).first()

    def match_phone(self, phone: str, *, now: datetime) -> Contact:
        """The contact with ``phone``, created if none: insert-or-ignore on the unique
        ``(tenant, phone)``, so concurrent workers end with one contact."""
        insert_ignore(self.session, Contact, {"id": new_id(), "tenant_id": self.tenant_id, "phone": phone,
                                              "created_at": now, "updated_at": now},
                      conflict=["tenant_id", "phone"])
        return self.session.scalar(self._scoped().where(Contact.phone == phone))

    def match_email(self, email: str, *, now: datetime) -> Contact:
        """The contact with ``email``, created if none (insert-or-ignore, like match_phone)."""
        insert_ignore(self.session, Contact, {"id": new_id(), "tenant_id": self.tenant_id, "email": email,
                                              "created_at": now, "updated_at": now},
                      conflict=["tenant_id", "email"])
        return self.session.scalar(self._scoped().where(Contact.email == email))

    def by_whatsapp_user(self, user_id: str) -> Contact | None:
        return self.session.scalar(self._scoped().where(Contact.whatsapp_user_id == user_id))

    def match_whatsapp_user(self, user_id: str, *, now: datetime) -> Contact:
        """The contact Meta names ``user_id`` (a BSUID), created if none, like match_phone."""
        insert_ignore(self.session, Contact, {"id": new_id(), "tenant_id": self.tenant_id,
                                              "whatsapp_user_id": user_id, "created_at": now, "updated_at": now},
                      conflict=["tenant_id", "whatsapp_user_id"])
        return self.session.scalar(self._scoped().where(Contact.whatsapp_user_id == user_id))

    def link_whatsapp_user(self, contact: Contact, user_id: str, *, now: datetime) -> None:
        """Note the BSUID of a contact matched by phone, once. A BSUID another contact
        already holds (the person wrote first with the number hidden) stays with it."""
        if contact.whatsapp_user_id is not None or self.by_whatsapp_user(user_id) is not None:
            return
        try:
            with self.session.begin_nested():  # the unique (tenant, BSUID) decides a race
                contact.whatsapp_user_id, contact.updated_at = user_id, now
                self.session.flush()
        except IntegrityError:
            self.session.refresh(contact)

    # --- consent ---------------------------------------------------------------------

    def consent(self, contact_id: uuid.UUID, channel: str) -> ContactConsent | None:
        return self.session.scalar(select(ContactConsent).where(
            ContactConsent.tenant_id == self.tenant_id, ContactConsent.contact_id == contact_id,
            ContactConsent.channel == channel))

    def consents(self, contact_id: uuid.UUID) -> list[ContactConsent]:
        return list(self.session.scalars(select(ContactConsent).where(
            ContactConsent.tenant_id == self.tenant_id, ContactConsent.contact_id == contact_id,
        ).order_by(ContactConsent.channel)))

    def set_consent(self, contact_id: uuid.UUID, channel: str, status: str, *, source: str, now: datetime) -> bool:
        """Record ``status`` on ``channel``; True only when it changed. Conditional, so of
        two workers recording the same change at once exactly one sees it change."""
        values = {"id": new_id(), "tenant_id": self.tenant_id, "contact_id": contact_id, "channel": channel,
                  "status": status, "source": source, "changed_at": now}
        if insert_ignore(self.session, ContactConsent, values, conflict=["contact_id", "channel"]):
            return True
        changed = self.session.execute(
            update(ContactConsent)
            .where(ContactConsent.tenant_id == self.tenant_id, ContactConsent.contact_id == contact_id,
                   ContactConsent.channel == channel, ContactConsent.status != status)
            .values(status=status, source=source, changed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        return changed == 1

    def opted_out(self, channel: str, address: str) -> bool:
        """Whether the person at ``address`` opted out of ``channel`` (no contact: not)."""
        return address in self.opted_out_among(channel, [address])

    def opted_out_among(self, channel: str, addresses: list[str]) -> set[str]:
        """Which of ``addresses`` opted out of ``channel``, in one query."""
        # on WhatsApp a person may be addressed by Meta's business-scoped id as well
        columns = ([Contact.phone, Contact.whatsapp_user_id] if channel == "whatsapp"
                   else [Contact.phone] if channel in PHONE_CHANNELS else [Contact.email])
        rows = self.session.execute(
            select(*columns)
            .join(ContactConsent, Contact.id == ContactConsent.contact_id)
            .where(Contact.tenant_id == self.tenant_id, or_(*(c.in_(addresses) for c in columns)),
                   ContactConsent.channel == channel, ContactConsent.status == ConsentStatus.OPTED_OUT)
        )
        wanted = set(addresses)
        return {value for row in rows for value in row if value in wanted}

    def delete_consents(self, contact_id: uuid.UUID) -> None:
        self.session.execute(delete(ContactConsent).where(ContactConsent.tenant_id == self.tenant_id,
                                                          ContactConsent.contact_id == contact_id))

    # --- what the hub holds keyed by the contact's addresses ----------------------------

    def _address_filters(self, contact: Contact) -> tuple[list[Any], list[Any]]:
        """(conversation filters, message filters) matching the contact's phone, e-mail and
        WhatsApp BSUID (a username user's conversation is keyed by it)."""
        conversations, messages = [], []
        for channels, address in ((PHONE_CHANNELS, contact.phone), (("email",), contact.email),
                                  (("whatsapp",), contact.whatsapp_user_id)):
            if not address:
                continue
            conversations.append(Conversation.channel.in_(channels) & (Conversation.contact_address == address))
            messages.append(Message.channel.in_(channels)
                            & or_(Message.to_address == address, Message.from_address == address))
        return conversations, messages

    def conversations_of(self, contact: Contact) -> list[Conversation]:
        filters, _ = self._address_filters(contact)
        if not filters:
            return []
        return list(self.session.scalars(select(Conversation).where(
            Conversation.tenant_id == self.tenant_id, or_(*filters)).order_by(Conversation.created_at)))

    def messages_of(self, contact: Contact, conversation_ids: list[uuid.UUID]) -> list[Message]:
        """The contact's messages: in their conversations, or addressed to or from them."""
        _, filters = self._address_filters(contact)
        if conversation_ids:
            filters.append(Message.conversation_id.in_(conversation_ids))
        if not filters:
            return []
        return list(self.session.scalars(select(Message).where(
            Message.tenant_id == self.tenant_id, or_(*filters)).order_by(Message.created_at, Message.id)))


class AutoReplyRepository:
    """Auto-reply rules, business hours and the replies given, of one tenant."""

    def __init__(self, session: Session, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def rules(self, *, enabled_only: bool = False) -> list[AutoReplyRule]:
        """Oldest first: the first rule that matches answers."""
        stmt = select(AutoReplyRule).where(AutoReplyRule.tenant_id == self.tenant_id)
        if enabled_only:
            stmt = stmt.where(AutoReplyRule.enabled.is_(True))
        return list(self.session.scalars(stmt.order_by(AutoReplyRule.created_at, AutoReplyRule.id)))

    def rule(self, rule_id: uuid.UUID) -> AutoReplyRule | None:
        rule = self.session.get(AutoReplyRule, rule_id)
        return rule if rule is not None and rule.tenant_id == self.tenant_id else None

    def business_hours(self) -> BusinessHours | None:
        return self.session.get(BusinessHours, self.tenant_id)

    def last_sent(self, conversation_id: uuid.UUID, rule_key: str) -> AutoReplySent | None:
        return self.session.scalars(
            select(AutoReplySent).where(AutoReplySent.tenant_id == self.tenant_id,
                                        AutoReplySent.conversation_id == conversation_id,
                                        AutoReplySent.rule_key == rule_key)
            .order_by(AutoReplySent.sent_at.desc()).limit(1)
        ).first()

    def claim_window(self, conversation_id: uuid.UUID, rule_key: str, window_key: str, *, now: datetime) -> \
            uuid.UUID | None:
        """Claim the reply of ``rule_key`` in ``window_key``: its row id, or None when
        this conversation had it already (durably, across workers)."""
        row_id = new_id()
        claimed = insert_ignore(self.session, AutoReplySent, {
            "id": row_id, "tenant_id": self.tenant_id, "conversation_id": conversation_id, "rule_key": rule_key,
            "window_key": window_key, "sent_at": now,
        }, conflict=["conversation_id", "rule_key", "window_key"])
        return row_id if claimed else None

    def record_reply(self, row_id: uuid.UUID, message_id: uuid.UUID) -> None:
        self.session.execute(update(AutoReplySent).where(AutoReplySent.id == row_id,
                                                         AutoReplySent.tenant_id == self.tenant_id)
                             .values(message_id=message_id).execution_options(synchronize_session=False))
