"""Helpers of the notification tests: an aiosmtpd relay that keeps what it receives,
contacts and their consent written the way the contacts feature stores them."""

from __future__ import annotations

import email
import email.policy
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from connectors.sandbox.server import free_port
from hub.contacts.models import ConsentStatus, Contact, ContactConsent
from hub.db import new_id, utcnow

PLATFORM_FROM = "avisos@hub.example.com"


class Mailbox:
    """An SMTP handler that accepts (or refuses with ``reply``) and keeps every message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._refusals: list[str] = []

    def refuse_next(self, reply: str, times: int = 1) -> None:
        """Answer the next ``times`` messages with ``reply`` (a 4xx or 5xx) instead of accepting."""
        with self._lock:
            self._refusals.extend([reply] * times)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            if self._refusals:
                return self._refusals.pop(0)
            self._messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 2.0.0 Ok: queued"

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self._messages if to is None or m["To"].addresses[0].addr_spec == to]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._refusals.clear()


def serve_mailbox() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), ready_timeout=5.0)
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


def use_platform_smtp(runtime, port: int) -> None:
    """Point the hub's platform default relay at the local server."""
    runtime.settings.smtp_url = SecretStr(f"smtp://127.0.0.1:{port}?security=none")
    runtime.settings.smtp_from = PLATFORM_FROM


def create_contact(runtime, tenant_id: uuid.UUID, *, phone: str | None = None, email_address: str | None = None,
                   locale: str | None = None, opted_out: tuple[str, ...] = (), name: str = "Maria") -> uuid.UUID:
    now = utcnow()
    with runtime.session_factory() as session, session.begin():
        contact = Contact(id=new_id(), tenant_id=tenant_id, name=name, phone=phone, email=email_address,
                          locale=locale, created_at=now, updated_at=now)
        session.add(contact)
        session.flush()
        for channel in opted_out:
            session.add(ContactConsent(id=new_id(), tenant_id=tenant_id, contact_id=contact.id, channel=channel,
                                       status=ConsentStatus.OPTED_OUT, source="inbound_keyword", changed_at=now))
        return contact.id


def opt_out(runtime, tenant_id: uuid.UUID, contact_id: uuid.UUID, channel: str) -> None:
    with runtime.session_factory() as session, session.begin():
        session.add(ContactConsent(id=new_id(), tenant_id=tenant_id, contact_id=contact_id, channel=channel,
                                   status=ConsentStatus.OPTED_OUT, source="api", changed_at=utcnow()))


def parts(message: EmailMessage) -> dict[str, Any]:
    """The text and HTML parts of a received e-mail."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {"text": text.get_content() if text else None, "html": html.get_content() if html else None}


# --- fixtures of the e-mail tests: a local relay as the platform's SMTP, a live hub on it ---


@pytest.fixture(scope="module")
def smtp_server():
    yield from serve_mailbox()


@pytest.fixture
def mailbox(smtp_server):
    controller, box = smtp_server
    box.clear()
    return box


@pytest.fixture
def hub(live_hub, smtp_server):
    from tests.messaging.outbound_support import make_fast

    make_fast(live_hub)
    use_platform_smtp(live_hub.runtime, smtp_server[0].port)
    return live_hub


@pytest.fixture
def acme(hub):
    from tests.messaging.outbound_support import twilio_tenant

    return twilio_tenant(hub, "acme")
