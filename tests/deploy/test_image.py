"""What the Dockerfile builds, tested without a Docker engine: the wheel it installs builds
and carries everything `hub` needs at run time (migrations included), the commands the
chart runs exist in it, and the Dockerfile keeps its promises (slim base, build tools only
in the build stage, a numeric non-root user, `hub` as the entry point)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--wheel-dir", str(out), "-q"], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("integrations_hub-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def run_from_wheel(site: Path, cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # the unpacked wheel first on the path, run away from the checkout: nothing comes from the repository
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180, env={**os.environ, "PYTHONPATH": str(site), **(env or {})})


def test_the_wheel_carries_the_code_and_the_migrations(unpacked_wheel):
    names = {p.relative_to(unpacked_wheel).as_posix() for p in unpacked_wheel.rglob("*") if p.is_file()}
    versions = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert {f"migrations/versions/{v}" for v in versions} <= names
    assert {"migrations/env.py", "hub/heartbeat.py", "hub/backups/service.py", "tenants/vault.py",
            "hub/messaging/default_templates/welcome.json"} <= names
    entry_points = next(unpacked_wheel.glob("*.dist-info/entry_points.txt")).read_text()
    assert re.search(r"^hub = hub\.cli:app$", entry_points, re.M)


def test_the_commands_the_chart_runs_work_from_the_wheel(unpacked_wheel, tmp_path):
    located = subprocess.run([sys.executable, "-c", "import hub; print(hub.__file__)"], cwd=tmp_path,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(unpacked_wheel)})
    assert located.stdout.startswith(str(unpacked_wheel))
    for command in (["serve", "--help"], ["relay", "--help"], ["worker", "--help"], ["beat", "--help"],
                    ["backup", "create", "--help"], ["migrate", "--help"]):
        result = run_from_wheel(unpacked_wheel, tmp_path, *command)
        assert result.returncode == 0, (command, result.stderr[-2000:])
    env = {"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}", "HUB_VAR_DIR": str(tmp_path / "var")}
    pending = run_from_wheel(unpacked_wheel, tmp_path, "migrate", "--check", env=env)
    assert pending.returncode == 1 and "pending" in pending.stdout
    migrated = run_from_wheel(unpacked_wheel, tmp_path, "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    assert run_from_wheel(unpacked_wheel, tmp_path, "migrate", "--check", env=env).returncode == 0
    probe = subprocess.run([sys.executable, "-m", "hub.heartbeat", str(tmp_path / "none"), "60"], cwd=tmp_path,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(unpacked_wheel)})
    assert probe.returncode == 1 and "no heartbeat" in probe.stderr


def stages(dockerfile: str) -> list[list[str]]:
    lines = re.sub(r"\\\n\s*", " ", dockerfile).splitlines()
    result: list[list[str]] = []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def test_the_dockerfile_keeps_its_promises():
    build, final = stages((ROOT / "Dockerfile").read_text())
    assert build[0].startswith("FROM python:3.11-slim AS build")
    assert final[0] == "FROM python:3.11-slim"
    final_text = "\n".join(final)
    assert "build-essential" in "\n".join(build) and not re.search(r"build-essential|gcc|\bmake\b", final_text)
    assert "COPY --from=build /opt/venv /opt/venv" in final
    (user,) = [line for line in final if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert final[-2:] == ['ENTRYPOINT ["hub"]', 'CMD ["serve"]']
    assert "postgresql-client" in final_text  # pg_dump / pg_restore / psql for `hub backup`
    # the chart's securityContext runs as the same user
    values = (ROOT / "helm" / "integrations-hub" / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values
    # everything the build stage copies is let through .dockerignore
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    copied = {line.split()[1] for line in build if line.startswith("COPY ") and "--from" not in line}
    assert copied - {"pyproject.toml", "README.md"} <= allowed and {"pyproject.toml", "README.md"} <= allowed
