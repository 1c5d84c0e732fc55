"""Test fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

- ``HUB_TEST_DATABASE_URL`` names a PostgreSQL server; each run creates its own
  throwaway database there (``hubtest_<run>``), migrates it once with Alembic and
  drops it at the end. Between tests every table is truncated.
- ``HUB_TEST_REDIS_URL`` names a Redis; each run writes under its own key prefix
  and deletes it at the end.
- Without them those tests skip with the reason; with ``HUB_REQUIRE_SERVICES=1``
  (CI) an unreachable service fails them instead.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from hub.settings import Settings, new_master_key_entry
from tests.support import truncate_all

RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"  # names this run's throwaway database: never seeded
TEST_MASTER_KEYS = new_master_key_entry()
REQUIRE_SERVICES = os.environ.get("HUB_REQUIRE_SERVICES") == "1"


def service_unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (HUB_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


# --- one seed for the run's random test data ---------------------------------------
#
# Test data drawn at random (account SIDs, phone number ids, tokens …) comes from
# ``random``, reseeded before every test from ``HUB_TEST_SEED`` and the test's id, and
# Hypothesis runs with the same seed. A run prints its seed first and last; a failure
# replays exactly with ``HUB_TEST_SEED=<seed> make test`` (or the one test with pytest),
# whatever the order, the worker or the other tests that ran beside it.

SEED_VARIABLE = "HUB_TEST_SEED"


def run_seed() -> int:
    return int(os.environ[SEED_VARIABLE])


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    raw = os.environ.get(SEED_VARIABLE, "").strip()
    if not raw.isdigit():
        if raw:
            raise pytest.UsageError(f"{SEED_VARIABLE} must be a non-negative integer, got {raw!r}")
        raw = str(secrets.randbits(32))
    # xdist workers are started after this and inherit the variable: one seed per run
    os.environ[SEED_VARIABLE] = raw
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = raw


def pytest_report_header(config) -> str:
    seed = os.environ[SEED_VARIABLE]
    return f"{SEED_VARIABLE}={seed} (replay this run: {SEED_VARIABLE}={seed} make test)"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    random.seed(f"{run_seed()}:{item.nodeid}")


# --- PostgreSQL ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated throwaway database for this run."""
    server = os.environ.get("HUB_TEST_DATABASE_URL")
    if not server:
        service_unavailable("PostgreSQL not configured: set HUB_TEST_DATABASE_URL")
    import psycopg

    server_url = make_url(server)
    dsn = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"hubtest_{RUN_ID}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        service_unavailable(f"PostgreSQL unreachable at {server_url.render_as_string()}: {exc}")
    url = server_url.set(database=name).render_as_string(hide_password=False)
    from hub.migrate import upgrade

    upgrade(url)
    yield url
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file; each test gets a copy (cheaper than migrating again)."""
    path = tmp_path_factory.mktemp("template") / "hub.db"
    from hub.migrate import upgrade

    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    """A freshly migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    truncate_all(url)


# --- Redis --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        service_unavailable("Redis not configured: set HUB_TEST_REDIS_URL")
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis unreachable at {url}: {exc}")
    yield url
    for key in client.scan_iter(match=f"{redis_prefix()}*", count=1000):
        client.delete(key)
    client.close()


def redis_prefix() -> str:
    return f"hubtest:{RUN_ID}:"


# --- the hub ------------------------------------------------------------------------


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(
        env="development",
        database_url=database_url,
        master_keys=TEST_MASTER_KEYS,
        var_dir=tmp_path / "var",
        public_url="http://testserver",
        redis_prefix=redis_prefix(),
        # background services are opt-in per test (see tests/messaging/conftest.py)
        sandbox=False,
        embedded_worker=False,
        embedded_beat=False,
        relay_in_process=False,
    )


@pytest.fixture
def runtime(settings):
    from hub.runtime import build_runtime

    rt = build_runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def session(runtime):
    with runtime.session_factory() as s:
        yield s


@pytest.fixture
def app(runtime):
    from hub.app import create_app

    return create_app(runtime=runtime)


@pytest.fixture
def provider_sandbox(runtime):
    """The sandbox providers on a port and ``runtime`` in sandbox mode pointed at them, for
    a test whose hub calls a provider without serving a live hub (its ``.state``: .meta …)."""
    from tests.support import sandbox_for

    with sandbox_for(runtime) as sandbox_app:
        yield sandbox_app


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# --- a summary of what ran on which backend ------------------------------------------

