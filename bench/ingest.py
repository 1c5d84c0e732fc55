"""Webhook ingest throughput: POST /webhooks/twilio/messaging with signed, distinct
messages against the hub on PostgreSQL + Redis, and in the same run a bare FastAPI
route that only parses the same form, with the same uvicorn worker count, and the hub
with its request counters off (HUB_METRICS_ENABLED=0) for the cost of metrics.

    .venv/bin/python -m bench.ingest [--duration 10] [--connections 32] [--tenants 10 10000] [--rounds 3]

Needs wrk (Debian: apt-get install wrk), PostgreSQL and Redis on 127.0.0.1 (override
with HUB_BENCH_DATABASE_URL / HUB_BENCH_REDIS_URL). Only 127.0.0.1 is loaded; every
run is bounded by --duration. The hub runs as deployed with Redis: `hub serve` plus a
`hub relay` process handing the stored events to the broker in batches (no Celery
worker: the queue grows during a run; between runs the bench marks the events handled
and empties the queue, as workers would have).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from bench.common import ROOT, free_port, fresh_postgres, hub_env

REQUESTS_IN_FILE = 40_000  # distinct signed requests per run (a fresh MessageSid each)
# Every tenant's first webhook is a cache miss (its route, its opened secret): the
# warm-up sends each request of its file once, one per tenant at least, and as many for
# every count, so each run starts with warm caches and the same rows stored.
WARM_UP_REQUESTS = 10_000


def seed_tenants(database_url: str, master_keys: str, count: int) -> list[tuple[str, str]]:
    """``count`` tenants, each with a Twilio integration and a route for its number."""
    from hub.db import make_engine, make_session_factory
    from hub.migrate import upgrade
    from hub.settings import parse_master_keys
    from hub.webhooks.routes import claim_route
    from tenants import service as tenants
    from tenants.models import IntegrationStatus
    from tenants.schemas import TenantCreate
    from tenants.vault import Vault

    upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    vault = Vault(parse_master_keys(master_keys))
    numbers = []
    for start in range(0, count, 500):
        with factory() as session, session.begin():
            for i in range(start, min(count, start + 500)):
                token = secrets.token_hex(16)
                number = f"+55119{i:08d}"
                tenant = tenants.create_tenant(session=session, vault=vault,
                                               tenant_in=TenantCreate(slug=f"bench-{i}", name=f"Bench {i}"))
                integration = tenants.put_integration(
                    session=session, vault=vault, tenant_id=tenant.id, kind="twilio",
                    credentials={"account_sid": "AC" + uuid.uuid4().hex, "auth_token": token},
                    config={"numbers": [number], "channels": ["sms"]}, status=IntegrationStatus.ACTIVE)
                claim_route(session, kind="twilio", route_key=number, integration=integration)
                numbers.append((number, token))
    engine.dispose()
    return numbers


def write_requests(path: Path, public_url: str, numbers: list[tuple[str, str]], count: int) -> None:
    url = f"{public_url}/webhooks/twilio/messaging"
    with path.open("w") as out:
        for i in range(count):
            number, token = numbers[i % len(numbers)]
            form = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32,
                    "From": f"+55219{i % 10**8:08d}", "To": number,
                    "Body": f"Olá, mensagem {i}", "NumMedia": "0", "SmsStatus": "received"}
            signature = RequestValidator(token).compute_signature(url, form)
            out.write(f"{signature}\t{urlencode(form)}\n")


def serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    """The bare app through uvicorn; the hub through `hub serve` (same uvicorn, one
    worker, plus the hub's logging set-up)."""
    if app == "hub":
        cmd = [sys.executable, "-m", "hub.cli", "serve", "--workers", "1"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.post(f"http://127.0.0.1:{port}/webhooks/twilio/messaging", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not start") from None
            time.sleep(0.2)


def wrk(port: int, requests_file: Path, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(ROOT / "bench" / "ingest.lua"),
         f"http://127.0.0.1:{port}", "--", str(requests_file), "2"],
        capture_output=True, text=True, check=True).stdout
    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50%"), "p99": ms("99%"),
            "errors": int(non_2xx.group(1)) if non_2xx else 0}


def warm_up(port: int, requests_file: Path, connections: int) -> float:
    """Send every request of ``requests_file`` once, ``connections`` at a time; seconds taken."""
    lines = requests_file.read_text().splitlines()

    async def run() -> None:
        pending = iter(lines)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            async def connection() -> None:
                for line in pending:
                    signature, body = line.split("\t", 1)
                    r = await client.post("/webhooks/twilio/messaging", content=body, headers={
                        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
                    r.raise_for_status()

            await asyncio.gather(*(connection() for _ in range(connections)))

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def settle(database_url: str, redis_url: str, queue_key: str, timeout: float = 180.0) -> float:
    """Wait until the relay has dispatched every stored event, then do what workers would
    have done: mark them handled and empty the queue. No worker runs (it would share the
    two cores with the API); without this the unhandled events would pile up, and after
    five minutes the relay would hand them all out again as if their workers had died.
    Returns the seconds the relay took."""
    import redis
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    started = time.monotonic()
    try:
        with engine.connect() as conn:
            while conn.execute(text("SELECT count(*) FROM webhook_events WHERE dispatched_at IS NULL")).scalar():
                if time.monotonic() - started > timeout:
                    raise RuntimeError("the relay did not catch up")
                time.sleep(0.5)
                conn.rollback()
            took = time.monotonic() - started
            conn.execute(text("UPDATE webhook_events SET handled_at = now() WHERE handled_at IS NULL"))
            conn.commit()
    finally:
        engine.dispose()
    redis.Redis.from_url(redis_url).delete(queue_key)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tenants", type=int, nargs="+", default=[10, 10_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    server = os.environ.get("HUB_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("HUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    work = Path(tempfile.mkdtemp(prefix="hub-bench-ingest-"))

    # Every server runs for the whole bench, and the measured runs take turns: bare,
    # each tenant count, then again, ``--rounds`` times. This machine's speed drifts by
    # tens of percent over minutes; taking turns spreads the drift over all of them.
    servers: list[subprocess.Popen] = []
    targets: dict[str, tuple[int, Callable[[int], Path], tuple[str, str] | None]] = {}
    try:
        port = free_port()
        servers.append(serve("bench.bare_app:app", port, dict(os.environ)))
        bare_numbers = [(f"+55119{i:08d}", secrets.token_hex(16)) for i in range(10)]

        def bare_file(run: int, port: int = port) -> Path:
            path = work / f"bare-{run}.txt"
            write_requests(path, f"http://127.0.0.1:{port}", bare_numbers, REQUESTS_IN_FILE)
            return path

        wrk(port, bare_file(-1), 2, args.connections)  # warm up
        targets["bare form route"] = (port, bare_file, None)

        for count in args.tenants:
            port = free_port()
            url = fresh_postgres(server, f"hub_bench_ingest_{count}")
            prefix = f"hubbench:{uuid.uuid4().hex[:6]}:"
            env = hub_env(url, port, HUB_REDIS_URL=redis_url, HUB_REDIS_PREFIX=prefix,
                          HUB_ENV="development", HUB_SANDBOX="0", HUB_EMBEDDED_WORKER="0",
                          HUB_PUBLIC_RATE_LIMIT="100000000", HUB_VAR_DIR=str(work / "var"))
            started = time.perf_counter()
            numbers = seed_tenants(url, env["HUB_MASTER_KEYS"], count)
            print(f"seeded {count} tenants in {time.perf_counter() - started:.1f} s")

            def hub_file(run: int, count: int = count, numbers: list = numbers, public_url: str = env["HUB_PUBLIC_URL"]
                         ) -> Path:
                path = work / f"hub-{count}-{run}.txt"
                write_requests(path, public_url, numbers, REQUESTS_IN_FILE)
                return path

            servers.append(serve("hub", port, env))
            # the relay runs as its own process beside the API, as deployed with Redis
            servers.append(subprocess.Popen([sys.executable, "-m", "hub.cli", "relay"], env=env, cwd=ROOT,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            # The same warm-up for every tenant count, then the relay is let catch up: it
            # shares the machine, and a backlog left from warming up would slow the run.
            warm = work / f"warm-{count}.txt"
            write_requests(warm, env["HUB_PUBLIC_URL"], numbers, max(count, WARM_UP_REQUESTS, *args.tenants))
            took = warm_up(port, warm, args.connections)
            drained = settle(url, redis_url, f"{prefix}celery:hub")
            print(f"{count} tenants: warmed up in {took:.1f} s; the relay dispatched the backlog in {drained:.1f} s")
            targets[f"hub webhook, {count} tenants"] = (port, hub_file, (url, f"{prefix}celery:hub"))
            if count == args.tenants[0]:
                # the same hub with the request counters off (HUB_METRICS_ENABLED=0), on the same
                # database and relay: the cost of metrics on the hot path, measured in turns
                off_port = free_port()
                servers.append(serve("hub", off_port, {**env, "HUB_PORT": str(off_port), "HUB_METRICS_ENABLED": "0"}))
                warm_up(off_port, warm, args.connections)
                settle(url, redis_url, f"{prefix}celery:hub")
                targets[f"hub webhook, {count} tenants, metrics off"] = (off_port, hub_file,
                                                                         (url, f"{prefix}celery:hub"))

        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for run in range(args.rounds):
            # every other round in reverse: the run right after another one pays for its backlog
            # and the machine's drift, so no target always goes first (metrics on vs off)
            order = list(targets.items()) if run % 2 == 0 else list(reversed(targets.items()))
            for name, (port, requests_file, _) in order:
                path = requests_file(run)
                for other in targets.values():  # each run starts with no backlog of its own or another's
                    if other[2]:
                        settle(other[2][0], redis_url, other[2][1])
                runs[name].append(wrk(port, path, args.duration, args.connections))
                print(f"round {run + 1}: {name:<28} {runs[name][-1]['rps']:8.0f} req/s  "
                      f"p99 {runs[name][-1]['p99']:6.1f} ms")
    finally:
        for proc in reversed(servers):
            proc.terminate()
        for proc in servers:
            proc.wait(15)

    results = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for name, rows in runs.items()}
    bare_rps = results["bare form route"]["rps"]
    print(f"\n{args.connections} connections, {args.duration} s per run, 1 uvicorn worker, wrk -t2; "
          f"median of {args.rounds} rounds")
    for name, row in results.items():
        print(f"{name:<28} {row['rps']:8.0f} req/s  p50 {row['p50']:6.1f} ms  p99 {row['p99']:6.1f} ms  "
              f"({row['rps'] / bare_rps:5.1%} of bare)  non-2xx {row['errors']:.0f}")
    on, off = f"hub webhook, {args.tenants[0]} tenants", f"hub webhook, {args.tenants[0]} tenants, metrics off"
    per_round = ", ".join(f"{1 - a['rps'] / b['rps']:+.1%}" for a, b in zip(runs[on], runs[off], strict=True))
    print(f"metrics on vs off: {1 - results[on]['rps'] / results[off]['rps']:+.1%} throughput cost (medians); "
          f"per round {per_round}")
    if len(args.tenants) == 2:
        few, many = (f"hub webhook, {c} tenants" for c in args.tenants)
        cost = 1 - results[many]["rps"] / results[few]["rps"]
        per_round = ", ".join(f"{1 - b['rps'] / a['rps']:+.1%}" for a, b in zip(runs[few], runs[many], strict=True))
        print(f"{args.tenants[1]} tenants vs {args.tenants[0]}: {cost:+.1%} throughput cost (medians); "
              f"per round {per_round}")


if __name__ == "__main__":
    main()
