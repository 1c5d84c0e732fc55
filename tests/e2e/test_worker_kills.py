"""Ten SIGKILLs of a `hub worker` at random moments of a delivery (before the provider
call, inside it, after Twilio took the message but before the hub recorded it): nothing
is lost and nothing goes out twice (issue 18 #8: the "did it go out?" check finds the
dead worker's send among the pair's earlier messages, and the retry does not repeat it)."""

from __future__ import annotations

import random
import signal
import time

from sqlalchemy import text

from tests.e2e.test_distributed import CUSTOMER, deployment, eventually  # noqa: F401 - the fixture

OTHER = "+5511976543210"
KILLS = 10


def expire_claims(deployed) -> None:
    """What the relay does once a dead worker's lease has run out (at least 30 s): the
    claims are moved into the past here instead of waiting the lease out, ten times."""
    with deployed.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE messages SET claimed_until = now() - interval '1 second' "
                          "WHERE status = 'sending'"))
        conn.execute(text("UPDATE outbox SET available_at = now(), published_at = NULL WHERE message_id IN "
                          "(SELECT id FROM messages WHERE status IN ('sending', 'queued', 'retrying'))"))


def test_ten_kills_lose_nothing_and_double_nothing(deployment):  # noqa: F811
    headers, _ = deployment.onboard("clinica")
    worker = deployment.start_worker()
    sent: dict[str, list[str]] = {CUSTOMER: [], OTHER: []}
    ids: list[str] = []
    for kill in range(KILLS):
        # Twilio answers this one after 1.5 s: a kill lands before, inside or after the call
        deployment.twilio.inject_failure("timeout", number=CUSTOMER, delay=1.5, times=1)
        body = f"lembrete {kill}"
        ids.append(deployment.send(headers, body))
        sent[CUSTOMER].append(body)
        for extra in range(2):
            extra_body = f"aviso {kill}.{extra}"
            ids.append(deployment.send(headers, extra_body, to=OTHER))
            sent[OTHER].append(extra_body)
        eventually(lambda m=ids[-3]: deployment.status(headers, m) == "sending", timeout=60,
                   what="the worker to claim the slow message")
        time.sleep(random.uniform(0.0, 2.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        time.sleep(1.6)  # the provider finishes whatever call the dead worker made
        expire_claims(deployment)
        worker = deployment.start_worker()

    for message_id in ids:
        eventually(lambda m=message_id: deployment.status(headers, m) in ("sent", "delivered"), timeout=120,
                   what=f"message {message_id} to go out")
    time.sleep(1.0)  # a duplicate would arrive now
    for number, bodies in sent.items():
        got = deployment.sent_bodies(to=number)
        lost = sorted(set(bodies) - set(got))
        doubled = sorted({b for b in got if got.count(b) > 1})
        assert (lost, doubled) == ([], []), f"{number}: lost {lost}, doubled {doubled}"
        assert sorted(got) == sorted(bodies)
