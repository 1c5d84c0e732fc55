"""The route class every emulated endpoint shares: it counts calls per route template,
applies injected failures (5xx, 429, delays), and renders errors in Google's shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from connectors.sandbox.google.errors import GoogleApiError, OAuthError
from connectors.sandbox.google.state import SandboxState

if TYPE_CHECKING:
    from connectors.sandbox.google.oauth import OAuthServer


def google_route_class(sandbox: SandboxState) -> type[APIRoute]:
    class GoogleRoute(APIRoute):
        """Counts calls, applies injected failures and renders errors in Google's shapes."""

        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()
            label = f"{'/'.join(sorted(self.methods))} {self.path}"

            async def google_route(request: Request) -> Response:
                with sandbox._lock:
                    sandbox.request_counts[label] += 1
                    sandbox.requests.append((request.method, request.url.path, dict(request.query_params)))
                failure = sandbox._take_failure(request.url.path)
                if failure is not None:
                    if failure.delay:
                        await asyncio.sleep(failure.delay)
                    if failure.status is not None:
                        return failure.response(request.url.path)
                try:
                    return await handler(request)
                except (GoogleApiError, OAuthError) as exc:
                    return exc.response()

            return google_route

    return GoogleRoute


def bearer(state: OAuthServer, request: Request, scopes: frozenset[str]) -> str:
    """The account behind the request's bearer token, checked for life and scope."""
    return state.authenticate(request.headers.get("authorization"), scopes).grant.account
