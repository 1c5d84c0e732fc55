"""Durable delivery against the sandbox Twilio: retries with backoff for every injected
transient failure, permanent failures at once, exhaustion into the dead-letter queue
and out again, every attempt recorded, never a second send for one message, and the
outbox relay publishing what the broker never got."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery.signals import task_postrun
from sqlalchemy import event, select, update

from connectors.base import OutboundMessage
from hub.db import utcnow
from hub.messaging import delivery, service
from hub.messaging.claims import claim_messages, keep_claims_alive, lease_for
from hub.messaging.delivery import claim_message, deliver_message, deliver_messages, retry_delay
from hub.messaging.models import Message, OutboxEntry
from hub.messaging.schemas import MessageCreate
from hub.messaging.service import relay_outbox
from hub.queue import DELIVER_MESSAGE, publish
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.messaging.outbound_support import (
    CUSTOMER,
    backdate,
    eventually,
    get_message,
    make_fast,
    offline_runtime,
    outbox_entry,
    send,
    sent_to,
    twilio_tenant,
    wait_for_status,
)
from tests.support import create_tenant

DEAD_BROKER = "redis://127.0.0.1:9/0"  # nothing listens there: every publish is refused


@pytest.fixture
def hub(live_hub):
    make_fast(live_hub)
    return live_hub


@pytest.fixture
def acme(hub):
    return twilio_tenant(hub, "acme")


def attempts(message: dict) -> list[tuple[int, str, str | None]]:
    return [(a["number"], a["outcome"], a["error_code"]) for a in message["attempts"]]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def queue_quietly(hub, tenant, *, body: str = "Lembrete: consulta amanhã", **fields) -> str:
    """A committed message whose delivery task went to a queue no worker reads (and whose
    outbox entry is marked published): only what the test does next delivers it."""
    quiet = offline_runtime(hub.runtime)
    with hub.runtime.session_factory() as session, session.begin():
        queued = service.send_message(session=session, runtime=quiet, tenant_id=tenant.tenant_id,
                                      message_in=MessageCreate(channel=fields.pop("channel", "sms"),
                                                               to=fields.pop("to", CUSTOMER), body=body, **fields))
        return str(queued.message.id)


class TestTransientFailures:
    @pytest.mark.parametrize("kind", ["http_500", "http_503"])
    def test_server_errors_are_retried_then_it_is_delivered(self, hub, acme, kind):
        hub.sandbox.twilio.inject_failure(kind, resource="messages", times=2)
        r = send(hub, acme)
        done = wait_for_status(hub, acme, r.json()["id"], "delivered")
        code = "20500" if kind == "http_500" else "20503"
        assert attempts(done) == [(1, "retry", code), (2, "retry", code), (3, "sent", None)]
        assert done["attempt_count"] == 3 and done["error_code"] is None
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_a_429_waits_at_least_its_retry_after(self, hub, acme):
        hub.sandbox.twilio.inject_failure("http_429", resource="messages", times=1, retry_after=1)
        r = send(hub, acme)
        retrying = wait_for_status(hub, acme, r.json()["id"], "retrying")
        assert retrying["error_code"] == "20429"
        first = retrying["attempts"][0]
        assert (at(retrying["next_attempt_at"]) - at(first["finished_at"])).total_seconds() >= 1.0
        done = wait_for_status(hub, acme, r.json()["id"], "delivered")
        assert attempts(done) == [(1, "retry", "20429"), (2, "sent", None)]
        assert (at(done["attempts"][1]["started_at"]) - at(first["finished_at"])).total_seconds() >= 1.0

    def test_a_timeout_that_still_created_the_message_is_not_sent_twice(self, hub, acme):
        # Twilio holds the answer past our timeout, then creates the message anyway
        hub.sandbox.twilio.inject_failure("timeout", resource="messages", times=1,
                                          delay=hub.runtime.settings.delivery_timeout_seconds + 0.5)
        r = send(hub, acme)
        done = wait_for_status(hub, acme, r.json()["id"], "sent", "delivered", timeout=60)
        [created] = sent_to(hub, CUSTOMER)
        assert done["provider_message_id"] == created["sid"]
        assert attempts(done) == [(1, "retry", "no_answer"), (2, "recovered", None)]
        # the next attempt waited at least one more timeout before looking
        gap = at(done["attempts"][1]["started_at"]) - at(done["attempts"][0]["finished_at"])
        assert gap.total_seconds() >= hub.runtime.settings.delivery_timeout_seconds


class TestPermanentFailures:
    @pytest.mark.parametrize(("code", "text"), [(21211, "not a valid phone number"), (21610, "unsubscribed")])
    def test_a_refusal_fails_at_once_with_the_providers_code(self, hub, acme, code, text):
        hub.sandbox.twilio.inject_failure("api_error", code=code, number=CUSTOMER)
        r = send(hub, acme)
        done = wait_for_status(hub, acme, r.json()["id"], "failed")
        assert done["error_code"] == str(code) and text in done["error_message"]
        assert attempts(done) == [(1, "failed", str(code))]
        assert sent_to(hub, CUSTOMER) == []

    def test_an_undelivered_callback_can_be_retried(self, hub, acme):
        hub.sandbox.twilio.inject_failure("delivery_error", code=30003, times=1)
        r = send(hub, acme)
        undelivered = wait_for_status(hub, acme, r.json()["id"], "undelivered")
        assert undelivered["error_code"] == "30003"
        retried = hub.http.post(f"/v1/messages/{r.json()['id']}/retry", headers=acme.headers)
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "queued" and retried.json()["provider_message_id"] is None
        done = wait_for_status(hub, acme, r.json()["id"], "delivered")
        assert attempts(done) == [(1, "sent", None), (2, "sent", None)]
        assert len(sent_to(hub, CUSTOMER)) == 2  # the retry is a new message at Twilio


class TestDeadLetters:
    def test_exhaustion_is_dead_then_the_retry_endpoint_delivers_it(self, hub, acme):
        make_fast(hub, max_attempts=3)
        failure = hub.sandbox.twilio.inject_failure("http_503", resource="messages")
        r = send(hub, acme)
        message_id = r.json()["id"]
        dead = wait_for_status(hub, acme, message_id, "dead")
        assert attempts(dead) == [(1, "retry", "20503"), (2, "retry", "20503"), (3, "dead", "20503")]
        assert dead["attempt_count"] == dead["max_attempts"] == 3 and dead["next_attempt_at"] is None
        assert outbox_entry(hub.runtime, message_id) is None  # nothing left to relay
        dlq = hub.http.get("/v1/messages", params={"status": "dead"}, headers=acme.headers).json()["data"]
        assert [m["id"] for m in dlq] == [message_id]

        hub.sandbox.twilio.clear_failures(failure)
        retried = hub.http.post(f"/v1/messages/{message_id}/retry", headers=acme.headers)
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "queued" and retried.json()["attempt_count"] == 0
        assert retried.json()["error_code"] is None
        done = wait_for_status(hub, acme, message_id, "delivered")
        assert [a[:2] for a in attempts(done)] == [(1, "retry"), (2, "retry"), (3, "dead"), (4, "sent")]
        assert done["attempt_count"] == 1
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_only_dead_failed_or_undelivered_messages_can_be_retried(self, hub, acme):
        r = send(hub, acme)
        message_id = r.json()["id"]
        wait_for_status(hub, acme, message_id, "delivered")
        refused = hub.http.post(f"/v1/messages/{message_id}/retry", headers=acme.headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "message_not_retryable"
        queued_id = queue_quietly(hub, acme)
        assert hub.http.post(f"/v1/messages/{queued_id}/retry", headers=acme.headers).status_code == 409
        assert hub.http.post(f"/v1/messages/{uuid.uuid4()}/retry", headers=acme.headers).status_code == 404
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_a_message_whose_integration_went_away_fails_with_a_clear_code(self, hub, acme):
        message_id = queue_quietly(hub, acme)
        with hub.runtime.session_factory() as session, session.begin():
            tenants.delete_integration(session=session, tenant_id=acme.tenant_id, kind="twilio")
        assert deliver_message(runtime=hub.runtime, message_id=uuid.UUID(message_id)) == "failed"
        failed = get_message(hub, acme, message_id)
        assert failed["error_code"] == "integration_missing"
        assert attempts(failed) == [(1, "failed", "integration_missing")]


class TestNeverTwice:
    def test_duplicate_tasks_send_once(self, hub, acme):
        message_id = queue_quietly(hub, acme)
        finished: list[str] = []

        def on_finished(sender=None, args=None, **_) -> None:
            if sender is not None and sender.name == DELIVER_MESSAGE and args and args[0] == message_id:
                finished.append(message_id)

        task_postrun.connect(on_finished, weak=False)
        try:
            for _ in range(3):  # the relay, a redelivery and a retry, all at once
                assert publish(hub.runtime.celery, DELIVER_MESSAGE, message_id)
            eventually(lambda: len(finished) == 3, what="the three tasks to run")
        finally:
            task_postrun.disconnect(on_finished)
        done = wait_for_status(hub, acme, message_id, "delivered")
        assert attempts(done) == [(1, "sent", None)]
        assert deliver_message(runtime=hub.runtime, message_id=uuid.UUID(message_id)) is None
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_concurrent_deliveries_of_one_message_send_it_once(self, hub, acme):
        message_id = uuid.UUID(queue_quietly(hub, acme))
        results: list = []
        barrier = threading.Barrier(4)

        def worker() -> None:
            barrier.wait()
            results.append(deliver_message(runtime=hub.runtime, message_id=message_id))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert sorted(map(str, results)) == ["None", "None", "None", "sent"]
        assert len(sent_to(hub, CUSTOMER)) == 1
        assert attempts(get_message(hub, acme, str(message_id)))[0][:2] == (1, "sent")

    def test_a_claim_in_force_is_not_taken_over(self, hub, acme):
        message_id = uuid.UUID(queue_quietly(hub, acme))
        claim = claim_message(runtime=hub.runtime, message_id=message_id)
        assert claim is not None
        claim.connector.close()
        assert deliver_message(runtime=hub.runtime, message_id=message_id) is None
        assert get_message(hub, acme, str(message_id))["status"] == "sending"
        assert sent_to(hub, CUSTOMER) == []

    def test_a_worker_killed_before_calling_twilio_is_replaced_and_it_is_sent_once(self, hub, acme):
        message_id = queue_quietly(hub, acme)
        claim = claim_message(runtime=hub.runtime, message_id=uuid.UUID(message_id))
        claim.connector.close()  # ... and the worker dies here
        backdate(hub.runtime, message_id)  # its lease runs out
        done = wait_for_status(hub, acme, message_id, "delivered")  # the relay hands it to another worker
        assert attempts(done) == [(1, "lost", None), (2, "sent", None)]
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_a_worker_killed_after_twilio_accepted_is_not_sent_again(self, hub, acme):
        message_id = queue_quietly(hub, acme, body="enviada antes da queda")
        claim = claim_message(runtime=hub.runtime, message_id=uuid.UUID(message_id))
        accepted = claim.connector.send(OutboundMessage(channel="sms", to=CUSTOMER, body=claim.body,
                                                        sender=claim.sender))
        claim.connector.close()  # ... and the worker dies before recording it
        backdate(hub.runtime, message_id)
        done = wait_for_status(hub, acme, message_id, "sent", "delivered")
        assert done["provider_message_id"] == accepted.provider_message_id
        assert attempts(done) == [(1, "lost", None), (2, "recovered", None)]
        assert len(sent_to(hub, CUSTOMER)) == 1

    def test_a_killed_workers_send_is_found_among_more_than_a_page_of_the_pairs_messages(self, hub, acme):
        # issue 18 #8: the look listed 50 of the (to, from) pair's messages, oldest first,
        # and missed the send; Twilio lists newest first and pages
        message_id = queue_quietly(hub, acme, body="enviada no meio de muitas")
        claim = claim_message(runtime=hub.runtime, message_id=uuid.UUID(message_id))

        def other(body: str) -> None:
            claim.connector.send(OutboundMessage(channel="sms", to=CUSTOMER, body=body, sender=claim.sender))

        for i in range(60):
            other(f"anterior {i}")
        accepted = claim.connector.send(OutboundMessage(channel="sms", to=CUSTOMER, body=claim.body,
                                                        sender=claim.sender))
        for i in range(60):  # sent since, so ours is not on the newest page either
            other(f"posterior {i}")
        claim.connector.close()  # ... and the worker dies before recording it
        backdate(hub.runtime, message_id)
        done = wait_for_status(hub, acme, message_id, "sent", "delivered")
        assert done["provider_message_id"] == accepted.provider_message_id
        assert attempts(done) == [(1, "lost", None), (2, "recovered", None)]
        pair = hub.sandbox.twilio.sent_messages(to=CUSTOMER, from_=accepted.raw["from"])
        assert len(pair) == 121
        assert [m["sid"] for m in pair if m["body"] == claim.body] == [accepted.provider_message_id]

    def test_an_identical_message_sent_earlier_is_not_taken_for_ours(self, hub, acme):
        earlier = send(hub, acme, body="mesmo texto").json()
        earlier = wait_for_status(hub, acme, earlier["id"], "delivered")
        message_id = queue_quietly(hub, acme, body="mesmo texto")
        claim_message(runtime=hub.runtime, message_id=uuid.UUID(message_id)).connector.close()
        backdate(hub.runtime, message_id)
        done = wait_for_status(hub, acme, message_id, "delivered")
        assert attempts(done) == [(1, "lost", None), (2, "sent", None)]
        assert done["provider_message_id"] != earlier["provider_message_id"]
        assert len(sent_to(hub, CUSTOMER)) == 2


class TestLeases:
    """A killed worker's claims lapse within a lease (about half a minute); a live
    worker's heartbeat keeps its batch however long the batch takes."""

    def test_the_lease_is_one_messages_worth_not_the_batchs(self, hub):
        timeout = hub.runtime.settings.delivery_timeout_seconds
        assert lease_for(hub.runtime) == timedelta(seconds=max(30.0, 3 * timeout + delivery.PACE_MAX_WAIT))
        assert lease_for(hub.runtime) < timedelta(minutes=1)

    def test_a_vanished_workers_batch_is_picked_up_by_the_next_relay_pass(self, hub, acme):
        ids = [queue_quietly(hub, acme, to=f"+5511955500{i:03d}") for i in range(3)]
        held = claim_messages(runtime=hub.runtime, message_ids=[uuid.UUID(m) for m in ids])
        assert len(held) == 3
        for claim in held:
            claim.connector.close()  # ... and the worker vanishes: no heartbeat, no outcome
        for message_id in ids:
            backdate(hub.runtime, message_id, seconds=1)  # its lease ran out
        for message_id in ids:
            done = wait_for_status(hub, acme, message_id, "delivered")  # the relay handed it on
            assert attempts(done) == [(1, "lost", None), (2, "sent", None)]
        assert [len(sent_to(hub, f"+5511955500{i:03d}")) for i in range(3)] == [1, 1, 1]

    def test_a_batch_whose_heartbeat_is_alive_is_not_picked_up(self, hub, acme):
        ids = [uuid.UUID(queue_quietly(hub, acme, to=f"+5511955510{i:03d}")) for i in range(3)]
        held = claim_messages(runtime=hub.runtime, message_ids=ids)
        try:
            with keep_claims_alive(hub.runtime, held, every=0.05):
                # the batch has been in flight longer than its lease
                long_ago = utcnow() - timedelta(minutes=1)
                with hub.runtime.session_factory() as session, session.begin():
                    session.execute(update(Message).where(Message.id.in_(ids)).values(claimed_until=long_ago))

                def renewed() -> bool:
                    now = utcnow()
                    with hub.runtime.session_factory() as session:
                        leases = session.scalars(select(Message.claimed_until).where(Message.id.in_(ids))).all()
                        armed = session.scalars(select(OutboxEntry.available_at)
                                                .where(OutboxEntry.message_id.in_(ids))).all()
                    return all(at > now for at in [*leases, *armed]) and len(armed) == 3

                eventually(renewed, what="the heartbeat to renew the batch's claims and outbox entries")
                assert deliver_messages(runtime=hub.runtime, message_ids=ids) == {}
                assert relay_outbox(runtime=hub.runtime) == 0  # nothing of theirs is due
        finally:
            for claim in held:
                claim.connector.close()
        assert all(get_message(hub, acme, str(m))["status"] == "sending" for m in ids)
        assert all(sent_to(hub, f"+5511955510{i:03d}") == [] for i in range(3))


