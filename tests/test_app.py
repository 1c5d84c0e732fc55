"""The app shell: error envelope, request ids, health, logs, OpenAPI."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from hub.app import create_app
from hub.cli import openapi_document
from hub.logs import REDACTED, configure_logging, redact
from hub.runtime import build_runtime
from hub.settings import Settings


class Thing(BaseModel):
    count: int


class Note(BaseModel):
    count: int
    body: str


class TestErrorEnvelope:
    def test_unknown_route(self, client):
        r = client.get("/nope")
        assert r.status_code == 404
        assert r.json() == {"error": {"code": "not_found", "message": "Not Found"}}

    def test_wrong_method(self, client):
        r = client.post("/health/live")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"

    def test_validation_and_unexpected_errors(self, runtime):
        app = create_app(runtime=runtime)
        router = APIRouter()

        @router.post("/things")
        def make(thing: Thing) -> dict:
            return {"count": thing.count}

        @router.post("/notes")
        def note(note: Note) -> dict:
            return {}

        @router.get("/boom")
        def boom() -> dict:
            raise RuntimeError("secret detail")

        app.include_router(router)
        from fastapi.testclient import TestClient

        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.post("/things", json={"count": "many"})
            assert r.status_code == 422
            body = r.json()["error"]
            assert body["code"] == "validation_error" and "count" in body["message"]
            r = c.post("/things", content=b'{"count": 1,\n not json}', headers={"content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_body"
            assert r.json()["error"]["message"].startswith("malformed JSON at line 2 column 2")
            r = c.post("/things", data={"count": "1"})
            assert r.status_code == 422 and r.json()["error"]["message"] == (
                "the body must be JSON (Content-Type: application/json), not application/x-www-form-urlencoded")
            r = c.post("/notes", json={"count": "many", "body": 1})
            # every failing field is named, one called "body" too
            assert r.json()["error"]["message"] == ("count: Input should be a valid integer, unable to parse string "
                                                    "as an integer; body: Input should be a valid string")
            r = c.get("/boom")
            assert r.status_code == 500
            assert r.json()["error"]["code"] == "internal_error"
            assert "secret detail" not in r.text
            assert r.headers["x-request-id"]


class TestRequestId:
    def test_echoes_a_sane_one(self, client):
        assert client.get("/health/live", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"

    def test_makes_one_when_missing_or_unsafe(self, client):
        made = client.get("/health/live").headers["x-request-id"]
        assert len(made) == 32
        bad = client.get("/health/live", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"]
        assert bad != "x" * 500 and len(bad) == 32


class TestHealth:
    def test_live_and_ready(self, client):
        assert client.get("/health/live").json() == {"status": "ok"}
        r = client.get("/health/ready")
        assert r.status_code == 200
        assert r.json()["checks"] == {"database": "ok", "broker": "embedded"}

    def test_ready_names_an_unreachable_database(self, tmp_path):
        settings = Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
                            master_keys="", var_dir=tmp_path)
        from fastapi.testclient import TestClient

        with TestClient(create_app(settings)) as c:
            r = c.get("/health/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["database"].startswith("unreachable")
        assert r.json()["error"]["code"] == "not_ready" and "database" in r.json()["error"]["message"]

    def test_ready_names_an_unreachable_broker(self, settings):
        settings = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
        from fastapi.testclient import TestClient

        with TestClient(create_app(runtime=build_runtime(settings))) as c:
            r = c.get("/health/ready")
        assert r.status_code == 503 and r.json()["checks"]["broker"].startswith("unreachable")

    def test_ready_with_a_real_redis(self, settings, redis_url):
        from fastapi.testclient import TestClient

        settings = settings.model_copy(update={"redis_url": redis_url})
        with TestClient(create_app(runtime=build_runtime(settings))) as c:
            r = c.get("/health/ready")
        assert r.status_code == 200 and r.json()["checks"]["broker"] == "ok"


class TestLogs:
    def test_secrets_are_redacted_by_key_and_by_shape(self):
        event = redact({
            "auth_token": "f" * 32,
            "note": "Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln and sealed:v1:QUJD",
            "nested": {"client_secret": "s3cr3t", "count": 3},
            "request_id": "abc",
        })
        assert event["auth_token"] == REDACTED
        assert "eyJ" not in event["note"] and "sealed:v1:QUJD" not in event["note"]
        assert event["nested"] == {"client_secret": REDACTED, "count": 3}
        assert event["request_id"] == "abc"

    def test_request_lines_are_json_with_the_request_id(self, client):
        stream = io.StringIO()
        configure_logging("DEBUG", stream=stream)  # 2xx request lines are DEBUG; errors are INFO
        try:
            client.get("/health/live", headers={"X-Request-ID": "req-42"})
            client.get("/nope", headers={"X-Request-ID": "req-43"})
            import structlog

            structlog.get_logger("t").info("credential stored", password="hunter2")
        finally:
            logging.getLogger().handlers = []
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        requests = {line["request_id"]: line for line in lines if line["event"] == "request"}
        # a success is a DEBUG line, unless it took over a second (a loaded machine can make it)
        slow = requests["req-42"]["duration_ms"] > 1000
        assert requests["req-42"]["status"] == 200 and requests["req-42"]["level"] == ("info" if slow else "debug")
        assert requests["req-43"]["status"] == 404 and requests["req-43"]["level"] == "info"
        assert "hunter2" not in stream.getvalue()


def test_committed_openapi_matches_the_app():
    committed = json.loads((Path(__file__).parent.parent / "openapi" / "openapi.json").read_text())
    assert committed == openapi_document(), "openapi/openapi.json is stale: run `hub openapi`"


def test_create_app_refuses_bad_production_settings(tmp_path):
    from hub.settings import SettingsError

    with pytest.raises(SettingsError, match="HUB_MASTER_KEYS"):
        create_app(Settings(env="production", var_dir=tmp_path))
