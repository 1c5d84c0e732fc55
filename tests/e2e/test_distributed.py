"""The whole story on PostgreSQL + Redis with a real `hub worker` process, as
deployed: onboarding, inbound SMS and WhatsApp into the right tenant, a reply
delivered, the broker going down and coming back, a worker killed mid-delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from connectors.sandbox.app import create_sandbox_app
from connectors.sandbox.server import ThreadedServer, free_port
from hub.app import create_app
from hub.ratelimit import RateLimits
from hub.runtime import build_runtime
from hub.settings import Settings
from tests.conftest import TEST_MASTER_KEYS, redis_prefix
from tests.support import tenant_headers
from tests.tcp_proxy import TcpProxy

CUSTOMER = "+5521987654321"
WA_CUSTOMER = "+5531988887777"


def eventually(probe, *, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Deployment:
    """API (with its relay) in this process; the sandbox; `hub worker` processes on a
    Redis reached through a proxy the test can cut."""

    def __init__(self, database_url: str, redis_url: str, tmp_path, *, relay_in_process: bool = True) -> None:
        redis = httpx.URL(redis_url)
        self.proxy = TcpProxy(redis.host, redis.port or 6379).start()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        sandbox_app = create_sandbox_app(hub_url=self.url)
        self.sandbox_server = ThreadedServer(sandbox_app).start()
        self.twilio = sandbox_app.state.twilio
        self.env = {
            "HUB_DATABASE_URL": database_url,
            "HUB_REDIS_URL": f"redis://127.0.0.1:{self.proxy.port}{redis.path or '/15'}",
            "HUB_REDIS_PREFIX": f"{redis_prefix()}{uuid.uuid4().hex[:6]}:",
            "HUB_MASTER_KEYS": TEST_MASTER_KEYS,
            "HUB_PUBLIC_URL": self.url,
            "HUB_SANDBOX": "1",
            "HUB_SANDBOX_URL": self.sandbox_server.url,
            "HUB_VAR_DIR": str(tmp_path / "var"),
            "HUB_DELIVERY_RETRY_BASE_SECONDS": "0.2",
            "HUB_RELAY_INTERVAL_SECONDS": "0.1",
            "HUB_LOG_LEVEL": "WARNING",
        }
        settings = Settings(**{k.removeprefix("HUB_").lower(): v for k, v in self.env.items()},
                            port=port, embedded_worker=False, relay_in_process=relay_in_process)
        self.runtime = build_runtime(settings)
        # Cutting the proxy takes the broker away, not the API's rate-limit store: that
        # one fails closed (a 503 on every request, tests/test_ratelimit.py) and would
        # hide what these tests are about. So the API counts on Redis directly.
        self.runtime.rate_limits = RateLimits(settings.model_copy(update={"redis_url": redis_url}))
        self.server = ThreadedServer(create_app(runtime=self.runtime), port=port).start()
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.workers: list[subprocess.Popen] = []

    def start(self, *command: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | self.env
        process = subprocess.Popen([sys.executable, "-m", "hub.cli", *command], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(process)
        return process

    def start_worker(self) -> subprocess.Popen:
        return self.start("worker", "--pool", "solo", "--concurrency", "1")

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()
        self.http.close()
        self.server.stop()
        self.sandbox_server.stop()
        self.proxy.cut()
        self.runtime.close()

    # --- what a tenant does -------------------------------------------------------------
    def onboard(self, slug: str) -> tuple[dict[str, str], str]:
        _, headers = tenant_headers(self.http, self.runtime, slug)
        r = self.http.post("/v1/integrations/twilio/provision", headers=headers,
                           json={"country": "BR", "area_code": "11", "channels": ["sms", "whatsapp"]})
        assert r.status_code in (200, 201), r.text
        return headers, r.json()["config"]["numbers"][0]

    def send(self, headers, body: str, to: str = CUSTOMER) -> str:
        r = self.http.post("/v1/messages", headers=headers, json={"channel": "sms", "to": to, "body": body})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def status(self, headers, message_id: str) -> str:
        return self.http.get(f"/v1/messages/{message_id}", headers=headers).json()["status"]

    def sent_bodies(self, to: str = CUSTOMER) -> list[str]:
        return [m["body"] for m in self.twilio.sent_messages(to=to)]


@pytest.fixture
def deployment(request, postgres_url, redis_url, tmp_path):
    from tests.support import truncate_all

    relay_process = request.node.get_closest_marker("relay_process") is not None
    deployment = Deployment(postgres_url, redis_url, tmp_path, relay_in_process=not relay_process)
    if relay_process:
        deployment.start("relay")
    yield deployment
    deployment.close()
    truncate_all(postgres_url)


@pytest.mark.relay_process
def test_the_whole_story_with_two_tenants(deployment):
    """API, `hub relay` and `hub worker` as separate processes, as deployed."""
    deployment.start_worker()
    clinic, clinic_number = deployment.onboard("clinica")
    garage, garage_number = deployment.onboard("oficina")

    deployment.twilio.simulate_inbound(to=clinic_number, from_=CUSTOMER, body="Quero remarcar", channel="sms")
    deployment.twilio.simulate_inbound(to=garage_number, from_=WA_CUSTOMER, body="Meu carro está pronto?",
                                       channel="whatsapp")

    def conversations(headers):
        return deployment.http.get("/v1/conversations", headers=headers).json()["data"]

    clinic_thread = eventually(lambda: conversations(clinic), what="the clinic's conversation")[0]
    garage_thread = eventually(lambda: conversations(garage), what="the garage's conversation")[0]
    assert (clinic_thread["channel"], clinic_thread["contact_address"]) == ("sms", CUSTOMER)
    assert (garage_thread["channel"], garage_thread["contact_address"]) == ("whatsapp", WA_CUSTOMER)
    assert len(conversations(clinic)) == len(conversations(garage)) == 1  # each sees only its own
    assert deployment.http.get(f"/v1/conversations/{garage_thread['id']}", headers=clinic).status_code == 404

    r = deployment.http.post(f"/v1/conversations/{clinic_thread['id']}/messages", headers=clinic,
                             json={"body": "Claro! Qual horário prefere?"})
    assert r.status_code == 202, r.text
    reply = r.json()["id"]
    eventually(lambda: deployment.status(clinic, reply) == "delivered", what="the reply to be delivered")
    thread = deployment.http.get(f"/v1/conversations/{clinic_thread['id']}", headers=clinic).json()
    assert [m["direction"] for m in thread["messages"]] == ["inbound", "outbound"]


def test_broker_down_then_back_loses_nothing_and_doubles_nothing(deployment):
    deployment.start_worker()
    headers, _ = deployment.onboard("clinica")
    deployment.proxy.cut()
    ids = [deployment.send(headers, f"lembrete {i}") for i in range(5)]  # committed; the publish fails
    time.sleep(1.0)
    assert all(deployment.status(headers, i) == "queued" for i in ids)
    deployment.proxy.restore()
    for message_id in ids:
        eventually(lambda m=message_id: deployment.status(headers, m) in ("sent", "delivered"),
                   timeout=60, what="delivery after the broker came back")
    assert sorted(deployment.sent_bodies()) == sorted(f"lembrete {i}" for i in range(5))


def test_a_worker_killed_mid_delivery_neither_loses_nor_duplicates(deployment):
    worker = deployment.start_worker()
    headers, number = deployment.onboard("clinica")
    # the provider takes 3 s to answer this one: the worker is inside the call when killed
    deployment.twilio.inject_failure("timeout", number=CUSTOMER, delay=3.0, times=1)
    message_id = deployment.send(headers, "Sua consulta é amanhã")
    eventually(lambda: deployment.status(headers, message_id) == "sending", what="the worker to claim it")
    time.sleep(0.5)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    # Time passes: the provider finishes the call the dead worker made (the lease,
    # 30 s at least, always outlasts a provider call), then the claim expires — moved
    # into the past here instead of waiting out the lease.
    time.sleep(3.5)
    with deployment.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE messages SET claimed_until = now() - interval '1 second' WHERE id = :id"),
                     {"id": message_id})
        conn.execute(text("UPDATE outbox SET available_at = now(), published_at = NULL WHERE message_id = :id"),
                     {"id": message_id})
    deployment.start_worker()
    eventually(lambda: deployment.status(headers, message_id) in ("sent", "delivered"), timeout=60,
               what="delivery by the new worker")
    time.sleep(1.0)
    assert deployment.sent_bodies() == ["Sua consulta é amanhã"]  # exactly once