class TestBatches:
    """One task delivers several messages: one claim, one call each, one record."""

    def test_each_message_of_a_batch_gets_its_own_outcome(self, hub, acme):
        refused, busy, held = "+5511977770001", "+5511977770002", "+5511977770003"
        fine = [queue_quietly(hub, acme, to=f"+551197777100{i}") for i in range(3)]
        ids = {name: queue_quietly(hub, acme, to=to) for name, to in
               (("refused", refused), ("busy", busy), ("held", held))}
        hub.sandbox.twilio.inject_failure("api_error", number=refused, code=21211)
        hub.sandbox.twilio.inject_failure("http_503", number=busy, resource="messages")
        claim_message(runtime=hub.runtime, message_id=uuid.UUID(ids["held"])).connector.close()  # another worker's

        statuses = deliver_messages(runtime=hub.runtime, message_ids=[uuid.UUID(m) for m in [*fine, *ids.values()]])

        assert {str(k): v for k, v in statuses.items()} == {
            **{m: "sent" for m in fine}, ids["refused"]: "failed", ids["busy"]: "retrying"}
        assert attempts(get_message(hub, acme, ids["refused"])) == [(1, "failed", "21211")]
        assert attempts(get_message(hub, acme, ids["busy"]))[0] == (1, "retry", "20503")  # then the relay retries
        assert get_message(hub, acme, ids["held"])["status"] == "sending"
        for message_id in fine:
            assert attempts(get_message(hub, acme, message_id)) == [(1, "sent", None)]
        assert len(sent_to(hub, held)) == 0 and len(sent_to(hub, refused)) == 0

    def test_a_batch_of_ten_costs_the_database_about_what_one_message_does(self, hub, acme):
        me = threading.get_ident()

        def statements_for(n: int) -> int:
            ids = [uuid.UUID(queue_quietly(hub, acme, to=f"+55119666{n:02d}{i:03d}")) for i in range(n)]
            count = 0

            def counted(*_args, **_kwargs) -> None:
                nonlocal count
                count += threading.get_ident() == me  # the relay and the worker share the engine

            event.listen(hub.runtime.engine, "before_cursor_execute", counted)
            try:
                assert set(deliver_messages(runtime=hub.runtime, message_ids=ids).values()) == {"sent"}
            finally:
                event.remove(hub.runtime.engine, "before_cursor_execute", counted)
            return count

        statements_for(1)  # the first builds the connector (the vault, the integration)
        one, ten = statements_for(1), statements_for(10)
        assert ten <= one + 3, (one, ten)


