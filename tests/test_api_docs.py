"""/docs and /redoc work offline: every script, stylesheet and icon they load is the hub's own."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_nothing_from_elsewhere(client, page):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text) + re.findall(r"""url:\\s*'([^']+)'""", r.text)
    assert assets, r.text
    for url in assets:
        assert not url.startswith(("http://", "https://", "//")), f"{page} loads {url} from elsewhere"
    for url in re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text):
        loaded = client.get(url)
        assert loaded.status_code == 200 and len(loaded.content) > 1000, url
    assert "fonts.googleapis.com" not in r.text and "cdn.jsdelivr.net" not in r.text


def test_swagger_ui_reads_the_hubs_openapi_document(client):
    r = client.get("/docs")
    assert "url: '/openapi.json'" in r.text
    assert client.get("/openapi.json").json()["info"]["title"] == "Integrations Hub"
    assert client.get("/docs/oauth2-redirect").status_code == 200
