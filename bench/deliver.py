"""Delivery throughput: 10,000 queued messages delivered to the sandbox Twilio by a
real `hub worker`, against Celery's own no-op drain rate measured in the same run
with the same worker settings.

    .venv/bin/python -m bench.deliver [--messages 10000] [--concurrency 16]

PostgreSQL and Redis on 127.0.0.1 (HUB_BENCH_DATABASE_URL / HUB_BENCH_REDIS_URL);
the sandbox runs as `hub sandbox` in its own process. Both runs start the worker
on a full queue; each rate is timed from the first task taken to the last done,
and again between 10% and 90% done (steady state).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable

import httpx
import redis
from sqlalchemy import func, select

from bench.common import free_port, fresh_postgres, hub_env, sandbox_twilio_tenant, start_hub_command, wait_for_sandbox


def _timed(progress: Callable[[], int], total: int, every: float) -> tuple[float, float]:
    """``(whole, steady)`` rates of a drain: whole from the worker's first task taken to
    the last done (its start-up excluded), steady between 10% and 90% done (neither the
    warm-up of its pools and caches nor the tail where threads run out of work)."""
    marks: dict[str, tuple[float, int]] = {}
    done = 0
    while done < total:
        done = progress()
        now = time.perf_counter()
        if done > 0 and "first" not in marks:
            marks["first"] = (now, done)
        if done >= total // 10 and "10%" not in marks:
            marks["10%"] = (now, done)
        if done >= total * 9 // 10 and "90%" not in marks:
            marks["90%"] = (now, done)
        time.sleep(every)
    (t0, _), (t10, d10), (t90, d90) = marks["first"], marks["10%"], marks["90%"]
    return total / (now - t0), (d90 - d10) / (t90 - t10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pool", default="threads", choices=("threads", "prefork", "solo"))
    args = parser.parse_args()
    server = os.environ.get("HUB_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("HUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    prefix = f"hubbench:{uuid.uuid4().hex[:6]}:"
    sandbox_port, port = free_port(), free_port()
    url = fresh_postgres(server, "hub_bench_deliver")
    env = hub_env(url, port, HUB_REDIS_URL=redis_url, HUB_REDIS_PREFIX=prefix, HUB_SANDBOX="1",
                  HUB_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
                  HUB_VAR_DIR=tempfile.mkdtemp(prefix="hub-bench-deliver-"))
    os.environ.update(env)  # this process builds the same runtime to queue the messages

    from hub.messaging.models import Message
    from hub.messaging.schemas import MessageCreate
    from hub.messaging.service import send_message
    from hub.migrate import upgrade
    from hub.queue import PING, publish
    from hub.runtime import build_runtime
    from hub.settings import Settings

    upgrade(url)
    runtime = build_runtime(Settings())
    queue_key = f"{prefix}celery:hub"
    broker = redis.Redis.from_url(redis_url)
    sandbox = start_hub_command(env, "sandbox", "--port", str(sandbox_port))
    worker_args = ("worker", "--pool", args.pool, "--concurrency", str(args.concurrency))
    try:
        wait_for_sandbox(sandbox_port)

        # 1. Celery's own drain rate: the same number of no-op tasks, same worker settings
        def noop_drain() -> tuple[float, float]:
            for _ in range(args.messages):
                publish(runtime.celery, PING)
            worker = start_hub_command(env, *worker_args)
            try:
                return _timed(lambda: args.messages - broker.llen(queue_key), args.messages, 0.005)
            finally:
                worker.terminate()
                worker.wait(30)

        noop_before = noop_drain()

        # 2. a tenant on a sandbox account; the messages queued through the service
        tenant_id, sid = sandbox_twilio_tenant(runtime, sandbox_port, ["sms"])
        queued_started = time.perf_counter()
        for start_at in range(0, args.messages, 500):
            with runtime.session_factory() as session, session.begin():
                for i in range(start_at, min(args.messages, start_at + 500)):
                    send_message(session=session, runtime=runtime, tenant_id=tenant_id,
                                 message_in=MessageCreate(channel="sms", to=f"+55219{i % 10**8:08d}",
                                                          body=f"Lembrete {i}: sua consulta é amanhã."))
        queue_rate = args.messages / (time.perf_counter() - queued_started)

        def delivered() -> int:
            with runtime.session_factory() as session:
                return session.scalar(select(func.count()).select_from(Message).where(
                    Message.status.in_(("sent", "delivered", "failed", "dead", "undelivered"))))

        worker = start_hub_command(env, *worker_args)
        deliver_rate, deliver_steady = _timed(delivered, args.messages, 0.1)
        worker.terminate()
        worker.wait(30)
        # and once more after: this machine's speed drifts, the baseline is their mean
        noop_after = noop_drain()
        noop_rate, noop_steady = ((a + b) / 2 for a, b in zip(noop_before, noop_after, strict=True))
        with runtime.session_factory() as session:
            by_status = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
        sent = httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/twilio/messages",
                         params={"account_sid": sid}, timeout=60).json()["messages"]

        print(f"worker: --pool {args.pool} --concurrency {args.concurrency}, PostgreSQL + Redis, sandbox Twilio")
        print("                          whole run          steady (10% to 90% done)")
        print(f"Celery no-op drain        {noop_rate:8.0f} tasks/s     {noop_steady:8.0f} tasks/s"
              f"   (mean of {noop_before[0]:.0f} before and {noop_after[0]:.0f} after; steady"
              f" {noop_before[1]:.0f} and {noop_after[1]:.0f})")
        print(f"delivery                  {deliver_rate:8.0f} messages/s  {deliver_steady:8.0f} messages/s")
        print(f"delivery / no-op          {deliver_rate / noop_rate:8.1%}"
              f"           {deliver_steady / noop_steady:8.1%}")
        print(f"queueing (POST path)      {queue_rate:8.0f} messages/s (service, one transaction per 500)")
        print(f"final statuses: {by_status}; the sandbox received {len(sent)}")
    finally:
        sandbox.terminate()
        sandbox.wait(15)
        runtime.close()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)


if __name__ == "__main__":
    main()
