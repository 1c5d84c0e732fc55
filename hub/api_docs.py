"""Swagger UI and ReDoc, served by the hub itself.

FastAPI's pages load their scripts from a CDN, so ``/docs`` was blank offline and on
locked-down networks. The same pages are served here with the assets of the
``fastapi-offline`` distribution (Swagger UI and ReDoc's standalone bundle), mounted
under ``/static/api-docs``; ReDoc's Google Fonts are left out for the same reason.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hub.security_headers import DOCS_PAGE_HEADERS

ASSETS_PATH = "/static/api-docs"


def _docs_page(page: HTMLResponse) -> HTMLResponse:
    """The docs pages run the hub's own scripts: their CSP allows those, nothing else."""
    page.headers.update(DOCS_PAGE_HEADERS)
    return page


def install_api_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI), ``/docs/oauth2-redirect`` and ``/redoc``, all from local assets."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="api-docs-assets")
    title = f"{app.title} — API"

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return _docs_page(get_swagger_ui_html(
            openapi_url=base + app.openapi_url, title=title, oauth2_redirect_url=base + "/docs/oauth2-redirect",
            swagger_js_url=f"{base}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
        ))

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _docs_page(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return _docs_page(get_redoc_html(openapi_url=base + app.openapi_url, title=title,
                              redoc_js_url=f"{base}{ASSETS_PATH}/redoc.standalone.js",
                              redoc_favicon_url=f"{base}{ASSETS_PATH}/favicon.png", with_google_fonts=False))
