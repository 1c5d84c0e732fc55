"""Handing stored events to workers (the relay's batches, re-dispatch, a broker that
is down) and handling them once (skips, failures, retries, event types)."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlencode

import pytest
from pydantic import BaseModel
from sqlalchemy import update
from structlog.testing import capture_logs

from connectors.base import Connector, WebhookRequest
from connectors.registry import ConnectorRegistry
from connectors.twilio import TwilioConnector
from connectors.whatsapp_cloud.connector import WhatsAppCloudConnector
from hub.db import new_id, utcnow
from hub.messaging.models import Message
from hub.queue import EmbeddedWorker
from hub.runtime import build_runtime
from hub.webhooks import service as webhooks
from hub.webhooks.models import WebhookEvent
from tests.support import create_tenant
from tests.webhooks.helpers import count, events, inbound_form, wait_for

CONNECTORS = Path(__file__).resolve().parents[2] / "connectors"
OUR_NUMBER = "+5511930000001"


def store(runtime, tenant_id: uuid.UUID, *, n: int = 1, kind: str = "twilio", type_: str = "message.received",
          payload: dict | None = None, **columns) -> list[uuid.UUID]:
    """Stored events, as the webhook route leaves them (parsed by the real connector)."""
    ids = []
    with runtime.session_factory() as session, session.begin():
        for _ in range(n):
            if payload is None:
                form = inbound_form(to=OUR_NUMBER, from_="+5511987654321", account_sid="AC" + "0" * 32)
                [event] = TwilioConnector.parse(WebhookRequest("POST", "http://x/", {}, urlencode(form).encode()))
                data, provider_event_id = event.data, event.provider_event_id
            else:
                data, provider_event_id = payload, f"evt-{uuid.uuid4().hex}"
            columns.setdefault("received_at", utcnow())
            row = WebhookEvent(id=new_id(), kind=kind, provider_event_id=provider_event_id, type=type_,
                               tenant_id=tenant_id, payload=data, **columns)
            session.add(row)
            ids.append(row.id)
    return ids


def queued_tasks(runtime) -> int:
    """Tasks waiting in this runtime's (memory) broker queue."""
    with runtime.celery.connection_for_write() as conn:
        name = runtime.celery.conf.task_default_queue
        return conn.default_channel.queue_declare(queue=name, passive=False).message_count


def set_dispatched(runtime, ids, when) -> None:
    with runtime.session_factory() as session, session.begin():
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(dispatched_at=when))


class FakeConnector(Connector):
    """A third-party connector that declares one event type the hub has no handler for."""

    kind = "fake"
    display_name = "Fake"
    credentials_model: ClassVar[type[BaseModel]] = BaseModel
    event_types = frozenset({"fake.noticed"})


@pytest.fixture
def with_fake(runtime):
    runtime.registry = ConnectorRegistry([*runtime.registry, FakeConnector])
    return runtime


