"""The attacks of issue 18 on the perimeter: floods of bad tokens, large bodies sent
before (or without) a token, and X-Forwarded-For rotated to dodge per-IP limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hub.audit.models import AuditEvent
from tests.support import bearer, create_client, create_tenant, get_token

FAILURE_LIMIT = 5
BODY_CAP = 4096


@pytest.fixture
def settings(settings, request):
    """Small limits; a test changes more with ``parametrize("settings", [{…}], indirect=True)``."""
    return settings.model_copy(update={"auth_failure_rate_limit": FAILURE_LIMIT, "max_body_bytes": BODY_CAP,
                                       "token_rate_limit": 3, **getattr(request, "param", {})})


def client_at(app, address: str) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, client=(address, 40000))


def failed_auth_rows(runtime, ip: str) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.action == "auth.failed", AuditEvent.ip == ip))


@pytest.fixture
def tenant(runtime):
    return create_client(runtime, create_tenant(runtime))


class TestBadTokenFlood:
    def test_one_address_is_limited_and_audited_once_while_others_go_on(self, app, runtime, tenant):
        with client_at(app, "203.0.113.7") as attacker, client_at(app, "198.51.100.20") as honest:
            answers = [attacker.get("/v1/tenant", headers=bearer(f"not-a-token-{i}"))
                       for i in range(FAILURE_LIMIT + 15)]
            assert [r.status_code for r in answers[:FAILURE_LIMIT]] == [401] * FAILURE_LIMIT
            refused = answers[FAILURE_LIMIT:]
            assert {r.status_code for r in refused} == {429}
            assert refused[0].json()["error"]["code"] == "rate_limited"
            assert int(refused[0].headers["retry-after"]) >= 1
            # bodies with a bad token, too, and no token at all: the same limit
            assert attacker.post("/v1/contacts", json={"name": "x"}).status_code == 429
            assert failed_auth_rows(runtime, "203.0.113.7") == 1

            good = get_token(honest, tenant)
            assert honest.get("/v1/tenant", headers=bearer(good)).status_code == 200
            # the limited address is refused before its token is looked at
            assert attacker.get("/v1/tenant", headers=bearer(good)).status_code == 429

    def test_missing_tokens_count_as_failures(self, app, runtime):
        with client_at(app, "203.0.113.8") as attacker:
            codes = [attacker.get("/v1/tenant").status_code for _ in range(FAILURE_LIMIT + 2)]
        assert codes == [401] * FAILURE_LIMIT + [429] * 2
        assert failed_auth_rows(runtime, "203.0.113.8") == 1

    @pytest.mark.redis
    def test_two_api_processes_share_the_limit_and_the_single_row_through_redis(self, settings, request):
        import uuid

        from hub.app import create_app
        from hub.runtime import build_runtime

        shared = settings.model_copy(update={"redis_url": request.getfixturevalue("redis_url"),
                                             "redis_prefix": f"{settings.redis_prefix}{uuid.uuid4().hex[:8]}:"})
        first, second = build_runtime(shared), build_runtime(shared)
        try:
            with client_at(create_app(runtime=first), "203.0.113.9") as one, \
                    client_at(create_app(runtime=second), "203.0.113.9") as two:
                codes = [(one if i % 2 else two).get("/v1/tenant", headers=bearer("bad")).status_code
                         for i in range(FAILURE_LIMIT + 4)]
            assert codes == [401] * FAILURE_LIMIT + [429] * 4
            assert failed_auth_rows(first, "203.0.113.9") == 1
        finally:
            first.close()
            second.close()

    def test_the_first_count_of_a_window_carries_the_total_of_the_last(self, runtime):
        """What the next audit row reports (``failures_previous_window``), on one-second
        windows: counted until the window rolls, then the tally of the one before."""
        import time

        bucket, last, deadline = "auth-failed:192.0.2.1", 0, time.monotonic() + 30
        while True:
            seen, previous = runtime.rate_limits.count_in_window(bucket, 1)
            if seen == 1 and last:
                assert previous == last
                return
            assert seen == last + 1 or seen == 1
            last = seen
            assert time.monotonic() < deadline, "the window never rolled"


# --- bodies: read only after the token, never past the cap ------------------------


def call(app, method: str, path: str, headers: dict[str, str], chunks: Iterator[bytes],
         client: str = "203.0.113.50") -> tuple[int, dict[str, str], bytes, int]:
    """One request straight into the ASGI app, the body pulled chunk by chunk from
    ``chunks`` as the app asks for it: (status, headers, body, bytes the app pulled)."""
    pulled = 0
    done = False
    status, answer_headers, body = 0, {}, b""

    async def receive() -> dict:
        nonlocal pulled, done
        if done:
            await asyncio.sleep(3600)
        chunk = next(chunks, None)
        if chunk is None:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        nonlocal status, answer_headers, body
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 40000), "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return status, answer_headers, body, pulled


def fifty_megabytes() -> Iterator[bytes]:
    chunk = b" " * 65536
    yield b'{"name": "'
    for _ in range(50 * 1024 * 1024 // len(chunk)):
        yield chunk


class TestBodies:
    def test_a_huge_body_without_a_token_is_refused_unread(self, app):
        status, headers, body, pulled = call(app, "POST", "/v1/contacts", {"content-type": "application/json"},
                                             fifty_megabytes())
        assert status == 401 and b"invalid_token" in body
        assert pulled == 0

    def test_a_huge_body_with_a_bad_token_is_refused_unread(self, app):
        status, _, body, pulled = call(app, "POST", "/v1/contacts", {"content-type": "application/json",
                                                                      "authorization": "Bearer forged"},
                                       fifty_megabytes())
        assert status == 401 and pulled == 0

    @pytest.fixture
    def token(self, client, tenant):
        return get_token(client, tenant)

    def test_a_declared_length_past_the_cap_is_refused_unread(self, app, token):
        status, headers, body, pulled = call(
            app, "POST", "/v1/contacts", {"content-type": "application/json", "authorization": f"Bearer {token}",
                                          "content-length": str(50 * 1024 * 1024)}, fifty_megabytes())
        assert status == 413 and pulled == 0
        assert b'"payload_too_large"' in body and headers["x-content-type-options"] == "nosniff"

    def test_a_chunked_body_is_cut_at_the_cap(self, app, token):
        status, headers, body, pulled = call(
            app, "POST", "/v1/contacts", {"content-type": "application/json", "authorization": f"Bearer {token}"},
            fifty_megabytes())
        assert status == 413 and b'"payload_too_large"' in body
        assert pulled <= BODY_CAP + 65536  # the chunk that crossed the cap, no more
        assert headers.get("x-request-id")

    def test_a_public_route_body_is_capped_too(self, app):
        # a form, read by the route itself (not by the NUL guard)
        def form() -> Iterator[bytes]:
            yield b"grant_type=client_credentials&client_id=x&client_secret="
            for _ in range(1000):
                yield b"a" * 65536

        status, _, body, pulled = call(app, "POST", "/oauth/token",
                                       {"content-type": "application/x-www-form-urlencoded"}, form())
        assert status == 413 and b'"payload_too_large"' in body
        assert pulled <= BODY_CAP + 65536

    def test_a_body_under_the_cap_still_works(self, client, tenant, token):
        r = client.post("/v1/contacts", headers=bearer(token), json={"name": "Ana", "phone": "+14155550100"})
        assert r.status_code == 201, r.text
        big = client.post("/v1/contacts", headers=bearer(token), json={"name": "A" * BODY_CAP})
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"


# --- X-Forwarded-For: believed only from HUB_TRUSTED_PROXIES ----------------------


def token_requests(http: TestClient, count: int) -> list[int]:
    return [http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "cli_x",
                                           "client_secret": "wrong"},
                      headers={"X-Forwarded-For": f"10.9.{i // 250}.{i % 250 + 1}"}).status_code
            for i in range(count)]


class TestForwardedFor:
    def test_rotating_the_header_does_not_dodge_the_token_limit(self, app):
        with client_at(app, "127.0.0.1") as local_process:
            codes = token_requests(local_process, 6)
        assert codes[:3] == [401] * 3 and codes[3:] == [429] * 3

    @pytest.mark.parametrize("settings", [{"trusted_proxies": "127.0.0.1"},
                                          {"trusted_proxies": "10.0.0.0/8, 127.0.0.0/8"}], indirect=True)
    def test_a_trusted_proxy_is_believed(self, app, runtime):
        with client_at(app, "127.0.0.1") as proxy:
            assert 429 not in token_requests(proxy, 6)
            r = proxy.get("/v1/tenant", headers={"X-Forwarded-For": "192.0.2.99"})
        assert r.status_code == 401
        assert failed_auth_rows(runtime, "192.0.2.99") == 1

    @pytest.mark.parametrize("settings", [{"trusted_proxies": "10.0.0.1"}], indirect=True)
    def test_an_untrusted_peer_is_not_believed_even_with_proxies_configured(self, app):
        with client_at(app, "127.0.0.1") as local_process:
            assert token_requests(local_process, 6)[3:] == [429] * 3

    def test_a_bad_proxy_list_is_refused(self):
        from hub.settings import Settings

        with pytest.raises(ValueError, match="not an IP address"):
            Settings(trusted_proxies="127.0.0.1,the-ingress")


class TestRouteCaps:
    def test_a_broadcast_may_be_larger_than_the_default_cap(self, client, tenant):
        token = get_token(client, tenant)
        # 200 recipients: past the 4 KiB default cap of these tests, well within the route's own 16 MiB
        recipients = [{"to": f"+1415555{i:04d}", "data": {"name": "N" * 20}} for i in range(200)]
        r = client.post("/v1/broadcasts", headers=bearer(token),
                        json={"template": "no-such-template", "recipients": recipients})
        assert r.status_code != 413, r.text
