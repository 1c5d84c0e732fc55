"""Issue 18, item 1: a header value spelled as RFC 2047 encoded-words (``=?utf-8?q?Hi=0D=0A
Bcc:…?=``) decoded to a line break and became new headers of the delivered mail. Replayed
end to end through the live hub and a real SMTP server (aiosmtpd): in the API's subject,
in template data rendered into a subject, in the List-Unsubscribe URL and in the From
display name; each is refused with a 422 naming the field, and what is delivered has one
From, one Content-Type and no Bcc or Reply-To."""

from __future__ import annotations

import base64
import uuid

import pytest
from pydantic import ValidationError

from hub.db import new_id, utcnow
from hub.messaging.models import Message, MessageStatus
from hub.settings import Settings
from tests.messaging.notification_support import (  # noqa: F401 - fixtures
    PLATFORM_FROM,
    acme,
    hub,
    mailbox,
    smtp_server,
)
from tests.messaging.outbound_support import wait_for_status

TO = "maria@cliente.example.com"
EVIL = "evil@evil.example"


def q_word(text: str) -> str:
    """``text`` as one q-encoded word (every byte escaped, so nothing reads as plain text)."""
    return "=?utf-8?q?" + "".join(f"={b:02X}" for b in text.encode()) + "?="


def b_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


ATTACKS = {
    "q": "=?utf-8?q?Hi=0D=0ABcc:_evil@evil.example?=",
    "q-from-reply-to": q_word(f"Hi\r\nFrom: {EVIL}\r\nReply-To: {EVIL}"),
    "b-content-type": b_word("Hi\r\nContent-Type: text/html\r\n\r\n<a href='https://evil.example'>pay</a>"),
    # a word inside a word: the first decoding yields the "q" attack
    "nested": "=?utf-8?q?" + "=?utf-8?q?Hi=0D=0ABcc:_evil@evil.example?=".replace("=", "=3D").replace(
        "?", "=3F").replace("_", "=5F") + "?=",
    "nul": q_word("Hi\x00there"),
}



def assert_one_header_block(message) -> None:
    """What the attack added is absent: one From (ours), one Content-Type, no Bcc, no Reply-To."""
    assert message.get_all("From") is not None and len(message.get_all("From")) == 1
    assert message["From"].addresses[0].addr_spec == PLATFORM_FROM
    assert len(message.get_all("Content-Type")) == 1
    assert message.get_all("Bcc") is None and message.get_all("Reply-To") is None
    assert EVIL not in str(message["From"])


def email_template(hub, tenant) -> None:
    r = hub.http.post("/v1/templates", headers=tenant.headers, json={
        "name": "pedido", "required": ["n"],
        "locales": {"pt-BR": {"email": {"subject": "Pedido {{ n }}", "html": "<p>Pedido {{ n }}</p>",
                                        "body": "Pedido {{ n }}"}}}})
    assert r.status_code == 201, r.text


class TestSubjectFromTheApi:
    @pytest.mark.parametrize("attack", sorted(ATTACKS))
    def test_an_encoded_line_break_is_a_422_naming_subject(self, hub, acme, mailbox, attack):
        r = hub.http.post("/v1/messages", headers=acme.headers, json={
            "channel": "email", "to": TO, "body": "Olá", "subject": ATTACKS[attack]})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert [d["loc"] for d in error["details"]] == [["body", "subject"]]
        assert error["message"].startswith("subject: ")
        assert "once its RFC 2047 encoded-words are decoded" in error["message"]
        assert any(what in error["message"] for what in ("line break", "NUL", "control character"))
        assert mailbox.messages() == []

    def test_a_harmless_encoded_word_is_delivered_as_one_header(self, hub, acme, mailbox):
        subject = "=?utf-8?q?Ol=C3=A1?= Bcc: " + EVIL  # decodes to text that only reads like a header
        r = hub.http.post("/v1/messages", headers=acme.headers, json={
            "channel": "email", "to": TO, "body": "Olá", "subject": subject})
        assert r.status_code == 202, r.text
        wait_for_status(hub, acme, r.json()["id"], "sent")
        [received] = mailbox.messages(TO)
        assert received["Subject"] == f"Olá Bcc: {EVIL}"
        assert_one_header_block(received)


