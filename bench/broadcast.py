"""Broadcasts: (a) rendering cost per message, (b) a 10,000-recipient broadcast fanned out
to the sandbox Twilio by real `hub worker` and `hub relay` processes, against the
configured per-tenant rate.

    .venv/bin/python -m bench.broadcast [--renders 10000] [--recipients 10000] [--rate 50]
                                        [--concurrency 16] [--relay-interval 0.5]

PostgreSQL and Redis on 127.0.0.1 (HUB_BENCH_DATABASE_URL / HUB_BENCH_REDIS_URL); the
sandbox runs as `hub sandbox` in its own process. The broadcast goes to WhatsApp (its
sender takes 80/s), with the tenant's own rate set to ``--rate``, so the tenant's rate
is the one that paces it. Reported: end-to-end messages/s (from the accepted POST to
the last provider call) and the achieved send rate per 1-second window of provider
calls (attempt start times), against the configured rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

import redis
from sqlalchemy import func, select, update

from bench.common import free_port, fresh_postgres, hub_env, sandbox_twilio_tenant, start_hub_command, wait_for_sandbox

FINAL = ("sent", "delivered", "read", "failed", "dead", "undelivered")
DATA = {"business_name": "Clínica Sorriso", "amount_cents": 15990, "due_date": "2026-11-20",
        "invoice_number": "NF-1234", "payment_url": "https://pay.example.com/x"}


def bench_render(runtime, tenant_id: uuid.UUID, count: int) -> None:
    """(a) ms per rendered message, through the function broadcasts render with."""
    from hub.broadcasts.service import render_message

    by_channel: dict[str, list[float]] = {"sms": [], "whatsapp": [], "email": []}
    channels = list(by_channel)
    with runtime.session_factory() as session:
        render_message(session=session, tenant_id=tenant_id, template="payment-overdue", channel="sms",
                       data={**DATA, "customer_name": "warm-up"})
        for i in range(count):
            channel = channels[i % 3]
            began = time.perf_counter()
            render_message(session=session, tenant_id=tenant_id, template="payment-overdue", channel=channel,
                           data={**DATA, "customer_name": f"Cliente {i}"})
            by_channel[channel].append((time.perf_counter() - began) * 1000)
    every = [ms for values in by_channel.values() for ms in values]
    print(f"render payment-overdue   n={len(every):<6} mean={statistics.mean(every):.3f} ms/message  "
          + "  ".join(f"{c}={statistics.mean(v):.3f}" for c, v in by_channel.items() if v))


def windows(moments: list[float]) -> list[int]:
    """Calls per whole 1-second window from the first call (the last, partial one dropped)."""
    first = min(moments)
    span = int(max(moments) - first)
    counts = [0] * max(span, 1)
    for at in moments:
        index = int(at - first)
        if index < len(counts):
            counts[index] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renders", type=int, default=10_000)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0, help="the tenant's messages per second")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--relay-interval", type=float, default=0.5)
    args = parser.parse_args()
    server = os.environ.get("HUB_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("HUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    prefix = f"hubbench:{uuid.uuid4().hex[:6]}:"
    sandbox_port, port = free_port(), free_port()
    url = fresh_postgres(server, "hub_bench_broadcast")
    env = hub_env(url, port, HUB_REDIS_URL=redis_url, HUB_REDIS_PREFIX=prefix, HUB_SANDBOX="1",
                  HUB_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
                  HUB_RELAY_INTERVAL_SECONDS=str(args.relay_interval),
                  HUB_VAR_DIR=tempfile.mkdtemp(prefix="hub-bench-broadcast-"))
    os.environ.update(env)  # this process builds the same runtime to accept the broadcast

    from hub.broadcasts.models import Broadcast
    from hub.broadcasts.schemas import BroadcastCreate
    from hub.broadcasts.service import create_broadcast
    from hub.messaging.models import Message, MessageAttempt
    from hub.migrate import upgrade
    from hub.runtime import build_runtime
    from hub.settings import Settings
    from tenants.models import Tenant

    upgrade(url)
    runtime = build_runtime(Settings())
    broker = redis.Redis.from_url(redis_url)
    sandbox = start_hub_command(env, "sandbox", "--port", str(sandbox_port))
    processes = [sandbox]
    try:
        wait_for_sandbox(sandbox_port)
        tenant_id, _ = sandbox_twilio_tenant(runtime, sandbox_port, ["whatsapp"])
        with runtime.session_factory() as session, session.begin():
            session.execute(update(Tenant).where(Tenant.id == tenant_id).values(messages_per_second=args.rate))

        # (a) rendering
        bench_render(runtime, tenant_id, args.renders)

        # (b) the fan-out: worker and relay first, then the broadcast
        processes.append(start_hub_command(env, "worker", "--pool", "threads", "--concurrency", str(args.concurrency)))
        processes.append(start_hub_command(env, "relay"))
        time.sleep(3)  # let them connect
        broadcast_in = BroadcastCreate(template="payment-overdue", channel="whatsapp", data=DATA, recipients=[
            {"to": f"+55219{i:08d}", "data": {"customer_name": f"Cliente {i}"}} for i in range(args.recipients)])
        began = time.perf_counter()
        with runtime.session_factory() as session, session.begin():
            view = create_broadcast(session=session, runtime=runtime, tenant_id=tenant_id, broadcast_in=broadcast_in)
            broadcast_id, rate = view.broadcast.id, view.broadcast.rate
        accepted_ms = (time.perf_counter() - began) * 1000
        expected_s = args.recipients / rate
        deadline = time.monotonic() + expected_s * 3 + 60
        done = 0
        while done < args.recipients and time.monotonic() < deadline:
            time.sleep(0.5)
            with runtime.session_factory() as session:
                done = session.scalar(select(func.count()).select_from(Message).where(
                    Message.broadcast_id == broadcast_id, Message.status.in_(FINAL)))
        with runtime.session_factory() as session:
            calls = [at.timestamp() for at in session.scalars(
                select(MessageAttempt.started_at).join(Message, Message.id == MessageAttempt.message_id)
                .where(Message.broadcast_id == broadcast_id, MessageAttempt.number == 1))]
            by_status = dict(session.execute(select(Message.status, func.count()).where(
                Message.broadcast_id == broadcast_id).group_by(Message.status)).all())
            accepted_at = session.get(Broadcast, broadcast_id).created_at.timestamp()
        end_to_end = max(calls) - accepted_at if calls else float("nan")
        per_window = windows(calls) if calls else [0]
        achieved = (len(calls) - 1) / (max(calls) - min(calls)) if len(calls) > 1 else float("nan")
        steady = per_window[1:-1] or per_window  # the first and last seconds are partial by nature
        deviation = max(abs(n - rate) for n in steady)

        print(f"broadcast: {args.recipients} WhatsApp recipients, tenant rate {args.rate:g}/s -> paced at {rate:g}/s; "
              f"worker --pool threads --concurrency {args.concurrency}, relay every {args.relay_interval:g}s; "
              "PostgreSQL + Redis, sandbox Twilio")
        print(f"POST (validate + store recipients)  {accepted_ms:8.0f} ms")
        print(f"end to end                          {len(calls) / end_to_end:8.1f} messages/s  "
              f"({end_to_end:.1f} s from accepted to the last provider call; ideal {expected_s:.1f} s)")
        print(f"achieved send rate                  {achieved:8.1f} messages/s  (configured {rate:g}/s, "
              f"{achieved / rate:.1%})")
        print(f"per 1-s window                      min={min(steady)} max={max(steady)} "
              f"mean={statistics.mean(steady):.1f}  max deviation {deviation:.0f} ({deviation / rate:.0%} of the rate)")
        print(f"final statuses: {by_status}")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(30)
        runtime.close()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)


if __name__ == "__main__":
    main()