class TestPacing:
    def test_a_broadcast_message_without_a_turn_on_its_lane_is_deferred_not_attempted(self, hub, acme,
                                                                                       monkeypatch):
        later = (utcnow() + timedelta(days=1)).isoformat()
        # a scheduled broadcast: nothing of its own goes today
        r = hub.http.post("/v1/broadcasts", headers=acme.headers, json={
            "template": "welcome", "data": {"business_name": "Clínica"}, "channel": "sms",
            "recipients": [{"to": "+5511955550000", "data": {"customer_name": "Ana"}}], "send_at": later})
        assert r.status_code == 202, r.text
        message_id = queue_quietly(hub, acme)
        with hub.runtime.session_factory() as session, session.begin():
            session.execute(update(Message).where(Message.id == uuid.UUID(message_id))
                            .values(broadcast_id=uuid.UUID(r.json()["id"])))
        rate, lane = r.json()["rate"], f"{acme.tenant_id}:sms"
        monkeypatch.setattr(delivery, "PACE_MAX_WAIT", 0.0)  # defer at once rather than wait for the turn
        while hub.runtime.rate_limits.take_turn(lane, rate, max_wait=0) is None:
            pass  # another worker used up the lane's turns

        before = utcnow()
        assert deliver_messages(runtime=hub.runtime, message_ids=[uuid.UUID(message_id)]) == {
            uuid.UUID(message_id): "queued"}
        deferred = get_message(hub, acme, message_id)
        # no attempt was made (the relay may already have handed it on by now: its turn
        # comes 1/rate s later, so what reached Twilio is counted at the end instead)
        assert (deferred["status"], deferred["attempts"]) == ("queued", [])
        entry = outbox_entry(hub.runtime, message_id)
        assert before < entry.available_at.replace(tzinfo=entry.available_at.tzinfo or UTC) \
            <= before + timedelta(seconds=1 / rate + 0.5)
        # the relay hands it over when the lane has a turn again: one attempt, sent
        done = wait_for_status(hub, acme, message_id, "delivered")
        assert attempts(done) == [(1, "sent", None)]
        assert len(sent_to(hub, CUSTOMER)) == 1  # once, by the relay's hand-over


