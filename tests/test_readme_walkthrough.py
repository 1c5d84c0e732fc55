"""The README's "Using the API" walkthrough, run word for word against a live hub
started the way `make run` starts it (`hub migrate`, then `hub serve`: SQLite, the
in-process worker and sandbox), so the README cannot drift from the hub again."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from connectors.sandbox.server import free_port

ROOT = Path(__file__).resolve().parent.parent
HUB = [sys.executable, "-m", "hub.cli"]


def walkthrough() -> str:
    """The first ```sh block of the README's "Using the API" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using the API"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, "the README's walkthrough has no sh block"
    return blocks[0]


@pytest.fixture
def make_run(tmp_path):
    """`make run` on a free port, in a clean environment and its own var dir."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env |= {"HUB_PORT": str(port), "HUB_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    migrated = subprocess.run([*HUB, "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([*HUB, "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "hub serve did not become ready in 90 s"
            time.sleep(0.2)
        yield url, env, tmp_path / "serve.log"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# After the README's commands, the script checks what a reader would look for: the SMS
# was delivered and the patient's answer arrived (polling, as both are asynchronous).
CHECKS = r'''
for attempt in $(seq 150); do
  curl -s $HUB/v1/messages/$MESSAGE -H "Authorization: Bearer $TTOKEN" | grep -q '"status":"delivered"' \
    && curl -s "$HUB/v1/messages?direction=inbound" -H "Authorization: Bearer $TTOKEN" | grep -q '"body":"SIM"' \
    && { echo WALKTHROUGH-OK; exit 0; }
  sleep 0.2
done
echo "the SMS was not delivered or the answer did not arrive"; exit 1
'''


def test_the_readme_walkthrough_runs_as_written(make_run):
    url, env, log = make_run
    script = walkthrough()
    assert "HUB=http://127.0.0.1:8000" in script and ".venv/bin/hub" in script
    script = script.replace("HUB=http://127.0.0.1:8000", f"HUB={url}")
    # the README's `.venv/bin/hub` is this interpreter's hub (a worktree may have no .venv)
    script = script.replace(".venv/bin/hub", " ".join(shlex.quote(part) for part in HUB))
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script + CHECKS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- hub serve ---\n{log.read_text()[-4000:]}"
    assert "WALKTHROUGH-OK" in done.stdout
    assert "the clinic's number: +5511" in done.stdout
    assert '"hash":"' in done.stdout  # step 6: the audit trail's chained rows
    assert "HTTP Request" not in done.stderr  # the CLI's own calls are not logged at the reader


def test_sandbox_url_says_when_no_hub_runs(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env["HUB_VAR_DIR"] = str(tmp_path / "var")
    answer = subprocess.run([*HUB, "sandbox-url"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode != 0 and "no sandbox is running" in answer.stderr + answer.stdout
