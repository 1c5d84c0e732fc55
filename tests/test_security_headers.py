"""Every answer says nosniff; every HTML page carries a CSP, a Referrer-Policy and
refuses to be framed (the Google callback page lacked them: issue 18)."""

from __future__ import annotations

from tests.support import tenant_headers


def test_json_answers_say_nosniff(client, runtime):
    assert client.get("/v1/tenant").headers["x-content-type-options"] == "nosniff"  # a 401
    ok = client.get("/v1/tenant", headers=tenant_headers(client, runtime)[1])
    assert ok.status_code == 200 and ok.headers["x-content-type-options"] == "nosniff"


def test_webhook_answers_say_nosniff(client):
    r = client.post("/webhooks/no_such_kind", json={})
    assert r.status_code == 404 and r.headers["x-content-type-options"] == "nosniff"


def test_an_html_page_gets_the_strict_headers(client):
    page = client.get("/oauth/google/callback", params={"state": "forged", "code": "x"})
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


def test_the_api_docs_run_only_the_hubs_own_scripts(client):
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        page = client.get(path)
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self' 'unsafe-inline'" in csp and "frame-ancestors 'none'" in csp
        assert "https:" not in csp and "*" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
