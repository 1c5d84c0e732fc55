"""The sandbox: one ASGI app hosting every provider emulator.

Each provider module exposes a state class and ``router(state) -> APIRouter``; its
control endpoints (failure injection, simulated inbound traffic, edits "in the
provider") live under ``/_sandbox/<provider>/`` so a test in another process can
drive it over HTTP as easily as one in-process through ``app.state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from connectors.sandbox import google, meta, smtp, twilio


def create_sandbox_app(*, hub_url: str | None = None) -> FastAPI:
    """Build the sandbox. ``hub_url`` is where provider webhooks are sent when a
    resource does not name its own callback URL."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.smtp.stop()

    app = FastAPI(title="Integrations Hub sandbox providers", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.hub_url = hub_url
    # Provider emulators register below (each adds its router and state to app.state).
    app.state.meta = meta.MetaSandbox(hub_url=hub_url)
    app.include_router(meta.router(app.state.meta))
    app.state.twilio = twilio.TwilioSandbox(hub_url=hub_url)
    app.include_router(twilio.router(app.state.twilio))
    # the hub beside the sandbox is local: Google would push to it over HTTPS only
    app.state.google = google.GoogleSandbox(local_origins=[hub_url] if hub_url else [])
    app.include_router(google.router(app.state.google))
    app.state.smtp = smtp.SmtpSink()  # listens from its first use on
    app.include_router(smtp.router(app.state.smtp))
    return app
