"""Fixtures shared by the messaging tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def cold_hub(database_url, tmp_path):
    """The API with no worker and no relay (the back end is down); the test starts them."""
    from connectors.sandbox.app import create_sandbox_app
    from connectors.sandbox.server import ThreadedServer, free_port
    from hub.app import create_app
    from hub.runtime import build_runtime
    from hub.settings import Settings
    from tests.conftest import TEST_MASTER_KEYS, LiveHub, redis_prefix

    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    sandbox_app = create_sandbox_app(hub_url=hub_url)
    sandbox_server = ThreadedServer(sandbox_app).start()
    settings = Settings(
        env="development", database_url=database_url, master_keys=TEST_MASTER_KEYS, var_dir=tmp_path / "var",
        public_url=hub_url, port=port, redis_prefix=redis_prefix(), sandbox=True, sandbox_url=sandbox_server.url,
        embedded_worker=False, relay_in_process=False, relay_interval_seconds=0.1,
    )
    runtime = build_runtime(settings)
    server = ThreadedServer(create_app(runtime=runtime), port=port).start()
    hub = LiveHub(runtime, server, sandbox_server, sandbox_app)
    yield hub
    hub.http.close()
    server.stop()
    sandbox_server.stop()
    runtime.close()