_backend_outcomes: Counter[tuple[str, str]] = Counter()


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "sqlite":
            item.add_marker(pytest.mark.sqlite)


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        for backend in ("sqlite", "postgres", "redis"):
            if backend not in report.keywords:
                continue
            _backend_outcomes[(backend, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    seed = os.environ.get(SEED_VARIABLE)
    terminalreporter.section("seed")
    terminalreporter.write_line(f"{SEED_VARIABLE}={seed}: replay with `{SEED_VARIABLE}={seed} make test`")
    if not _backend_outcomes:
        return
    terminalreporter.section("backends")
    for backend in ("sqlite", "postgres", "redis"):
        counts = {o: n for (b, o), n in _backend_outcomes.items() if b == backend}
        if counts:
            terminalreporter.write_line(
                f"{backend}: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
            )


# --- a live hub with its sandbox, worker and relay -------------------------------------


class LiveHub:
    """The hub served on a real port next to the sandbox providers, as `make run`
    runs it: the sandbox calls the hub's webhooks, the embedded worker delivers."""

    def __init__(self, runtime, server, sandbox_server, sandbox_app) -> None:
        self.runtime = runtime
        self.url = server.url
        self.sandbox_url = sandbox_server.url
        self.sandbox = sandbox_app.state  # .twilio, .meta, .google
        import httpx

        self.http = httpx.Client(base_url=self.url, timeout=10)


@pytest.fixture
def live_hub(database_url, tmp_path, request):
    """Hub + sandbox + embedded worker + relay. With the ``redis_url`` fixture also
    requested, the broker and rate limits are Redis (the worker is still embedded)."""
    from connectors.sandbox.app import create_sandbox_app
    from connectors.sandbox.server import ThreadedServer, free_port
    from hub.app import create_app
    from hub.runtime import build_runtime

    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    sandbox_app = create_sandbox_app(hub_url=hub_url)
    sandbox_server = ThreadedServer(sandbox_app).start()
    redis = request.getfixturevalue("redis_url") if "redis_url" in request.fixturenames else ""
    settings = Settings(
        env="development",
        database_url=database_url,
        master_keys=TEST_MASTER_KEYS,
        var_dir=tmp_path / "var",
        public_url=hub_url,
        port=port,
        redis_url=redis,
        redis_prefix=f"{redis_prefix()}{secrets.token_hex(4)}:",
        sandbox=True,
        sandbox_url=sandbox_server.url,
        embedded_worker=True,
        # the periodic jobs run when a test calls them (tests/calendar/test_reminders.py
        # counts the reminders one call claims); tests/test_embedded_beat.py runs beat
        embedded_beat=False,
        relay_in_process=True,
        relay_interval_seconds=0.1,
    )
    runtime = build_runtime(settings)
    server = ThreadedServer(create_app(runtime=runtime), port=port).start()
    hub = LiveHub(runtime, server, sandbox_server, sandbox_app)
    yield hub
    hub.http.close()
    server.stop()
    sandbox_server.stop()
    runtime.close()


# --- an SMTP relay on 127.0.0.1 ------------------------------------------------------


class _AcceptingRelay:
    """Accepts every login and every message: a stand-in relay for tests that need a
    working ``smtp`` integration, not for the SMTP tests themselves (tests/connectors/smtp)."""

    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 2.0.0 Ok: queued"


def _accept_any_login(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


@pytest.fixture(scope="session")
def smtp_relay() -> Iterator[int]:
    """The port of a local relay that accepts any credentials (see tests.support.smtp_credentials)."""
    from aiosmtpd.controller import Controller

    from connectors.sandbox.server import free_port

    # plain-text AUTH is fine on loopback; a production relay would want TLS first
    controller = Controller(_AcceptingRelay(), hostname="127.0.0.1", port=free_port(), ready_timeout=5.0,
                            authenticator=_accept_any_login, auth_require_tls=False)
    controller.start()
    yield controller.port
    controller.stop()


# --- logging: what a test configures stays in that test ---------------------------------


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A CLI command run in-process (typer's CliRunner) configures the hub's JSON logging
    for the whole process; put the root logger and structlog back afterwards, so no later
    test runs with another test's handlers or level."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers = handlers
    root.setLevel(level)
    structlog.configure(**config)
