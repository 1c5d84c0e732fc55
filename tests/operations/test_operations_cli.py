"""``hub stats`` and ``hub health`` beside a running embedded hub, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from hub.db import utcnow
from tests.conftest import TEST_MASTER_KEYS
from tests.messaging.outbound_support import twilio_tenant

HUB = [sys.executable, "-m", "hub.cli"]


def hub_cli(hub, *args: str) -> subprocess.CompletedProcess:
    settings = hub.runtime.settings
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_MASTER_KEYS": TEST_MASTER_KEYS,
           "HUB_VAR_DIR": str(settings.var_dir), "HUB_PORT": str(settings.port), "HUB_REDIS_URL": "",
           "HUB_LOG_LEVEL": "WARNING"}
    return subprocess.run([*HUB, *args], env=env, capture_output=True, text=True, timeout=120)


class TestCommands:
    def test_stats_shows_a_stuck_message(self, live_hub):
        tenant = twilio_tenant(live_hub, "cli-stats")
        # a message due tomorrow: the embedded worker leaves it alone
        r = live_hub.http.post("/v1/messages", headers=tenant.headers, json={
            "channel": "sms", "to": "+5511987654321", "body": "Oi",
            "send_at": (utcnow() + timedelta(days=1)).isoformat()})
        assert r.status_code in (201, 202), r.text
        done = hub_cli(live_hub, "stats", "--json")
        assert done.returncode == 0, done.stderr
        outbox = next(q for q in json.loads(done.stdout)["queues"] if q["name"] == "outbox")
        assert outbox["scheduled"] == 1 and outbox["waiting"] == 0
        table = hub_cli(live_hub, "stats")
        assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["QUEUE", "SOURCE", "WAITING"]
        assert "outbox" in table.stdout and "webhooks" in table.stdout

    def test_health_finds_the_embedded_services(self, live_hub):
        done = hub_cli(live_hub, "health", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["status"] == "ok"
        assert {p["kind"] for p in report["processes"]} == {"api", "worker", "relay"}
        assert all(p["embedded"] for p in report["processes"])
        text = hub_cli(live_hub, "health")
        assert text.returncode == 0 and "database   ok" in text.stdout and "relay" in text.stdout
