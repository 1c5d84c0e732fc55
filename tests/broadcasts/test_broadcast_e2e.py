"""A broadcast end to end: the live hub (worker, relay, webhooks) fans 1,000 WhatsApp
messages out to the sandbox Twilio at the tenant's rate, with failures injected per
number, and the counts come out exact.

The sandbox calls back only failures here: sent/delivered/read callbacks of every
message are proven elsewhere and would triple this test's cost."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select, update

from hub.messaging.models import Message, MessageAttempt
from tenants.models import Tenant
from tests.messaging.outbound_support import eventually, make_fast, twilio_tenant

RECIPIENTS = 1000
WHATSAPP_SENDER_RATE = 80.0  # hub.broadcasts.service.SENDER_RATES for a WhatsApp sender


@pytest.fixture
def hub(live_hub):
    make_fast(live_hub, max_attempts=3)
    # only the injected 503s should retry: on a busy machine a 1 s provider timeout
    # turns slow answers into retries and look-ups, which is not what this test is about
    live_hub.runtime.settings.delivery_timeout_seconds = 10.0
    return live_hub


def fast_tenant(hub, slug: str):
    """A WhatsApp tenant whose own rate is above its sender's, so the sender sets the pace."""
    tenant = twilio_tenant(hub, slug, channels=("whatsapp",))
    with hub.runtime.session_factory() as session, session.begin():
        session.execute(update(Tenant).where(Tenant.id == tenant.tenant_id).values(messages_per_second=500))
    return tenant


def wait_for_counts(hub, tenant, broadcast_id: str, expected: dict[str, int], *, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = hub.http.get(f"/v1/broadcasts/{broadcast_id}", headers=tenant.headers).json()
        counts = {k: v for k, v in body["counts"].items() if v}
        if counts == expected or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def busiest_second(moments: list[float]) -> int:
    """The most calls in any 1-second window."""
    moments = sorted(moments)
    best, left = 0, 0
    for right, at in enumerate(moments):
        while at - moments[left] >= 1.0:
            left += 1
        best = max(best, right - left + 1)
    return best


def test_a_broadcast_of_1000_with_injected_failures_finishes_with_exact_counts(hub):
    acme = fast_tenant(hub, "acme")
    twilio = hub.sandbox.twilio
    numbers = [f"+55119{i:08d}" for i in range(RECIPIENTS)]
    refused = numbers[10:30]  # Twilio answers 400 21610: permanent, no retry -> failed
    down = numbers[100:110]  # 503 on every attempt -> dead after max_attempts
    unreachable = numbers[200:215]  # accepted, then the carrier reports 30003 -> undelivered
    flaky = numbers[300:310]  # one 503, then fine -> sent
    for number in refused:
        twilio.inject_failure("api_error", number=number, code=21610)
    for number in down:
        twilio.inject_failure("http_503", number=number, resource="messages")
    for number in unreachable:
        twilio.inject_failure("delivery_error", number=number, code=30003)
    for number in flaky:
        twilio.inject_failure("http_503", number=number, resource="messages", times=1)
    twilio.callback_statuses = frozenset({"undelivered", "failed"})

    r = hub.http.post("/v1/broadcasts", headers=acme.headers, json={
        "template": "payment-overdue", "channel": "whatsapp",
        "data": {"business_name": "Clínica Sorriso", "amount_cents": 15990, "due_date": "2026-11-20",
                 "invoice_number": "NF-1234", "payment_url": "https://pay.example.com/x"},
        # every recipient twice in another spelling: sent once
        "recipients": [{"to": n, "data": {"customer_name": f"Cliente {i}"}} for i, n in enumerate(numbers)]
        + [{"to": n.replace("+55", "")} for n in numbers[:5]],
    })
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["total"] == RECIPIENTS and accepted["duplicates"] == 5
    assert accepted["rate"] == WHATSAPP_SENDER_RATE
    # the POST only stores recipients (workers expand them into messages later)
    assert {k: v for k, v in accepted["counts"].items() if v} == {"pending": RECIPIENTS}, accepted["counts"]

    expected = {"sent": RECIPIENTS - len(refused) - len(down) - len(unreachable), "failed": len(refused),
                "dead": len(down), "undelivered": len(unreachable)}
    body = wait_for_counts(hub, acme, accepted["id"], expected, timeout=240)
    assert {k: v for k, v in body["counts"].items() if v} == expected
    assert body["status"] == "completed"

    sent = twilio.sent_messages(account_sid=acme.account_sid)
    # every recipient reached once at most: no duplicate sends, none to the refused or the down
    assert len(sent) == len({m["to"] for m in sent}) == RECIPIENTS - len(refused) - len(down)
    assert "Cliente 7" in next(m["body"] for m in sent if m["to"] == f"whatsapp:{numbers[7]}")

    with hub.runtime.session_factory() as session:
        calls = list(session.scalars(
            select(MessageAttempt.started_at).join(Message, Message.id == MessageAttempt.message_id)
            .where(Message.broadcast_id == uuid.UUID(accepted["id"]))))
        dead = session.scalars(select(Message.attempt_count).where(Message.status == "dead")).all()
    assert list(dead) == [3] * len(down)
    moments = [c.timestamp() for c in calls]
    # paced, not dumped: 1,000 first attempts at 80/s take over 12 s; no second far above the rate
    assert max(moments) - min(moments) >= 0.9 * (RECIPIENTS - 1) / WHATSAPP_SENDER_RATE
    assert busiest_second(moments) <= 1.5 * WHATSAPP_SENDER_RATE


def test_canceling_a_running_broadcast_stops_the_rest(hub):
    acme = fast_tenant(hub, "acme")
    twilio = hub.sandbox.twilio
    numbers = [f"+55219{i:08d}" for i in range(400)]
    r = hub.http.post("/v1/broadcasts", headers=acme.headers, json={
        "template": "welcome", "channel": "whatsapp",
        "data": {"business_name": "Clínica Sorriso", "customer_name": "Cliente"},
        "recipients": [{"to": n} for n in numbers]})
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    eventually(lambda: len(twilio.sent_messages(account_sid=acme.account_sid)) >= 10, timeout=30,
               what="the first sends")
    canceled = hub.http.post(f"/v1/broadcasts/{bid}/cancel", headers=acme.headers)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"

    def settled() -> dict | None:
        counts = hub.http.get(f"/v1/broadcasts/{bid}", headers=acme.headers).json()["counts"]
        return counts if not counts["sending"] else None

    counts = eventually(settled, timeout=30, what="the claimed messages to finish")
    gone = len(twilio.sent_messages(account_sid=acme.account_sid))
    # paced at 80/s, the 110th slot is over a second after the 10th: cancel stopped most
    assert counts["canceled"] == 400 - gone and counts["canceled"] >= 100
    assert counts["queued"] == counts["retrying"] == counts["pending"] == 0
    time.sleep(0.5)  # nothing canceled goes out later
    assert len(twilio.sent_messages(account_sid=acme.account_sid)) == gone
    assert hub.http.post(f"/v1/broadcasts/{bid}/cancel", headers=acme.headers).json()["counts"]["canceled"] == \
        counts["canceled"]
