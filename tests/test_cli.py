"""The ``hub`` command line, run as a user runs it (a subprocess for exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.migrate import upgrade
from hub.settings import new_master_key_entry

HUB = [sys.executable, "-m", "hub.cli"]


@pytest.fixture
def hub_env(database_url, tmp_path, monkeypatch):
    env = {"HUB_DATABASE_URL": database_url, "HUB_MASTER_KEYS": new_master_key_entry(),
           "HUB_VAR_DIR": str(tmp_path / "var")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


class TestTenantsCommands:
    def test_create_list_show_suspend_erase(self, hub_env):
        created = run("tenants", "create", "--slug", "clinica", "--name", "Clínica Sorriso")
        assert created.exit_code == 0, created.output
        tenant = json.loads(created.output)
        assert tenant["slug"] == "clinica" and tenant["locale"] == "pt-BR"
        assert "clinica" in run("tenants", "list").output
        assert json.loads(run("tenants", "show", "clinica").output)["id"] == tenant["id"]
        assert json.loads(run("tenants", "suspend", tenant["id"]).output)["status"] == "suspended"
        refused = run("tenants", "erase", "clinica")
        assert refused.exit_code == 2 and "--yes" in refused.output
        assert json.loads(run("tenants", "erase", "clinica", "--yes").output)["status"] == "erased"
        missing = run("tenants", "show", "clinica")
        assert missing.exit_code == 2 and "no tenant" in missing.output

    def test_bad_input_and_duplicates_are_clear(self, hub_env):
        bad = run("tenants", "create", "--slug", "Not A Slug", "--name", "x")
        assert bad.exit_code == 2 and "slug" in bad.output
        assert run("tenants", "create", "--slug", "a", "--name", "A").exit_code == 0
        dup = run("tenants", "create", "--slug", "a", "--name", "A")
        assert dup.exit_code == 2 and "already exists" in dup.output


class TestKeysCommands:
    def test_rotate_reports_counts_and_secrets_survive(self, hub_env, monkeypatch):
        assert run("tenants", "create", "--slug", "a", "--name", "A").exit_code == 0
        assert run("tenants", "create", "--slug", "b", "--name", "B").exit_code == 0
        new = run("keys", "new").output.strip()
        monkeypatch.setenv("HUB_MASTER_KEYS", f"{new},{hub_env['HUB_MASTER_KEYS']}")
        first = run("keys", "rotate")
        assert first.exit_code == 0 and "rewrapped=2 " in first.output
        again = run("keys", "rotate")
        assert "rewrapped=0 already_current=2" in again.output


class TestProcessExitCodes:
    def test_production_refuses_to_start_with_one_line_per_problem(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_ENV="production", HUB_VAR_DIR=str(tmp_path))
        proc = subprocess.run([*HUB, "serve"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert any("HUB_MASTER_KEYS" in line for line in lines)
        assert any("HUB_DATABASE_URL" in line for line in lines)
        assert any("HUB_REDIS_URL" in line for line in lines)
        assert "Traceback" not in proc.stderr and all(line.startswith("error: ") for line in lines)

    def test_bad_setting_value_is_one_line(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_PORT="not-a-port", HUB_VAR_DIR=str(tmp_path))
        proc = subprocess.run([*HUB, "migrate"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "HUB_PORT" in proc.stderr and "Traceback" not in proc.stderr

    def test_check_lists_settings_and_integrations(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_VAR_DIR=str(tmp_path))
        proc = subprocess.run([*HUB, "check"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for name in ("HUB_DATABASE_URL", "HUB_MASTER_KEYS", "twilio", "google_calendar"):
            assert name in proc.stdout
        env.update(HUB_ENV="production", HUB_SANDBOX="0")
        proc = subprocess.run([*HUB, "check"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "MISSING HUB_REDIS_URL" in proc.stdout
        assert "missing HUB_GOOGLE_CLIENT_ID" in proc.stdout
        # Google pushes to HTTPS receivers only: a plain-http public URL is a problem in production
        assert "MISSING google_calendar push" in proc.stdout and "not https" in proc.stdout
        env.update(HUB_PUBLIC_URL="https://hub.example.com")
        proc = subprocess.run([*HUB, "check"], env=env, capture_output=True, text=True, timeout=60)
        assert "ok      google_calendar push" in proc.stdout


def test_development_master_key_is_generated_once(tmp_path):
    from hub.settings import Settings

    first = Settings(var_dir=tmp_path).master_key_ring
    second = Settings(var_dir=tmp_path).master_key_ring
    assert first[0].key_id == second[0].key_id and first[0].key == second[0].key
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600


def test_migrate_then_serve_answers_ready(tmp_path):
    """What `make run` does: migrate, serve on HUB_PORT, /health/ready = 200. And a
    local process rotating X-Forwarded-For does not dodge the token endpoint's limit
    (uvicorn's default trusted 127.0.0.1; no proxy is trusted unless configured)."""
    from connectors.sandbox.server import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_VAR_DIR=str(tmp_path / "var"), HUB_PORT=str(port), HUB_TOKEN_RATE_LIMIT="3",
               # run in tmp_path, the code under test still comes from this checkout
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), env.get("PYTHONPATH")])))
    subprocess.run([*HUB, "migrate"], env=env, check=True, capture_output=True, timeout=120, cwd=tmp_path)
    server = subprocess.Popen([*HUB, "serve"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "hub did not start"
                time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert (tmp_path / "var" / "hub.db").exists() and (tmp_path / "var" / "master.key").exists()
        codes = [httpx.post(f"http://127.0.0.1:{port}/oauth/token", timeout=30,
                            data={"grant_type": "client_credentials", "client_id": "cli_x", "client_secret": "x"},
                            headers={"X-Forwarded-For": f"10.0.0.{i + 1}"}).status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]
    finally:
        server.terminate()
        server.wait(10)


def test_upgrade_is_idempotent(tmp_path):
    url = f"sqlite:///{Path(tmp_path) / 'x.db'}"
    upgrade(url)
    upgrade(url)
