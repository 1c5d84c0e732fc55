"""Per-tenant and per-IP limits, in memory and on Redis."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.runtime import build_runtime
from tests.support import bearer, create_client, create_tenant, get_token


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limited(request, settings):
    """(runtime, client) with rate limits in memory or on Redis."""
    if request.param == "redis":
        # a key space of this test's own under the run's prefix: windows outlive a test
        settings = settings.model_copy(update={"redis_url": request.getfixturevalue("redis_url"),
                                               "redis_prefix": f"{settings.redis_prefix}{uuid.uuid4().hex[:8]}:"})
    settings = settings.model_copy(update={"token_rate_limit": 5, "public_rate_limit": 4})
    runtime = build_runtime(settings)
    with TestClient(create_app(runtime=runtime)) as client:
        yield runtime, client
    runtime.close()


def test_one_tenant_exhausting_its_limit_does_not_slow_another(limited):
    runtime, client = limited
    noisy = create_tenant(runtime, "noisy", rate_limit_per_minute=3)
    quiet = create_tenant(runtime, "quiet", plan="free")
    noisy_token = get_token(client, create_client(runtime, noisy))
    quiet_token = get_token(client, create_client(runtime, quiet))

    statuses = []
    for _ in range(4):
        r = client.get("/v1/tenant", headers=bearer(noisy_token))
        statuses.append(r.status_code)
        assert r.headers["x-ratelimit-limit"] == "3"
    assert statuses == [200, 200, 200, 429]
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert int(r.headers["x-ratelimit-reset"]) >= int(time.time())
    assert r.headers["x-ratelimit-remaining"] == "0"

    r = client.get("/v1/tenant", headers=bearer(quiet_token))
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit"] == "60"  # the free plan
    assert r.headers["x-ratelimit-remaining"] == "59"


def test_token_endpoint_is_limited_per_ip(limited):
    runtime, client = limited
    form = {"grant_type": "client_credentials", "client_id": "cli_guess", "client_secret": "guess"}
    codes = [client.post("/oauth/token", data=form).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]


def test_unauthenticated_routes_are_limited_per_ip(limited):
    _, client = limited
    codes = [client.get("/.well-known/jwks.json").status_code for _ in range(5)]
    assert codes == [200] * 4 + [429]
    assert client.get("/health/live").status_code == 200  # probes are never limited


def test_limit_storage_down_is_a_clear_503(settings):
    settings = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    runtime = build_runtime(settings)
    with TestClient(create_app(runtime=runtime)) as client:
        r = client.get("/.well-known/jwks.json")
    assert r.status_code == 503 and r.json()["error"]["code"] == "rate_limit_unavailable"
    runtime.close()


def test_fail_open_lets_requests_through_when_the_store_is_down(settings):
    """HUB_RATE_LIMIT_FAIL_OPEN: availability over limits while the store is unreachable."""
    settings = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "rate_limit_fail_open": True})
    runtime = build_runtime(settings)
    with TestClient(create_app(runtime=runtime)) as client:
        assert all(client.get("/.well-known/jwks.json").status_code == 200 for _ in range(3))
    runtime.close()


@pytest.mark.redis
def test_a_rate_limit_store_of_its_own_outlives_the_broker(settings, redis_url):
    """HUB_RATE_LIMIT_REDIS_URL: the broker's Redis down, the limits still count (and limit)."""
    settings = settings.model_copy(update={
        "redis_url": "redis://127.0.0.1:1/0", "rate_limit_redis_url": redis_url, "public_rate_limit": 2,
        "redis_prefix": f"{settings.redis_prefix}{uuid.uuid4().hex[:8]}:"})
    runtime = build_runtime(settings)
    with TestClient(create_app(runtime=runtime)) as client:
        codes = [client.get("/.well-known/jwks.json").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    runtime.close()
