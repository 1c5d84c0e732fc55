"""Shared bits of the benchmarks: start a real `hub serve` process, time requests."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_postgres(server_url: str, name: str) -> str:
    """A new empty database on ``server_url``'s server (dropped first if left over)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def hub_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    from hub.settings import new_master_key_entry

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=database_url, HUB_PORT=str(port), HUB_MASTER_KEYS=new_master_key_entry(),
               HUB_LOG_LEVEL="WARNING", HUB_PUBLIC_URL=f"http://127.0.0.1:{port}", **extra)
    return env


@contextmanager
def running_hub(env: dict[str, str], workers: int = 1):
    """`hub migrate` then `hub serve` in a subprocess; yields the base URL."""
    hub = [sys.executable, "-m", "hub.cli"]
    cwd = tempfile.mkdtemp(prefix="hub-bench-")
    env = {**env, "HUB_VAR_DIR": str(Path(cwd) / "var")}
    subprocess.run([*hub, "migrate"], env=env, check=True, capture_output=True, cwd=cwd)
    proc = subprocess.Popen([*hub, "serve", "--workers", str(workers)], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{env['HUB_PORT']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hub did not start")
            time.sleep(0.2)
        yield base, cwd
    finally:
        proc.terminate()
        proc.wait(15)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, latencies_ms: list[float]) -> dict[str, float]:
    row = {"median_ms": statistics.median(latencies_ms), "p99_ms": percentile(latencies_ms, 99),
           "n": len(latencies_ms)}
    print(f"{name:<34} n={row['n']:<6} median={row['median_ms']:7.2f} ms  p99={row['p99_ms']:7.2f} ms")
    return row


def start_hub_command(env: dict[str, str], *args: str) -> subprocess.Popen:
    """``hub <args>`` as its own process, output discarded."""
    return subprocess.Popen([sys.executable, "-m", "hub.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_sandbox(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sandbox/twilio/accounts", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox did not start") from None
            time.sleep(0.2)


def sandbox_twilio_tenant(runtime, sandbox_port: int, channels: list[str]):
    """A tenant on a fresh sandbox Twilio account, its first number routed to it: the tenant id."""
    import secrets

    from hub.webhooks.routes import claim_route
    from tenants import service as tenants
    from tenants.models import IntegrationStatus
    from tenants.schemas import TenantCreate

    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    httpx.post(f"http://127.0.0.1:{sandbox_port}/_sandbox/twilio/accounts",
               json={"sid": sid, "auth_token": token}).raise_for_status()
    number = httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/twilio/numbers",
                       params={"account_sid": sid}).json()["numbers"][0]["phone_number"]
    with runtime.session_factory() as session, session.begin():
        tenant = tenants.create_tenant(session=session, vault=runtime.vault,
                                       tenant_in=TenantCreate(slug="bench", name="Bench"))
        integration = tenants.put_integration(
            session=session, vault=runtime.vault, tenant_id=tenant.id, kind="twilio",
            credentials={"account_sid": sid, "auth_token": token},
            config={"numbers": [number], "channels": channels}, status=IntegrationStatus.ACTIVE)
        claim_route(session, kind="twilio", route_key=number, integration=integration)
        return tenant.id, sid