class TestDispatch:
    def test_pending_events_go_out_in_chunks_and_are_claimed_once(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        store(runtime, tenant_id, n=120)

        assert webhooks.dispatch_pending_events(runtime=runtime) == 120
        assert webhooks.dispatch_pending_events(runtime=runtime) == 0
        assert queued_tasks(runtime) == 3  # 50 + 50 + 20 ids
        assert all(e.dispatched_at is not None and e.handled_at is None for e in events(runtime))

        worker = EmbeddedWorker(runtime).start()
        try:
            wait_for(lambda: count(runtime, WebhookEvent, WebhookEvent.handled_at.is_not(None)) == 120,
                     what="every event handled")
        finally:
            worker.stop()
        assert count(runtime, Message) == 120

    def test_a_batch_is_bounded(self, runtime):
        store(runtime, create_tenant(runtime, "a"), n=30)
        assert webhooks.dispatch_pending_events(runtime=runtime, limit=20) == 20
        assert webhooks.dispatch_pending_events(runtime=runtime, limit=20) == 10

    def test_events_whose_worker_died_are_dispatched_again(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        lost = store(runtime, tenant_id, n=2)
        in_flight = store(runtime, tenant_id, n=1)
        assert webhooks.dispatch_pending_events(runtime=runtime) == 3
        # The worker that took them died: a minute later they are still unhandled.
        set_dispatched(runtime, lost, utcnow() - timedelta(minutes=1))
        set_dispatched(runtime, in_flight, utcnow() - timedelta(seconds=20))  # still within its time

        assert webhooks.dispatch_pending_events(runtime=runtime) == 2
        assert webhooks.dispatch_pending_events(runtime=runtime) == 0

    def test_events_of_a_task_in_flight_are_kept_by_its_heartbeat(self, with_fake, monkeypatch):
        runtime = with_fake
        tenant_id = create_tenant(runtime, "a")
        [slow] = store(runtime, tenant_id, kind="fake", type_="fake.noticed", payload={})
        waiting = store(runtime, tenant_id, n=2)
        started, release = threading.Event(), threading.Event()

        def slow_handler(_runtime, _session, _event) -> None:
            started.set()
            release.wait(30)

        monkeypatch.setitem(webhooks.EVENT_HANDLERS, ("fake", "fake.noticed"), slow_handler)
        assert webhooks.dispatch_pending_events(runtime=runtime) == 3
        task = threading.Thread(target=webhooks.handle_events, kwargs={
            "runtime": runtime, "event_ids": [slow, *waiting], "heartbeat": timedelta(seconds=0.05)})
        task.start()
        try:
            assert started.wait(30)
            # the task has held the events waiting their turn longer than REDISPATCH_AFTER
            long_ago = utcnow() - timedelta(minutes=1)
            set_dispatched(runtime, waiting, long_ago)
            wait_for(lambda: all(e.dispatched_at > long_ago for e in events(runtime) if e.id in waiting),
                     what="the heartbeat to renew them")
            assert webhooks.dispatch_pending_events(runtime=runtime) == 0
        finally:
            release.set()
            task.join(30)
        assert all(e.handled_at is not None for e in events(runtime))

    def test_handled_events_are_never_dispatched_again(self, runtime):
        [event_id] = store(runtime, create_tenant(runtime, "a"))
        webhooks.handle_events(runtime=runtime, event_ids=[event_id])
        set_dispatched(runtime, [event_id], utcnow() - timedelta(hours=1))
        assert webhooks.dispatch_pending_events(runtime=runtime) == 0

    def test_with_the_broker_down_nothing_is_lost(self, runtime, settings):
        store(runtime, create_tenant(runtime, "a"), n=3)
        down = build_runtime(settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"}))
        try:
            assert webhooks.dispatch_pending_events(runtime=down) == 0
        finally:
            down.close()
        # released again, so the next pass retries them
        assert [e.dispatched_at for e in events(runtime)] == [None, None, None]
        assert webhooks.dispatch_pending_events(runtime=runtime) == 3

    def test_concurrent_relays_claim_disjoint_batches(self, runtime):
        store(runtime, create_tenant(runtime, "a"), n=200)
        handed: list[int] = []
        barrier = threading.Barrier(4)

        def relay() -> None:
            barrier.wait(5)
            while n := webhooks.dispatch_pending_events(runtime=runtime, limit=15):
                handed.append(n)

        threads = [threading.Thread(target=relay) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sum(handed) == 200


class TestHandling:
    def test_an_event_is_handled_once(self, runtime):
        [event_id] = store(runtime, create_tenant(runtime, "a"))
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "handled"
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "skipped"
        assert count(runtime, Message) == 1
        [event] = events(runtime)
        assert event.handled_at is not None

    def test_a_failure_is_recorded_and_retried_after_a_backoff(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        [event_id] = store(runtime, tenant_id, payload={"channel": "sms", "body": "no sender"})
        assert webhooks.dispatch_pending_events(runtime=runtime) == 1

        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "failed"
        [event] = events(runtime)
        assert (event.attempts, event.handled_at) == (1, None)
        assert event.last_error.startswith("KeyError")
        # due again after 1 s, not at once and not only after the 5-minute dead-worker delay
        due = event.dispatched_at + webhooks.REDISPATCH_AFTER
        assert timedelta(0) < due - utcnow() <= timedelta(seconds=1)
        assert webhooks.dispatch_pending_events(runtime=runtime) == 0
        set_dispatched(runtime, [event_id], utcnow() - webhooks.REDISPATCH_AFTER)
        assert webhooks.dispatch_pending_events(runtime=runtime) == 1

    def test_backoff_doubles_up_to_its_cap(self):
        delays = [webhooks._retry_delay(n).total_seconds() for n in range(1, 11)]
        assert delays[:4] == [1, 2, 4, 8]
        assert max(delays) == webhooks.RETRY_CAP.total_seconds() > webhooks.REDISPATCH_AFTER.total_seconds()

    def test_after_ten_failures_the_event_is_abandoned_and_logged(self, runtime):
        [event_id] = store(runtime, create_tenant(runtime, "a"), payload={"channel": "sms"})
        with capture_logs() as logs:
            outcomes = [webhooks.handle_event(runtime=runtime, event_id=event_id) for _ in range(11)]
        assert outcomes == ["failed"] * 10 + ["skipped"]
        [abandoned] = [e for e in logs if e["event"] == "webhook event abandoned after repeated failures"]
        assert abandoned["attempts"] == 10 and abandoned["log_level"] == "error"
        set_dispatched(runtime, [event_id], utcnow() - timedelta(hours=1))
        assert webhooks.dispatch_pending_events(runtime=runtime) == 0

    def test_one_failing_event_does_not_spoil_its_batch(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        [bad] = store(runtime, tenant_id, payload={"channel": "sms"})
        good = store(runtime, tenant_id, n=2)
        webhooks.handle_events(runtime=runtime, event_ids=[good[0], bad, good[1]])
        assert count(runtime, WebhookEvent, WebhookEvent.handled_at.is_not(None)) == 2
        assert count(runtime, Message) == 2

    def test_an_event_type_the_connector_does_not_declare_fails(self, runtime):
        # STYLE.md rule 8: a handler never silently meets a type its connector did not declare.
        [event_id] = store(runtime, create_tenant(runtime, "a"), type_="payment.succeeded",
                           payload={"amount": 100})
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "failed"
        [event] = events(runtime)
        assert event.handled_at is None
        assert "does not declare event type 'payment.succeeded'" in event.last_error

    def test_a_declared_type_without_a_handler_is_acknowledged_and_ignored(self, with_fake):
        runtime = with_fake
        [event_id] = store(runtime, create_tenant(runtime, "a"), kind="fake", type_="fake.noticed", payload={})
        with capture_logs() as logs:
            assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "ignored"
        assert events(runtime)[0].handled_at is not None
        assert any(e["event"] == "webhook event ignored on purpose" for e in logs)

    def test_an_undeclared_type_of_a_third_party_connector_fails(self, with_fake):
        runtime = with_fake
        [event_id] = store(runtime, create_tenant(runtime, "a"), kind="fake", type_="fake.other", payload={})
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "failed"


def _fixture_requests():
    for path in sorted((CONNECTORS / "twilio" / "fixtures").glob("*.json")):
        fixture = json.loads(path.read_text())
        yield pytest.param(TwilioConnector, WebhookRequest("POST", fixture["url"], {},
                                                           urlencode(fixture["form"]).encode()), id=path.stem)
    for path in sorted((CONNECTORS / "whatsapp_cloud" / "fixtures").glob("*.json")):
        yield pytest.param(WhatsAppCloudConnector, WebhookRequest("POST", "https://hub/", {}, path.read_bytes()),
                           id=f"whatsapp_cloud-{path.stem}")


@pytest.mark.parametrize(("connector", "request_"), list(_fixture_requests()))
def test_every_captured_payload_is_handled(runtime, connector, request_):
    """Each provider's documented payloads parse into declared types that have a
    handler, and the handler takes them without failing."""
    tenant_id = create_tenant(runtime, "a")
    parsed = connector.parse(request_)
    assert parsed, "the fixture parses into no event"
    ids = []
    for event in parsed:
        assert event.type in connector.event_types
        assert (connector.kind, event.type) in webhooks.EVENT_HANDLERS
        if event.type == "message.status":  # the message the callback is about
            outbound(runtime, tenant_id, event.data.get("message_sid") or event.data["message_id"])
        ids += store(runtime, tenant_id, kind=connector.kind, type_=event.type, payload=event.data)
    assert [webhooks.handle_event(runtime=runtime, event_id=i) for i in ids] == ["handled"] * len(ids)


class TestEarlyStatusCallbacks:
    def test_a_callback_for_a_message_not_recorded_yet_is_retried(self, runtime):
        tenant_id = create_tenant(runtime, "a")
        [event_id] = store(runtime, tenant_id, type_="message.status",
                           payload={"message_sid": "SM-early", "status": "delivered"})
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "failed"
        assert events(runtime)[0].last_error.startswith("MessageNotYetKnown")

        message_id = outbound(runtime, tenant_id, "SM-early")  # the delivery worker commits the sid
        assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "handled"
        with runtime.session_factory() as session:
            assert session.get(Message, message_id).status == "delivered"

    def test_after_the_grace_period_an_unknown_message_is_ignored(self, runtime):
        [event_id] = store(runtime, create_tenant(runtime, "a"), type_="message.status",
                           payload={"message_sid": "SM-stranger", "status": "delivered"},
                           received_at=utcnow() - webhooks.STATUS_GRACE - timedelta(seconds=1))
        with capture_logs() as logs:
            assert webhooks.handle_event(runtime=runtime, event_id=event_id) == "handled"
        assert any(e["event"] == "status for an unknown message ignored" for e in logs)


def outbound(runtime, tenant_id: uuid.UUID, provider_message_id: str) -> uuid.UUID:
    with runtime.session_factory() as session, session.begin():
        message = Message(tenant_id=tenant_id, direction="outbound", channel="sms", to_address="+5511987654321",
                          from_address=OUR_NUMBER, body="…", status="sent", provider_message_id=provider_message_id)
        session.add(message)
        session.flush()
        return message.id
