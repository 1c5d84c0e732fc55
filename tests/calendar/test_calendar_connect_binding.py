"""Who can connect what: the connect flow is bound to the browser that opened it (a
consent URL approved elsewhere, with another person's Google account, connects nothing),
the account the tenant names is the only one accepted, and one Google account belongs
to one tenant."""

from __future__ import annotations

from calendar_support import Browser, connect, google_tenant, query_of, start_connect
from sqlalchemy import select

from hub.audit.models import AuditEvent
from hub.webhooks.models import Route
from tenants.models import Integration


def integration_row(hub, tenant_id) -> Integration | None:
    with hub.runtime.session_factory() as session:
        return session.scalar(select(Integration).where(Integration.tenant_id == tenant_id,
                                                        Integration.kind == "google_calendar"))


def refusals(hub, tenant_id) -> list[str]:
    with hub.runtime.session_factory() as session:
        return [e.details["reason"] for e in session.scalars(
            select(AuditEvent).where(AuditEvent.tenant_id == tenant_id,
                                     AuditEvent.action == "integration.connect_refused")
            .order_by(AuditEvent.seq))]


def account_owner(hub, account: str):
    with hub.runtime.session_factory() as session:
        return session.scalar(select(Route.tenant_id).where(Route.kind == "google_account",
                                                            Route.route_key == account.lower()))


class TestTheFlowIsBoundToItsBrowser:
    def test_a_consent_url_approved_by_someone_else_connects_nothing(self, live_hub):
        """The attack: A starts a flow and gets B to approve it with B's Google account."""
        attacker = google_tenant(live_hub, "atacante")
        victim_account = live_hub.sandbox.google.seed_account("vitima@clinica-b.example", calendars=["Agenda B"])[0]
        attackers_browser, victims_browser = Browser(), Browser()
        google_url = attackers_browser.open(start_connect(live_hub, attacker))

        # B opens the Google link A sent, signs in as B, approves: Google sends B's browser back
        back = victims_browser.consent(google_url, account=victim_account)
        page = victims_browser.back(back)

        assert page.status_code == 400 and "started in another browser" in page.text
        assert integration_row(live_hub, attacker.tenant_id) is None
        assert account_owner(live_hub, victim_account) is None
        assert refusals(live_hub, attacker.tenant_id) == ["browser not bound to the flow"]
        # nor can A finish with B's code in A's own browser: the flow was burnt
        assert attackers_browser.back(back).status_code == 400
        assert integration_row(live_hub, attacker.tenant_id) is None

    def test_the_start_link_works_once_in_the_first_browser_that_opens_it(self, live_hub):
        tenant = google_tenant(live_hub, "umavez")
        start = start_connect(live_hub, tenant)
        mine, theirs = Browser(), Browser()
        google_url = mine.open(start)

        second = theirs.hub.get(start, follow_redirects=False)
        assert second.status_code == 400 and "already opened" in second.text
        assert "set-cookie" not in second.headers
        again = mine.hub.get(start, follow_redirects=False)
        assert again.status_code == 400  # in the same browser too: the link is spent

        assert mine.back(mine.consent(google_url, account=tenant.account)).status_code == 200
        assert integration_row(live_hub, tenant.tenant_id).status == "active"

    def test_the_cookie_is_httponly_lax_scoped_and_cleared(self, live_hub):
        tenant = google_tenant(live_hub, "biscoito")
        browser = Browser()
        opened = browser.hub.get(start_connect(live_hub, tenant), follow_redirects=False)
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith("hub-google-connect-")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/oauth/google" in cookie
        assert "Max-Age=" in cookie
        page = browser.back(browser.consent(opened.headers["location"], account=tenant.account))
        assert page.status_code == 200
        assert 'Max-Age=0' in page.headers["set-cookie"] or "expires=" in page.headers["set-cookie"].lower()
        assert not [c for c in browser.hub.cookies.jar if c.name.startswith("hub-google-connect-")]


class TestTheAccount:
    def test_the_named_account_is_hinted_and_no_other_is_accepted(self, live_hub):
        tenant = google_tenant(live_hub, "nomeada")
        other = live_hub.sandbox.google.seed_account("outra@clinica.example")[0]
        browser = Browser()
        google_url = browser.open(start_connect(live_hub, tenant, account_email=tenant.account.upper()))
        assert query_of(google_url)["login_hint"] == tenant.account

        page = browser.back(browser.consent(google_url, account=other))

        assert page.status_code == 400
        assert other in page.text and f"started for {tenant.account}" in page.text
        assert integration_row(live_hub, tenant.tenant_id) is None
        # the named one goes through
        browser = Browser()
        assert browser.connect(start_connect(live_hub, tenant, account_email=tenant.account),
                               account=tenant.account).status_code == 200

    def test_a_bad_account_email_is_a_422_naming_the_field(self, live_hub):
        tenant = google_tenant(live_hub, "malformado")
        r = live_hub.http.post("/v1/integrations/google/connect", headers=tenant.headers,
                               json={"account_email": "not an e-mail"})
        assert r.status_code == 422 and "account_email" in r.text

    def test_one_google_account_connects_one_tenant(self, live_hub):
        first = google_tenant(live_hub, "primeira")
        second = google_tenant(live_hub, "segunda")
        connect(live_hub, first)
        assert account_owner(live_hub, first.account) == first.tenant_id

        browser = Browser()
        page = browser.back(browser.consent(browser.open(start_connect(live_hub, second)), account=first.account))

        assert page.status_code == 409 and "already connected to another account" in page.text
        assert "Primeira" not in page.text  # which tenant holds it is not told
        assert integration_row(live_hub, second.tenant_id) is None
        assert live_hub.http.get("/v1/integrations/google", headers=first.headers).json()["status"] == "active"
        assert refusals(live_hub, second.tenant_id) == ["account connected to another tenant"]
        # once the first tenant lets it go, the second may connect it
        assert live_hub.http.delete("/v1/integrations/google", headers=first.headers).status_code == 204
        assert account_owner(live_hub, first.account) is None
        browser = Browser()
        assert browser.connect(start_connect(live_hub, second), account=first.account).status_code == 200
        assert account_owner(live_hub, first.account) == second.tenant_id

    def test_reconnecting_with_another_account_lets_the_old_one_go(self, live_hub):
        tenant = google_tenant(live_hub, "troca")
        connect(live_hub, tenant)
        newer = live_hub.sandbox.google.seed_account("nova@troca.example")[0]
        assert Browser().connect(start_connect(live_hub, tenant), account=newer).status_code == 200
        assert account_owner(live_hub, newer) == tenant.tenant_id
        assert account_owner(live_hub, tenant.account) is None
        view = live_hub.http.get("/v1/integrations/google", headers=tenant.headers).json()
        assert view["account_email"] == newer
