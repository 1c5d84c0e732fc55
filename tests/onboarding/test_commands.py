"""``hub sandbox``, ``hub worker`` and ``hub beat``, each run as its own process the way
a deployment runs them, and seen doing its job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from connectors.sandbox.server import free_port
from connectors.twilio import TwilioConnector
from hub.queue import RELAY
from hub.runtime import build_runtime
from hub.settings import Settings, new_master_key_entry
from tests.onboarding.helpers import wait_until
from tests.support import random_hex

HUB = [sys.executable, "-m", "hub.cli"]


@contextmanager
def hub_command(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run ``hub ARGS``; on the way out stop it as a supervisor would (SIGTERM)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    full_env.update(env)
    with log.open("w") as out:
        proc = subprocess.Popen([*HUB, *args], env=full_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@pytest.fixture
def broker_env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    """Settings of a process on Redis, under a key prefix of its own (deleted afterwards)."""
    prefix = f"hubtest:onboarding:{random_hex(4)}:"
    yield {"HUB_REDIS_URL": redis_url, "HUB_REDIS_PREFIX": prefix, "HUB_DATABASE_URL": "sqlite://",
           "HUB_MASTER_KEYS": new_master_key_entry(), "HUB_VAR_DIR": str(tmp_path / "var"), "HUB_LOG_LEVEL": "INFO"}
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


class TestSandboxCommand:
    def test_serves_the_providers_to_the_real_sdk(self, tmp_path):
        port = free_port()
        env = {"HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PUBLIC_URL": "http://127.0.0.1:9"}
        with hub_command(["sandbox", "--port", str(port)], env, tmp_path / "sandbox.log") as proc:
            url = f"http://127.0.0.1:{port}"

            def answering() -> bool:
                assert proc.poll() is None, (tmp_path / "sandbox.log").read_text()
                try:
                    return httpx.get(f"{url}/_sandbox/twilio/accounts", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(answering, timeout=30, what="hub sandbox to answer")
            main = TwilioConnector(credentials={"account_sid": "AC" + "1" * 32, "auth_token": "token"}, base_url=url)
            try:
                sid, _token = main.create_subaccount("from a test")
                assert main.fetch_subaccount(sid).status == "active"
            finally:
                main.close()
            accounts = httpx.get(f"{url}/_sandbox/twilio/accounts").json()["accounts"]
            assert {a["friendly_name"] for a in accounts} >= {"from a test"}
        assert proc.returncode is not None


class TestWorkerCommand:
    def test_refuses_to_start_without_a_broker(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_VAR_DIR=str(tmp_path / "var"), HUB_MASTER_KEYS=new_master_key_entry())
        for command in ("worker", "beat"):
            done = subprocess.run([*HUB, command], env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 2 and "HUB_REDIS_URL" in done.stderr

    def test_runs_a_relay_task_published_to_redis(self, tmp_path, database_url, broker_env):
        env = {**broker_env, "HUB_DATABASE_URL": database_url}
        log = tmp_path / "worker.log"
        with hub_command(["worker", "--concurrency", "1"], env, log):
            wait_until(lambda: " ready." in log.read_text(), timeout=60, what="the worker to be ready")
            publisher = build_runtime(Settings(env="development", database_url=database_url,
                                               redis_url=env["HUB_REDIS_URL"], redis_prefix=env["HUB_REDIS_PREFIX"],
                                               master_keys=env["HUB_MASTER_KEYS"], var_dir=tmp_path / "var"))
            try:
                task_id = publisher.celery.send_task(RELAY).id
            finally:
                publisher.close()
            wait_until(lambda: f"Task {RELAY}[{task_id}] succeeded" in log.read_text(), timeout=30,
                       what="the worker to run the relay task")


class TestBeatCommand:
    def test_schedules_the_relay_on_the_broker(self, tmp_path, redis_url, broker_env):
        env = {**broker_env, "HUB_RELAY_INTERVAL_SECONDS": "0.25"}
        # kombu's Redis transport keeps a queue as a list under the app's key prefix
        queue = f"{env['HUB_REDIS_PREFIX']}celery:hub"
        client = redis.Redis.from_url(redis_url)
        try:
            with hub_command(["beat"], env, tmp_path / "beat.log"):
                wait_until(lambda: client.llen(queue) >= 2, timeout=30, what="beat to publish the relay twice")
            tasks = {json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)}
            assert tasks == {RELAY}
        finally:
            client.close()
