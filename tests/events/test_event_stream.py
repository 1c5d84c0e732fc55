"""GET /v1/events/stream on a real port: auth, live events, replay, isolation, limits."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import structlog
from sqlalchemy import select

from hub.audit.models import AuditEvent
from hub.events.bus import event_bus
from tests.webhooks.helpers import wait_for

# HTTP-level behaviour that no database changes: checked on SQLite only, to keep the suite short
http_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@http_only
class TestAuth:
    def test_no_token_is_a_401_and_a_token_without_messages_read_a_403(self, served):
        _, token = served.tenant("acme", scopes=["integrations:read"])

        missing = served.http.get("/v1/events/stream")
        no_scope = served.http.get("/v1/events/stream", headers={"Authorization": f"Bearer {token}"})

        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_token"
        assert no_scope.status_code == 403 and no_scope.json()["error"]["code"] == "insufficient_scope"

    def test_a_token_in_the_query_works_and_never_reaches_the_logs(self, served):
        tenant_id, token = served.tenant("acme")
        forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
        with structlog.testing.capture_logs() as logs:
            stream = served.stream(token, query_token=True)
            event_id = served.publish(tenant_id, message_id="m1")
            assert stream.next().id == event_id
            stream.close()
            refused = served.http.get("/v1/events/stream", params={"access_token": forged})
            wait_for(lambda: event_bus(served.runtime).open_streams(tenant_id) == 0, timeout=15, what="closed")

        assert (stream.status, refused.status_code) == (200, 401)
        assert any(entry.get("path") == "/v1/events/stream" for entry in logs), "the request line was logged"
        for secret in (token, forged, token.split(".")[2]):
            assert not [entry for entry in logs if secret in repr(entry)]
        with served.runtime.session_factory() as session:
            audited = session.scalars(select(AuditEvent)).all()
        assert {(a.target, a.outcome) for a in audited if a.action in ("api.request", "auth.failed")} == {
            ("/v1/events/stream", "success"), ("/v1/events/stream", "failure")}
        assert not [a for a in audited if token in f"{a.target}{a.details}" or forged in f"{a.target}{a.details}"]


class TestLive:
    def test_events_arrive_as_server_sent_events(self, served):
        tenant_id, token = served.tenant("acme")
        stream = served.stream(token)

        event_id = served.publish(tenant_id, "message.status", message_id="m1", status="delivered")

        got = stream.next()
        assert (stream.status, stream.content_type.split(";")[0], stream.retry) == (200, "text/event-stream", 1500)
        assert (got.id, got.event) == (event_id, "message.status")
        assert got.data["id"] == event_id and got.data["type"] == "message.status"
        assert got.data["data"] == {"message_id": "m1", "status": "delivered"}
        assert got.data["created_at"]

    @http_only
    def test_an_idle_stream_sends_heartbeats(self, served):
        _, token = served.tenant("acme")
        stream = served.stream(token)
        assert stream.next(2, comments=True).comment == "heartbeat"

    def test_the_types_filter_keeps_only_the_types_asked_for(self, served):
        tenant_id, token = served.tenant("acme")
        stream = served.stream(token, types="conversation.updated,message.received")

        served.publish(tenant_id, "message.status")
        wanted = served.publish(tenant_id, "conversation.updated")
        also = served.publish(tenant_id, "message.received")

        assert [e.id for e in stream.events(2)] == [wanted, also]
        assert stream.nothing_for(0.3)
        bad = served.http.get("/v1/events/stream", params={"types": "message.deleted"},
                              headers={"Authorization": f"Bearer {token}"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_event_type"

    def test_a_rolled_back_transaction_publishes_nothing(self, served):
        from hub.events.service import publish_event

        tenant_id, token = served.tenant("acme")
        stream = served.stream(token)
        with served.runtime.session_factory() as session:
            publish_event(session=session, tenant_id=tenant_id, type="message.received", data={})
            session.rollback()
        kept = served.publish(tenant_id)
        assert stream.next().id == kept
        assert stream.nothing_for(0.3)


    def test_an_event_whose_notice_was_lost_arrives_with_the_next_heartbeat(self, served):
        from sqlalchemy.orm import Session

        from hub.db import make_engine
        from hub.events.service import publish_event

        tenant_id, token = served.tenant("acme")
        stream = served.stream(token)
        assert stream.next(2, comments=True).comment == "heartbeat"  # it is following the log live
        # committed through an engine no runtime owns: no notice goes out (as when Redis drops one)
        engine = make_engine(served.runtime.settings.effective_database_url)
        try:
            with Session(engine) as session, session.begin():
                lost = publish_event(session=session, tenant_id=tenant_id, type="message.received", data={}).id
        finally:
            engine.dispose()

        assert stream.next(timeout=10).id == served.public(tenant_id, lost)


class TestReplay:
    def test_last_event_id_replays_what_was_missed_then_goes_on_live(self, served):
        tenant_id, token = served.tenant("acme")
        ids = [served.publish(tenant_id, n=n) for n in range(4)]

        stream = served.stream(token, last_event_id_header=ids[1])
        replayed = stream.events(2)
        live = served.publish(tenant_id, n=4)

        assert [e.id for e in replayed] == ids[2:]
        assert [e.data["data"]["n"] for e in replayed] == [2, 3]
        assert stream.next().id == live
        assert stream.nothing_for(0.3)
        by_query = served.stream(token, last_event_id=ids[2])
        assert [e.id for e in by_query.events(2)] == [ids[3], live]

    def test_no_gap_and_no_duplicate_while_events_keep_coming(self, served):
        tenant_id, token = served.tenant("acme")
        first = served.publish(tenant_id, n=0)
        published = [first]
        stop = threading.Event()

        def keep_publishing() -> None:
            # two writers: their transactions may commit in another order than their ids
            while not stop.is_set() and len(published) < 400:
                published.append(served.publish(tenant_id, n=len(published)))

        writers = [threading.Thread(target=keep_publishing) for _ in range(2)]
        for writer in writers:
            writer.start()
        try:
            time.sleep(0.05)
            # a client that saw only the first event reconnects while others commit
            stream = served.stream(token, last_event_id_header=first)
            time.sleep(0.3)
        finally:
            stop.set()
            for writer in writers:
                writer.join()
        expected = published[1:]
        got = [e.id for e in stream.events(len(expected), timeout=15)]

        assert sorted(got) == sorted(expected) and len(set(got)) == len(got)
        assert stream.nothing_for(0.3)

    def test_ids_are_opaque_and_another_tenants_id_does_not_replay(self, served):
        acme, acme_token = served.tenant("acme")
        other, _ = served.tenant("other")
        first, second = served.publish(acme, n=1), served.publish(acme, n=2)
        theirs = served.publish(other, n=3)
        # nothing in an id counts the platform's events: no number, no order to read
        for public in (first, second, theirs):
            assert public.startswith("evt_") and len(public) == 26 and not public[4:].isdigit()
        refused = served.http.get("/v1/events/stream", headers={"Authorization": f"Bearer {acme_token}",
                                                                "Last-Event-ID": theirs})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_last_event_id"
        assert served.stream(acme_token, last_event_id_header=first).next().id == second

    def test_a_bad_last_event_id_is_a_422(self, served):
        _, token = served.tenant("acme")
        answer = served.http.get("/v1/events/stream", headers={"Authorization": f"Bearer {token}",
                                                                 "Last-Event-ID": "abc"})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_last_event_id"


class TestIsolation:
    def test_a_tenant_never_receives_another_tenants_events(self, served):
        acme, acme_token = served.tenant("acme")
        other, other_token = served.tenant("other")
        other_before = served.publish(other, secret="other's")
        acme_stream = served.stream(acme_token, last_event_id=0)
        other_stream = served.stream(other_token)

        mine = served.publish(acme, n=1)
        theirs = served.publish(other, n=2)

        assert acme_stream.next().id == mine
        assert acme_stream.nothing_for(0.3)
        assert other_stream.next().id == theirs
        # replaying from the very start is still only the tenant's own log
        assert [e.id for e in served.stream(other_token, last_event_id=0).events(2)] == [other_before, theirs]
        assert served.stream(acme_token, last_event_id=0).next().id == mine


@http_only
class TestLimits:
    def test_streams_beyond_the_tenants_limit_get_a_429_until_one_closes(self, served):
        tenant_id, token = served.tenant("acme")
        _, other_token = served.tenant("other")
        streams = [served.stream(token) for _ in range(3)]

        refused = served.http.get("/v1/events/stream", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_streams"
        assert refused.headers["Retry-After"]
        assert served.stream(other_token).status == 200  # another tenant's limit is its own

        streams[0].close()
        wait_for(lambda: event_bus(served.runtime).open_streams(tenant_id) == 2, timeout=15,
                 what="the closed stream released")
        assert served.stream(token).status == 200

    def test_the_stream_ends_when_its_token_expires(self, served):
        # A token that expires within the test. On a loaded machine the request can take
        # longer than a short lifetime, so the lifetime grows until the stream opens.
        for ttl in (4, 10, 30):
            served.runtime.keyring.token_ttl = ttl
            tenant_id, token = served.tenant(f"acme-{ttl}")
            stream = served.stream(token)
            if stream.status == 200:
                break
        assert stream.status == 200
        served.publish(tenant_id)
        stream.next(timeout=15)

        assert stream.closed.wait(ttl + 30), "the stream outlived its token"
        assert "token expired" in [c.comment for c in _drain(stream) if c.comment][-1]
        wait_for(lambda: event_bus(served.runtime).open_streams(tenant_id) == 0, timeout=10, what="released")
        # exp has a one-second grain: the same token is refused once past it
        wait_for(lambda: served.http.get("/v1/events/stream",
                                         headers={"Authorization": f"Bearer {token}"}).status_code == 401,
                 timeout=10, what="the expired token refused")


def _drain(stream):
    items = []
    while True:
        try:
            items.append(stream.next(0.05, comments=True))
        except AssertionError:
            return items


@http_only
def test_the_route_is_documented_as_an_event_stream(served):
    spec = httpx.get(f"{served.url}/openapi.json").json()
    operation = spec["paths"]["/v1/events/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {p["name"] for p in operation["parameters"]} >= {"types", "last_event_id", "access_token"}
