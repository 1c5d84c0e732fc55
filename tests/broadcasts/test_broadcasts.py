"""Broadcasts through the API and the service, without a worker: validation with nothing
written, de-duplication, pacing on the tenant's lane, counts, cancel, scheduling, isolation.
(The end-to-end fan-out through the sandbox is in test_broadcast_e2e.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from hub.broadcasts import service
from hub.broadcasts.models import Broadcast, BroadcastRecipient, SendLane
from hub.contacts.models import ConsentStatus, Contact, ContactConsent
from hub.db import new_id, utcnow
from hub.messaging import repository as message_repo
from hub.messaging.models import Conversation, Message, OutboxEntry
from hub.runtime import build_runtime
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.support import platform_headers, random_hex, tenant_headers

WELCOME = {"business_name": "Clínica Sorriso"}


def phone(i: int) -> str:
    return f"+55119{i:08d}"


def recipients(n: int, *, start: int = 0) -> list[dict]:
    return [{"to": phone(start + i), "data": {"customer_name": f"Cliente {start + i}"}} for i in range(n)]


@pytest.fixture
def acme(client, runtime):
    return sending_tenant(client, runtime, "acme")


def sending_tenant(client, runtime, slug: str, *, channels=("sms", "whatsapp"), **tenant_fields):
    """A tenant with a token and an active Twilio integration (no provider is called here)."""
    tenant_id, headers = tenant_headers(client, runtime, slug, **tenant_fields)
    with runtime.session_factory() as session, session.begin():
        tenants.put_integration(session=session, vault=runtime.vault, tenant_id=tenant_id, kind="twilio",
                                credentials={"account_sid": "AC" + random_hex(16),
                                             "auth_token": random_hex(16)},
                                config={"numbers": ["+5511900000001"], "channels": list(channels)},
                                status=IntegrationStatus.ACTIVE)
    return tenant_id, headers


def post(client, headers, **body):
    return client.post("/v1/broadcasts", headers=headers,
                       json={"template": "welcome", "data": WELCOME, **body})


def rows(runtime, model, **where) -> int:
    stmt = select(func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    with runtime.session_factory() as session:
        return session.scalar(stmt)


def nothing_written(runtime) -> None:
    assert rows(runtime, Broadcast) == 0
    assert rows(runtime, BroadcastRecipient) == 0
    assert rows(runtime, Message) == 0


def messages_of(runtime, broadcast_id) -> list[Message]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Message).where(Message.broadcast_id == uuid.UUID(broadcast_id))
                                    .order_by(Message.next_attempt_at, Message.to_address)))


def expand_all(runtime, broadcast_id) -> None:
    """Run the expansion task's function until every recipient is a message (no worker here)."""
    bid = uuid.UUID(broadcast_id)
    for _ in range(50):
        with runtime.session_factory() as session, session.begin():
            session.execute(update(Broadcast).where(Broadcast.id == bid, Broadcast.next_expand_at.is_not(None))
                            .values(next_expand_at=utcnow() - timedelta(seconds=1)))
        if not service.expand_broadcast(runtime=runtime, broadcast_id=bid):
            return