class TestOutboxRelay:
    def test_the_after_commit_publish_marks_its_entry_so_the_relay_does_not_resend(self, hub, acme):
        message_id = queue_quietly(hub, acme)
        entry = outbox_entry(hub.runtime, message_id)
        assert entry is not None and entry.published_at is not None
        backdate(hub.runtime, message_id, seconds=30)  # due, but published, and not long ago
        assert relay_outbox(runtime=offline_runtime(hub.runtime)) == 0

    def test_what_a_refusing_broker_never_got_the_relay_publishes(self, hub, acme):
        refusing = offline_runtime(hub.runtime, broker=DEAD_BROKER)
        with hub.runtime.session_factory() as session, session.begin():
            queued = service.send_message(session=session, runtime=refusing, tenant_id=acme.tenant_id,
                                          message_in=MessageCreate(channel="sms", to=CUSTOMER, body="sem broker"))
        message_id = str(queued.message.id)
        entry = outbox_entry(hub.runtime, message_id)
        assert entry is not None and entry.published_at is None  # committed, never published
        # the broker is back (the live hub's): its relay publishes it once the grace is over
        done = wait_for_status(hub, acme, message_id, "delivered")
        assert attempts(done) == [(1, "sent", None)]
        assert len(sent_to(hub, CUSTOMER)) == 1
        assert outbox_entry(hub.runtime, message_id) is None

    def test_an_entry_published_long_ago_and_never_claimed_is_published_again(self, hub, acme):
        message_id = queue_quietly(hub, acme)  # the broker "lost" it
        an_hour_ago = utcnow() - timedelta(hours=1)
        with hub.runtime.session_factory() as session, session.begin():
            session.execute(update(OutboxEntry).where(OutboxEntry.message_id == uuid.UUID(message_id))
                            .values(available_at=an_hour_ago, published_at=an_hour_ago))
        done = wait_for_status(hub, acme, message_id, "delivered")
        assert attempts(done) == [(1, "sent", None)]


