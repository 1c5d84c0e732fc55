"""`hub relay`, `hub worker` and `hub beat` keep a heartbeat file fresh while their loops
run; the exec liveness probe the Helm chart runs (`python -m hub.heartbeat FILE AGE`)
passes on a fresh file and fails on a stale or missing one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hub.settings import new_master_key_entry
from tests.conftest import redis_prefix


def probe(path, max_age: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub.heartbeat", str(path), str(max_age)],
                          capture_output=True, text=True, timeout=30)


def test_probe_passes_on_fresh_fails_on_stale_or_missing(tmp_path):
    beat = tmp_path / "hb"
    missing = probe(beat)
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr
    beat.touch()
    assert probe(beat).returncode == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    stale = probe(beat, 60)
    assert stale.returncode == 1 and "old" in stale.stderr
    assert probe(beat, 600).returncode == 0


def wait_for(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("command", [["relay"], ["worker", "--pool", "solo", "--concurrency", "1"], ["beat"]])
def test_each_process_keeps_its_heartbeat_fresh(command, redis_url, sqlite_template, tmp_path):
    database = tmp_path / "hub.db"
    shutil.copy(sqlite_template, database)
    beat = tmp_path / "run" / "heartbeat"
    env = {**os.environ, "HUB_DATABASE_URL": f"sqlite:///{database}", "HUB_REDIS_URL": redis_url,
           "HUB_REDIS_PREFIX": redis_prefix(), "HUB_MASTER_KEYS": new_master_key_entry(),
           "HUB_VAR_DIR": str(tmp_path / "var"), "HUB_HEARTBEAT_FILE": str(beat), "HUB_LOG_LEVEL": "WARNING"}
    with open(tmp_path / "process.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", *command], env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: probe(beat).returncode == 0 or proc.poll() is not None, "the first heartbeat")
        assert proc.poll() is None, (tmp_path / "process.log").read_text()[-3000:]
        old = time.time() - 3600
        os.utime(beat, (old, old))
        assert probe(beat).returncode == 1
        # the loop touches it again on its own: the probe recovers without a restart
        wait_for(lambda: probe(beat).returncode == 0, "a fresh heartbeat after it went stale")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