class TestCreate:
    def test_accepted_with_duplicates_removed_and_the_paced_rate(self, client, runtime, acme):
        tenant_id, headers = acme
        audience = [*recipients(3), {"to": "(11) 90000-0001", "data": {"customer_name": "Outra"}},
                    {"to": "+55 11 9 0000-0002"}]
        r = post(client, headers, recipients=audience)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "sending" and body["template"] == "welcome" and body["channel"] == "sms"
        assert body["total"] == 3 and body["duplicates"] == 2
        # the standard plan allows 5/s, but one Twilio long code sends 1 SMS/s
        assert body["rate"] == 1.0
        assert body["counts"]["pending"] == 3
        with runtime.session_factory() as session:
            stored = list(session.scalars(select(BroadcastRecipient).order_by(BroadcastRecipient.position)))
        # the first spelling of a repeated address wins, with its data
        assert [(r.address, (r.data or {}).get("customer_name")) for r in stored] == [
            (phone(0), "Cliente 0"), (phone(1), "Cliente 1"), (phone(2), "Cliente 2")]

    def test_the_tenants_override_and_the_whatsapp_sender_set_the_rate(self, client, runtime):
        tenant_id, headers = sending_tenant(client, runtime, "fast", plan="free")
        assert post(client, headers, channel="whatsapp", recipients=recipients(1)).json()["rate"] == 1.0  # free plan
        # the platform admin raises the tenant's own rate above its WhatsApp sender's
        r = client.patch(f"/v1/tenants/{tenant_id}", headers=platform_headers(client, runtime),
                         json={"messages_per_second": 500})
        assert r.status_code == 200 and r.json()["messages_per_second"] == 500
        assert post(client, headers, channel="whatsapp", recipients=recipients(1)).json()["rate"] == 80.0
        assert post(client, headers, channel="sms", recipients=recipients(1)).json()["rate"] == 1.0

    def test_idempotency_key_replays_the_first_broadcast(self, client, runtime, acme):
        _, headers = acme
        keyed = {**headers, "Idempotency-Key": "campaign-7"}
        first = post(client, keyed, recipients=recipients(2))
        again = post(client, keyed, recipients=recipients(2))
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replay"] == "true"
        assert post(client, keyed, recipients=recipients(3)).status_code == 422  # same key, other body
        assert rows(runtime, Broadcast) == 1 and rows(runtime, BroadcastRecipient) == 2


