"""Token endpoint and authenticated-request latency against a real `hub serve`.

    .venv/bin/python bench/auth_latency.py [--requests 300] [--database-url postgresql+psycopg://…/server_db]

Sequential requests from one client (latency, not throughput). The baseline, measured
in the same run, is GET /health/live (no auth, no database): the ratios say what the
perimeter costs on top of a bare route.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import httpx

from bench.common import free_port, fresh_postgres, hub_env, running_hub, summary


def timed(client: httpx.Client, n: int, request) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = request(client)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--database-url", default="", help="a PostgreSQL server URL (a bench database is created)")
    args = parser.parse_args()

    port = free_port()
    url = (fresh_postgres(args.database_url, "hub_bench_auth") if args.database_url
           else f"sqlite:////tmp/hub-bench-auth-{port}.db")
    env = hub_env(url, port, HUB_TOKEN_RATE_LIMIT="1000000", HUB_PUBLIC_RATE_LIMIT="1000000",
                  HUB_SANDBOX="0", HUB_RELAY_IN_PROCESS="0", HUB_EMBEDDED_WORKER="0")
    with running_hub(env) as (base, cwd):
        created = subprocess.run([sys.executable, "-m", "hub.cli", "admin", "create-client", "--platform", "--json"],
                                 env={**env, "HUB_VAR_DIR": f"{cwd}/var"}, capture_output=True, text=True,
                                 check=True, cwd=cwd)
        platform = json.loads(created.stdout)
        with httpx.Client(base_url=base, timeout=10) as client:
            def token_for(creds):
                return client.post("/oauth/token", data={"grant_type": "client_credentials", **creds}).json()[
                    "access_token"]

            admin = {"Authorization": f"Bearer {token_for(platform)}"}
            tenant = client.post("/v1/tenants", headers=admin,
                                 json={"slug": "bench", "name": "Bench", "plan": "enterprise"}).json()
            client.patch(f"/v1/tenants/{tenant['id']}", headers=admin, json={"rate_limit_per_minute": 1_000_000})
            creds = client.post(f"/v1/tenants/{tenant['id']}/clients", headers=admin, json={}).json()
            creds = {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
            bearer = {"Authorization": f"Bearer {token_for(creds)}"}

            n = args.requests
            timed(client, 20, lambda c: c.get("/health/live"))  # warm up
            print(f"backend: {url.split(':')[0]}, 1 uvicorn worker, sequential requests")
            base_row = summary("baseline GET /health/live", timed(client, n, lambda c: c.get("/health/live")))
            token_row = summary("POST /oauth/token", timed(
                client, n, lambda c: c.post("/oauth/token", data={"grant_type": "client_credentials", **creds})))
            auth_row = summary("GET /v1/tenant (authenticated)", timed(
                client, n, lambda c: c.get("/v1/tenant", headers=bearer)))
            print(f"ratios to baseline (median): token x{token_row['median_ms'] / base_row['median_ms']:.1f}, "
                  f"authenticated request x{auth_row['median_ms'] / base_row['median_ms']:.1f}")


if __name__ == "__main__":
    main()
