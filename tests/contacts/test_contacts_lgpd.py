"""LGPD through the API: the export holds everything the hub keeps about the person;
the erasure removes it from every row of the tenant (proved by reading every text
column), keeps the rows so counts still add up, is audited, and leaves others alone."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import String, Text, func, select

from hub.audit.models import AuditEvent
from hub.contacts.models import Contact, ContactConsent
from hub.messaging import service as messaging
from hub.messaging.models import Conversation, Message, OutboxEntry
from hub.messaging.schemas import ConversationReply
from hub.webhooks.models import WebhookEvent
from tests.contacts.inbound_support import CUSTOMER, clinic, inbound
from tests.support import bearer, create_client, get_token

OTHER = "+5521988887777"
SECRET_BODY = "Meu CPF é 123.456.789-00"


def headers_for(client, runtime, tenant_id):
    return bearer(get_token(client, create_client(runtime, tenant_id)))


def a_conversation(client, runtime):
    """A clinic where the customer wrote on SMS and WhatsApp and got a reply, and another
    contact wrote too: (tenant, headers, contact id)."""
    tenant = clinic(runtime)
    headers = headers_for(client, runtime, tenant.tenant_id)
    inbound(runtime, tenant, SECRET_BODY)
    inbound(runtime, tenant, "Oi pelo zap", channel="whatsapp", from_="+551187654321")
    inbound(runtime, tenant, "Sou a outra", from_=OTHER)
    with runtime.session_factory() as session, session.begin():
        conversation_id = session.scalar(select(Conversation.id).where(
            Conversation.tenant_id == tenant.tenant_id, Conversation.channel == "sms",
            Conversation.contact_address == CUSTOMER))
        messaging.reply_to_conversation(session=session, runtime=runtime, tenant_id=tenant.tenant_id,
                                        conversation_id=conversation_id,
                                        reply_in=ConversationReply(body="Recebido, Ana Souza!"))
    [contact] = client.get("/v1/contacts", headers=headers, params={"phone": CUSTOMER}).json()["data"]
    r = client.patch(f"/v1/contacts/{contact['id']}", headers=headers,
                     json={"name": "Ana Souza", "email": "ana@exemplo.com.br", "consent": {"sms": "opted_in"}})
    assert r.status_code == 200
    return tenant, headers, contact["id"]


def texts_of_tenant(runtime, tenant_id) -> str:
    """Every text and JSON column of the tenant's contacts, consents, conversations,
    messages and webhook events, as one string."""
    out = []
    with runtime.session_factory() as session:
        for model in (Contact, ContactConsent, Conversation, Message, WebhookEvent):
            columns = [c for c in model.__table__.columns
                       if isinstance(c.type, (String, Text)) or c.name in ("payload", "media")]
            for row in session.execute(select(*columns).where(model.__table__.c.tenant_id == tenant_id)):
                out.append(json.dumps([v for v in row], default=str, ensure_ascii=False))
    return "\n".join(out)


def counts(runtime, tenant_id) -> dict:
    with runtime.session_factory() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)
                                                    .where(model.tenant_id == tenant_id))
                for model in (Contact, Conversation, Message)}


class TestExport:
    def test_everything_about_the_person_and_nothing_else(self, client, runtime):
        _, headers, contact_id = a_conversation(client, runtime)
        r = client.get(f"/v1/contacts/{contact_id}/export", headers=headers)
        assert r.status_code == 200, r.text
        export = r.json()
        assert (export["contact"]["name"], export["contact"]["phone"]) == ("Ana Souza", CUSTOMER)
        assert [c["channel"] for c in export["contact"]["consents"]] == ["sms"]
        assert sorted(c["channel"] for c in export["conversations"]) == ["sms", "whatsapp"]
        assert sorted(m["body"] for m in export["messages"]) == sorted(
            [SECRET_BODY, "Oi pelo zap", "Recebido, Ana Souza!"])
        assert OTHER not in r.text and "Sou a outra" not in r.text
        assert export["appointments"] == []


class TestErasure:
    def test_erasure_leaves_no_trace_of_the_person_and_keeps_the_counts(self, client, runtime):
        tenant, headers, contact_id = a_conversation(client, runtime)
        before = counts(runtime, tenant.tenant_id)
        texts = texts_of_tenant(runtime, tenant.tenant_id)
        assert CUSTOMER in texts and SECRET_BODY in texts and "87654321" in texts  # the check can see them

        r = client.delete(f"/v1/contacts/{contact_id}", headers=headers)

        assert r.status_code == 204
        texts = texts_of_tenant(runtime, tenant.tenant_id)
        for trace in (CUSTOMER, "87654321", SECRET_BODY, "Oi pelo zap", "Ana Souza", "ana@exemplo.com.br"):
            assert trace not in texts, trace
        assert counts(runtime, tenant.tenant_id) == before
        # the other contact is untouched
        assert OTHER in texts and "Sou a outra" in texts
        with runtime.session_factory() as session:
            addresses = set(session.scalars(select(Conversation.contact_address)
                                            .where(Conversation.tenant_id == tenant.tenant_id)))
            erased = session.get(Contact, uuid.UUID(contact_id))
            assert erased.erased_at is not None and erased.phone is None
            [alias] = {a for a in addresses if a != OTHER}
            assert alias.startswith("erased:") and len(alias) == len("erased:") + 16
            senders = set(session.scalars(select(Message.from_address).where(Message.tenant_id == tenant.tenant_id)))
            assert alias in senders
            # the reply still queued for them will not go
            [reply] = session.scalars(select(Message).where(Message.tenant_id == tenant.tenant_id,
                                                            Message.direction == "outbound"))
            assert (reply.status, reply.error_code, reply.to_address) == ("failed", "contact_erased", alias)
            assert session.scalar(select(func.count()).select_from(OutboxEntry)
                                  .where(OutboxEntry.message_id == reply.id)) == 0
            assert session.scalar(select(AuditEvent).where(
                AuditEvent.tenant_id == tenant.tenant_id, AuditEvent.action == "contact.erased",
                AuditEvent.target == contact_id)) is not None

    def test_an_erased_contact_is_gone_from_reads_and_the_person_can_come_back(self, client, runtime):
        tenant, headers, contact_id = a_conversation(client, runtime)
        assert client.delete(f"/v1/contacts/{contact_id}", headers=headers).status_code == 204
        for method, suffix in (("GET", ""), ("GET", "/export"), ("PATCH", ""), ("DELETE", "")):
            r = client.request(method, f"/v1/contacts/{contact_id}{suffix}", headers=headers,
                               json={"name": "x"} if method == "PATCH" else None)
            assert r.status_code == 404, (method, suffix)
        assert CUSTOMER not in client.get("/v1/contacts", headers=headers).text
        # writing again starts a new contact and a new conversation
        inbound(runtime, tenant, "voltei")
        [again] = client.get("/v1/contacts", headers=headers, params={"phone": CUSTOMER}).json()["data"]
        assert again["id"] != contact_id
        created = client.post("/v1/contacts", headers=headers, json={"email": "ana@exemplo.com.br"})
        assert created.status_code == 201
