"""Shared constants and helpers of the WhatsApp Cloud tests (fixtures live in conftest)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from connectors.base import WebhookRequest
from connectors.whatsapp_cloud import WhatsAppCloudConnector, WhatsAppCloudCredentials

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "whatsapp_cloud" / "fixtures"
PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
APP_SECRET = "sandbox-app-secret"
VERIFY_TOKEN = "sandbox-verify-token"
ACCESS_TOKEN = "EAAG-sandbox-token"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


def create_credentials(**overrides: str) -> WhatsAppCloudCredentials:
    values = {
        "phone_number_id": PHONE_NUMBER_ID,
        "waba_id": WABA_ID,
        "access_token": ACCESS_TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
    } | overrides
    return WhatsAppCloudCredentials.model_validate(values)


class WebhookReceiver:
    """Accepts Meta webhooks the way the hub must: verify first, keep only what passed."""

    def __init__(self) -> None:
        self.accepted: list[WebhookRequest] = []
        self.rejected = 0
        self._cond = threading.Condition()
        self.app = FastAPI()

        @self.app.get("/webhooks/whatsapp_cloud")
        def handshake(request: Request) -> Response:
            challenge = WhatsAppCloudConnector.verify_subscription(dict(request.query_params), VERIFY_TOKEN)
            if challenge is None:
                return Response(status_code=403)
            return PlainTextResponse(challenge)

        @self.app.post("/webhooks/whatsapp_cloud")
        async def receive(request: Request) -> Response:
            webhook = WebhookRequest(
                method="POST",
                url=str(request.url),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.body(),
                query=dict(request.query_params),
            )
            if not WhatsAppCloudConnector.verify(webhook, APP_SECRET):
                with self._cond:
                    self.rejected += 1
                return Response(status_code=403)
            with self._cond:
                self.accepted.append(webhook)
                self._cond.notify_all()
            return Response(status_code=200)

    def clear(self) -> None:
        with self._cond:
            self.accepted.clear()
            self.rejected = 0

    def wait_for(self, count: int, timeout: float = 15.0) -> list[WebhookRequest]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.accepted) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhooks, got {len(self.accepted)}")
                self._cond.wait(left)
            return list(self.accepted)