class TestRelayPasses:
    """``relay_outbox`` itself, with no worker or relay running beside it."""

    @pytest.fixture
    def queued(self, runtime):
        tenant_id = create_tenant(runtime, "relay")
        with runtime.session_factory() as session, session.begin():
            tenants.put_integration(session=session, vault=runtime.vault, tenant_id=tenant_id, kind="twilio",
                                    credentials={"account_sid": "AC" + "0" * 32, "auth_token": "t"},
                                    config={"numbers": ["+5511930000001"], "channels": ["sms"]},
                                    status=IntegrationStatus.ACTIVE)
        refusing = offline_runtime(runtime, broker=DEAD_BROKER)
        ids = []
        for i in range(3):
            with runtime.session_factory() as session, session.begin():
                ids.append(service.send_message(session=session, runtime=refusing, tenant_id=tenant_id,
                                                message_in=MessageCreate(channel="sms", to=CUSTOMER,
                                                                         body=f"lote {i}")).message.id)
        return ids

    def published(self, runtime) -> list:
        with runtime.session_factory() as session:
            return list(session.scalars(select(OutboxEntry.published_at).order_by(OutboxEntry.created_at)))

    def test_nothing_is_relayed_before_the_after_commit_grace(self, runtime, queued):
        assert relay_outbox(runtime=offline_runtime(runtime)) == 0
        assert self.published(runtime) == [None, None, None]

    def test_a_failed_publish_leaves_entries_for_the_next_pass(self, runtime, queued):
        for message_id in queued:
            backdate(runtime, message_id)
        assert relay_outbox(runtime=offline_runtime(runtime, broker=DEAD_BROKER)) == 0
        assert self.published(runtime) == [None, None, None]
        assert relay_outbox(runtime=offline_runtime(runtime)) == 3
        assert all(self.published(runtime))
        assert relay_outbox(runtime=offline_runtime(runtime)) == 0  # published: not sent again

    def test_a_pass_publishes_at_most_a_batch(self, runtime, queued):
        for message_id in queued:
            backdate(runtime, message_id)
        quiet = offline_runtime(runtime)
        assert relay_outbox(runtime=quiet, limit=2) == 2
        assert relay_outbox(runtime=quiet, limit=2) == 1
        assert relay_outbox(runtime=quiet, limit=2) == 0