class TestValidation:
    def test_bad_addresses_are_listed_and_nothing_is_written(self, client, runtime, acme):
        _, headers = acme
        audience = [*recipients(2), {"to": "12"}, {"to": "not a phone"}, *recipients(1, start=5)]
        r = post(client, headers, recipients=audience)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_recipients"
        assert error["details"]["invalid_count"] == 2
        assert [e["index"] for e in error["details"]["invalid"]] == [2, 3]
        assert all(e["reason"] for e in error["details"]["invalid"])
        nothing_written(runtime)

    def test_the_listed_errors_are_capped_but_counted(self, client, runtime, acme):
        _, headers = acme
        r = post(client, headers, recipients=[{"to": f"x{i}"} for i in range(300)])
        assert r.status_code == 422
        details = r.json()["error"]["details"]
        assert details["invalid_count"] == 300 and len(details["invalid"]) == service.MAX_LISTED_ERRORS
        nothing_written(runtime)

    def test_more_than_ten_thousand_recipients_is_refused(self, client, runtime, acme):
        _, headers = acme
        r = post(client, headers, recipients=[{"to": phone(i)} for i in range(10_001)])
        assert r.status_code == 422 and "10000" in r.text
        nothing_written(runtime)

    @pytest.mark.parametrize(("body", "status", "code"), [
        ({"template": "no-such-template"}, 422, "template_invalid"),
        ({"data": {}}, 422, "template_invalid"),  # customer_name missing
        # no smtp integration and no platform relay: nothing can send e-mail
        ({"channel": "email"}, 409, "no_sending_integration"),
    ])
    def test_a_template_that_cannot_render_or_a_channel_that_cannot_send(self, client, runtime, acme, body, status,
                                                                        code):
        _, headers = acme
        recipient = {"to": phone(1), "data": {} if "data" in body else {"customer_name": "M"}}
        if body.get("channel") == "email":
            recipient = {"to": "maria@example.com"}
        r = client.post("/v1/broadcasts", headers=headers,
                        json={"template": "welcome", "data": WELCOME, "recipients": [recipient], **body})
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        nothing_written(runtime)

    def test_every_recipient_is_rendered_first_not_only_the_first(self, client, runtime, acme):
        _, headers = acme
        # the second and the fourth lack customer_name: both listed, nothing written
        body = recipients(5)
        for i in (1, 3):
            del body[i]["data"]
        r = post(client, headers, recipients=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "template_invalid", r.text
        details = r.json()["error"]["details"]
        assert details["invalid_count"] == 2 and [e["index"] for e in details["invalid"]] == [1, 3]
        assert all("customer_name" in e["reason"] for e in details["invalid"])
        nothing_written(runtime)

    def test_business_name_defaults_to_the_tenants_name(self, client, runtime, acme):
        _, headers = acme
        r = client.post("/v1/broadcasts", headers=headers,
                        json={"template": "welcome", "data": {}, "recipients": recipients(2)})
        assert r.status_code == 202, r.text

    def test_both_audiences_or_none_is_refused(self, client, runtime, acme):
        _, headers = acme
        assert post(client, headers).status_code == 422
        assert post(client, headers, recipients=recipients(1), contact_ids=[str(uuid.uuid4())]).status_code == 422
        nothing_written(runtime)

    def test_send_at_in_the_past_is_refused(self, client, runtime, acme):
        _, headers = acme
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        r = post(client, headers, recipients=recipients(1), send_at=past)
        assert r.status_code == 422 and r.json()["error"]["code"] == "send_at_in_past"
        nothing_written(runtime)

    def test_contacts_must_be_the_tenants_and_reachable(self, client, runtime, acme):
        tenant_id, headers = acme
        other_id, _ = sending_tenant(client, runtime, "other")
        mine, no_phone, theirs = new_id(), new_id(), new_id()
        now = utcnow()
        with runtime.session_factory() as session, session.begin():
            session.add_all([
                Contact(id=mine, tenant_id=tenant_id, name="Maria", phone=phone(1), locale="en",
                        created_at=now, updated_at=now),
                Contact(id=no_phone, tenant_id=tenant_id, name="Sem Fone", email="x@example.com",
                        created_at=now, updated_at=now),
                Contact(id=theirs, tenant_id=other_id, name="Alheio", phone=phone(2), created_at=now, updated_at=now),
            ])
        r = post(client, headers, data={**WELCOME, "customer_name": "Cliente"},
                 contact_ids=[str(mine), str(no_phone), str(theirs)])
        assert r.status_code == 422, r.text
        invalid = r.json()["error"]["details"]["invalid"]
        assert [e["index"] for e in invalid] == [1, 2]
        assert "no phone" in invalid[0]["reason"] and "no contact" in invalid[1]["reason"]
        nothing_written(runtime)

        r = post(client, headers, data={**WELCOME, "customer_name": "Cliente"}, contact_ids=[str(mine)])
        assert r.status_code == 202, r.text
        expand_all(runtime, r.json()["id"])
        [message] = messages_of(runtime, r.json()["id"])
        assert message.to_address == phone(1) and message.body.startswith("Clínica Sorriso: Hi Cliente")  # en


class TestFanOut:
    def test_messages_are_staggered_at_the_rate_with_per_recipient_data(self, client, runtime):
        _, headers = sending_tenant(client, runtime, "pace", plan="enterprise")  # 30/s
        r = post(client, headers, channel="whatsapp", recipients=recipients(4))
        assert r.json()["rate"] == 30.0
        before = utcnow()
        expand_all(runtime, r.json()["id"])
        messages = messages_of(runtime, r.json()["id"])
        assert [m.status for m in messages] == ["queued"] * 4
        assert [m.to_address for m in messages] == [phone(i) for i in range(4)]
        assert all(f"*Cliente {i}*" in m.body and "Clínica Sorriso" in m.body for i, m in enumerate(messages))
        slots = [m.next_attempt_at for m in messages]
        assert before <= slots[0] <= utcnow()
        assert [round((b - a).total_seconds(), 4) for a, b in zip(slots, slots[1:], strict=False)] == [
            round(1 / 30, 4)] * 3
        with runtime.session_factory() as session:
            entries = dict(session.execute(select(OutboxEntry.message_id, OutboxEntry.available_at)).all())
            assert session.scalar(select(func.count()).select_from(Conversation)) == 4
        # the relay releases each at its slot; the delivery claim refuses it before
        assert [entries[m.id] for m in messages] == slots
        with runtime.session_factory() as session, session.begin():
            assert not message_repo.claim_for_delivery(session, message_ids=[messages[-1].id], now=slots[-1]
                                                       - timedelta(milliseconds=5), lease_until=utcnow())

    def test_two_broadcasts_of_a_tenant_share_its_lane(self, client, runtime, acme):
        _, headers = acme
        first = post(client, headers, recipients=recipients(3)).json()["id"]
        second = post(client, headers, recipients=recipients(2, start=10)).json()["id"]
        expand_all(runtime, first)
        expand_all(runtime, second)
        a, b = messages_of(runtime, first), messages_of(runtime, second)
        # 1/s: the second broadcast starts where the first one's slots end
        assert (b[0].next_attempt_at - a[-1].next_attempt_at) == timedelta(seconds=1)
        with runtime.session_factory() as session:
            lane = session.scalar(select(SendLane))
            assert lane.next_slot_at == b[-1].next_attempt_at + timedelta(seconds=1)

    def test_large_broadcasts_expand_in_chunks_just_ahead_of_the_lane(self, client, runtime, acme):
        _, headers = acme  # 1/s: 500 slots last 500 s
        r = post(client, headers, recipients=recipients(service.CHUNK + 3))
        bid = uuid.UUID(r.json()["id"])
        assert service.expand_broadcast(runtime=runtime, broadcast_id=bid) == service.CHUNK
        assert service.expand_broadcast(runtime=runtime, broadcast_id=bid) == 0  # the next chunk is not due
        with runtime.session_factory() as session:
            broadcast = session.get(Broadcast, bid)
            assert broadcast.expanded == service.CHUNK
            assert broadcast.next_expand_at == broadcast.slots_until - service.LOOKAHEAD
        assert client.get(f"/v1/broadcasts/{bid}", headers=headers).json()["counts"]["pending"] == 3
        expand_all(runtime, str(bid))
        assert rows(runtime, Message) == service.CHUNK + 3

    def test_opted_out_contacts_are_suppressed_and_unrenderable_data_fails_that_recipient(self, client, runtime,
                                                                                         acme):
        tenant_id, headers = acme
        now = utcnow()
        with runtime.session_factory() as session, session.begin():
            contact = Contact(id=new_id(), tenant_id=tenant_id, phone=phone(1), created_at=now, updated_at=now)
            session.add(contact)
            session.flush()
            session.add(ContactConsent(tenant_id=tenant_id, contact_id=contact.id, channel="sms",
                                       status=ConsentStatus.OPTED_OUT, source="inbound_keyword", changed_at=now))
        audience = recipients(3)
        for recipient in audience[:2]:
            recipient["data"]["coupon"] = "BEMVINDO10"
        r = post(client, headers, recipients=audience)
        assert r.status_code == 202, r.text  # every recipient renders with the template as it is now
        # … then the tenant changes the template before the fan-out reaches the third
        changed = client.put("/v1/templates/welcome", headers=headers, json={
            "required": ["customer_name", "coupon"],
            "locales": {"pt-BR": {"sms": {"body": "Olá, {{ customer_name }}! Cupom: {{ coupon }}"}}}})
        assert changed.status_code == 200, changed.text
        expand_all(runtime, r.json()["id"])
        by_to = {m.to_address: m for m in messages_of(runtime, r.json()["id"])}
        assert by_to[phone(0)].status == "queued"
        assert (by_to[phone(1)].status, by_to[phone(1)].error_code) == ("suppressed", "opted_out")
        assert (by_to[phone(2)].status, by_to[phone(2)].error_code) == ("failed", "template_missing_variable")
        assert "coupon" in by_to[phone(2)].error_message
        assert rows(runtime, OutboxEntry) == 1  # only the sendable one waits for a worker
        counts = client.get(f"/v1/broadcasts/{r.json()['id']}", headers=headers).json()["counts"]
        assert (counts["queued"], counts["suppressed"], counts["failed"], counts["pending"]) == (1, 1, 1, 0)


class TestCountsAndCancel:
    def test_updated_at_moves_with_the_broadcasts_messages(self, client, runtime, acme):
        _, headers = acme
        r = post(client, headers, recipients=recipients(3))
        created = datetime.fromisoformat(r.json()["updated_at"])
        expand_all(runtime, r.json()["id"])
        later = utcnow() + timedelta(minutes=5)  # a status callback, later on
        with runtime.session_factory() as session, session.begin():
            first = messages_of(runtime, r.json()["id"])[0]
            session.execute(update(Message).where(Message.id == first.id).values(status="delivered",
                                                                                 updated_at=later))
        read = client.get(f"/v1/broadcasts/{r.json()['id']}", headers=headers).json()
        assert datetime.fromisoformat(read["updated_at"]) == later > created
        listed = client.get("/v1/broadcasts", headers=headers).json()["data"]
        assert datetime.fromisoformat(listed[0]["updated_at"]) == later

    def test_cancel_mid_way_stops_what_has_not_gone(self, client, runtime, acme):
        _, headers = acme
        r = post(client, headers, recipients=recipients(10))
        bid = r.json()["id"]
        expand_all(runtime, bid)
        messages = messages_of(runtime, bid)
        # two are with a worker right now, one went already
        with runtime.session_factory() as session, session.begin():
            for m in messages[:3]:
                session.execute(update(Message).where(Message.id == m.id).values(next_attempt_at=utcnow()))
                assert message_repo.claim_for_delivery(session, message_ids=[m.id], now=utcnow(),
                                                       lease_until=utcnow() + timedelta(minutes=1))
            session.execute(update(Message).where(Message.id == messages[0].id).values(status="sent"))
            message_repo.settle_outbox(session, message_ids=[messages[0].id])

        r = client.post(f"/v1/broadcasts/{bid}/cancel", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "canceled" and body["canceled_at"]
        assert {k: v for k, v in body["counts"].items() if v} == {"sent": 1, "sending": 2, "canceled": 7}
        with runtime.session_factory() as session:
            waiting = set(session.scalars(select(OutboxEntry.message_id)))
        assert waiting == {messages[1].id, messages[2].id}  # the claimed ones finish
        # a worker that picks up a canceled message finds nothing to claim
        with runtime.session_factory() as session, session.begin():
            assert not message_repo.claim_for_delivery(session, message_ids=[messages[5].id],
                                                       now=utcnow() + timedelta(hours=1),
                                                       lease_until=utcnow() + timedelta(hours=2))
        again = client.post(f"/v1/broadcasts/{bid}/cancel", headers=headers)
        assert again.status_code == 200 and again.json()["counts"] == body["counts"]

    def test_canceling_gives_the_lane_back_and_cancels_unexpanded_recipients(self, client, runtime, acme):
        _, headers = acme
        big = post(client, headers, recipients=recipients(service.CHUNK + 20)).json()["id"]
        service.expand_broadcast(runtime=runtime, broadcast_id=uuid.UUID(big))
        body = client.post(f"/v1/broadcasts/{big}/cancel", headers=headers).json()
        assert body["counts"]["canceled"] == service.CHUNK + 20 and body["counts"]["pending"] == 0
        assert service.expand_broadcast(runtime=runtime, broadcast_id=uuid.UUID(big)) == 0
        # the next broadcast does not wait behind 500 canceled seconds
        nxt = post(client, headers, recipients=recipients(1, start=9000)).json()["id"]
        expand_all(runtime, nxt)
        [message] = messages_of(runtime, nxt)
        assert message.next_attempt_at - utcnow() < timedelta(seconds=5)

    def test_a_completed_broadcast_cannot_be_canceled(self, client, runtime, acme):
        _, headers = acme
        bid = post(client, headers, recipients=recipients(3)).json()["id"]
        expand_all(runtime, bid)
        statuses = ["delivered", "failed", "dead"]
        with runtime.session_factory() as session, session.begin():
            for m, status in zip(messages_of(runtime, bid), statuses, strict=True):
                session.execute(update(Message).where(Message.id == m.id).values(status=status))
        body = client.get(f"/v1/broadcasts/{bid}", headers=headers).json()
        assert body["status"] == "completed"
        assert {k: v for k, v in body["counts"].items() if v} == {"delivered": 1, "failed": 1, "dead": 1}
        r = client.post(f"/v1/broadcasts/{bid}/cancel", headers=headers)
        assert r.status_code == 409 and r.json()["error"]["code"] == "broadcast_finished"


class TestScheduled:
    def test_a_naive_send_at_is_the_tenants_time_and_nothing_goes_before_it(self, client, runtime, settings, acme):
        _, headers = acme
        local = (datetime.now(ZoneInfo("America/Sao_Paulo")) + timedelta(hours=2)).replace(tzinfo=None,
                                                                                            microsecond=0)
        r = post(client, headers, recipients=recipients(3), send_at=local.isoformat())
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "scheduled" and body["started_at"] is None
        expected = local.replace(tzinfo=ZoneInfo("America/Sao_Paulo")).astimezone(UTC)
        assert datetime.fromisoformat(body["send_at"]) == expected
        bid = uuid.UUID(body["id"])
        assert service.relay_due_broadcasts(runtime=runtime) == 0
        assert service.expand_broadcast(runtime=runtime, broadcast_id=bid) == 0
        assert rows(runtime, Message) == 0

        # two hours later, in a process started since: the database says what is due
        with runtime.session_factory() as session, session.begin():
            session.execute(update(Broadcast).where(Broadcast.id == bid)
                            .values(next_expand_at=utcnow() - timedelta(seconds=1)))
        restarted = build_runtime(settings)
        try:
            assert service.relay_due_broadcasts(runtime=restarted) == 1
            assert service.relay_due_broadcasts(runtime=restarted) == 0  # published once, not every pass
            assert service.expand_broadcast(runtime=restarted, broadcast_id=bid) == 3
        finally:
            restarted.close()
        body = client.get(f"/v1/broadcasts/{bid}", headers=headers).json()
        assert body["status"] == "sending" and body["started_at"] and body["counts"]["queued"] == 3

    def test_a_scheduled_broadcast_can_be_canceled_before_it_starts(self, client, runtime, acme):
        _, headers = acme
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        bid = post(client, headers, recipients=recipients(4), send_at=later).json()["id"]
        body = client.post(f"/v1/broadcasts/{bid}/cancel", headers=headers).json()
        assert body["status"] == "canceled" and body["counts"]["canceled"] == 4
        with runtime.session_factory() as session, session.begin():
            session.execute(update(Broadcast).values(next_expand_at=utcnow() - timedelta(seconds=1)))
        assert service.expand_broadcast(runtime=runtime, broadcast_id=uuid.UUID(bid)) == 0
        assert rows(runtime, Message) == 0


class TestIsolation:
    def test_another_tenants_broadcast_is_not_found(self, client, runtime, acme):
        _, headers = acme
        _, intruder = sending_tenant(client, runtime, "intruder")
        bid = post(client, headers, recipients=recipients(2)).json()["id"]
        post(client, intruder, recipients=recipients(1))
        assert client.get(f"/v1/broadcasts/{bid}", headers=intruder).status_code == 404
        assert client.post(f"/v1/broadcasts/{bid}/cancel", headers=intruder).status_code == 404
        assert client.get(f"/v1/broadcasts/{bid}", headers=headers).json()["status"] == "sending"
        mine = client.get("/v1/broadcasts", headers=headers).json()["data"]
        theirs = client.get("/v1/broadcasts", headers=intruder).json()["data"]
        assert [b["id"] for b in mine] == [bid] and len(theirs) == 1 and theirs[0]["id"] != bid

    def test_the_list_pages_newest_first(self, client, runtime, acme):
        _, headers = acme
        ids = [post(client, headers, recipients=recipients(1, start=i)).json()["id"] for i in range(3)]
        first = client.get("/v1/broadcasts?limit=2", headers=headers).json()
        rest = client.get(f"/v1/broadcasts?limit=2&cursor={first['next_cursor']}", headers=headers).json()
        assert [b["id"] for b in first["data"] + rest["data"]] == ids[::-1] and rest["next_cursor"] is None

    def test_reading_needs_the_messages_scope(self, client, runtime):
        _, headers = tenant_headers(client, runtime, "limited", scopes=["calendar:read"])
        assert client.get("/v1/broadcasts", headers=headers).status_code == 403