class TestSubjectRenderedFromATemplate:
    @pytest.mark.parametrize("attack", ["q", "b-content-type", "nested"])
    def test_template_data_that_decodes_to_a_line_break_is_a_422_naming_subject(self, hub, acme, mailbox, attack):
        email_template(hub, acme)
        r = hub.http.post("/v1/messages", headers=acme.headers, json={
            "channel": "email", "to": TO, "template": "pedido", "data": {"n": ATTACKS[attack]}})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "template_invalid_header" and error["details"] == {"field": "subject"}
        assert error["message"].startswith("subject: ")
        assert mailbox.messages() == []

    def test_the_preview_refuses_it_too(self, hub, acme):
        email_template(hub, acme)
        r = hub.http.post("/v1/templates/pedido/preview", headers=acme.headers,
                          json={"channel": "email", "data": {"n": ATTACKS["q"]}})
        assert r.status_code == 422 and r.json()["error"]["details"] == {"field": "subject"}, r.text

    def test_plain_data_still_renders_and_arrives_as_one_header(self, hub, acme, mailbox):
        email_template(hub, acme)
        r = hub.http.post("/v1/messages", headers=acme.headers, json={
            "channel": "email", "to": TO, "template": "pedido", "data": {"n": "7\r\nBcc: " + EVIL}})
        assert r.status_code == 202, r.text
        wait_for_status(hub, acme, r.json()["id"], "sent")
        [received] = mailbox.messages(TO)
        assert received["Subject"] == f"Pedido 7 Bcc: {EVIL}"
        assert_one_header_block(received)


class TestOtherHeaders:
    def test_an_unsubscribe_url_that_decodes_to_a_line_break_is_a_422(self, hub, acme):
        r = hub.http.put("/v1/messaging/settings", headers=acme.headers, json={
            "email_unsubscribe_url": "https://acme.example.com/sair/" + ATTACKS["q"]})
        assert r.status_code == 422, r.text
        assert [d["loc"] for d in r.json()["error"]["details"]] == [["body", "email_unsubscribe_url"]]

    @pytest.mark.parametrize("attack", ["q-from-reply-to", "b-content-type"])
    def test_a_display_name_that_decodes_to_a_line_break_is_a_422_naming_it(self, hub, acme, smtp_server, attack):
        r = hub.http.put("/v1/integrations/smtp", headers=acme.headers, json={"credentials": {
            "host": "127.0.0.1", "port": smtp_server[0].port, "from_address": "agenda@acme.example.com",
            "from_name": ATTACKS[attack], "security": "none"}})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_credentials"
        assert r.json()["error"]["details"][0]["loc"] == ["credentials", "from_name"]

    def test_the_platform_display_name_is_refused_at_startup(self):
        with pytest.raises(ValidationError, match="smtp_from_name"):
            Settings(smtp_from_name=ATTACKS["q-from-reply-to"])


class TestStoredBeforeTheFix:
    def test_a_queued_message_whose_subject_decodes_to_a_line_break_fails_and_sends_nothing(self, hub, acme,
                                                                                            mailbox):
        """A message accepted before this check (or written by another path) still cannot
        add headers: the composer refuses it for good; nothing reaches the server."""
        from hub.messaging import repository as repo

        now = utcnow()
        message_id = new_id()
        with hub.runtime.session_factory() as session, session.begin():
            session.add(Message(
                id=message_id, tenant_id=acme.tenant_id, direction="outbound", channel="email", to_address=TO,
                from_address=PLATFORM_FROM, body="Olá", subject=ATTACKS["b-content-type"],
                status=MessageStatus.QUEUED, attempt_count=0, max_attempts=3, next_attempt_at=now,
                channel_plan=[], hops=[], created_at=now, updated_at=now))
            session.flush()
            repo.arm_outbox(session, message_id=message_id, available_at=now)
        failed = wait_for_status(hub, acme, str(message_id), "failed", "dead")
        assert failed["error_code"] == "invalid_header", failed
        assert mailbox.messages() == []
        assert uuid.UUID(failed["id"]) == message_id