class TestBackoff:
    def test_full_jitter_grows_exponentially_up_to_the_cap(self):
        for attempt in range(1, 12):
            ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
            delays = [retry_delay(attempt, base=2.0, cap=300.0) for _ in range(200)]
            assert all(0 <= d <= ceiling for d in delays)
            assert max(delays) > ceiling / 2  # jittered over the whole range, not fixed

    def test_retry_after_is_a_floor(self):
        assert all(retry_delay(1, base=0.01, cap=0.1, retry_after=7) >= 7 for _ in range(50))


def test_every_attempt_is_logged_without_secrets(hub, acme):
    from structlog.testing import capture_logs

    hub.sandbox.twilio.inject_failure("http_500", resource="messages", times=1)
    message_id = queue_quietly(hub, acme)
    with capture_logs() as logs:
        assert deliver_message(runtime=hub.runtime, message_id=uuid.UUID(message_id)) == "retrying"
    [line] = [entry for entry in logs if entry["event"] == "delivery attempt"]
    assert line["message_id"] == message_id and line["attempt"] == 1 and line["outcome"] == "retry"
    assert line["error_code"] == "20500" and line["to"] == "+55…4321"
    assert acme.auth_token not in repr(logs) and CUSTOMER not in repr(logs)
    with hub.runtime.session_factory() as session:
        assert session.scalar(select(Message.status).where(Message.id == uuid.UUID(message_id))) == "retrying"
