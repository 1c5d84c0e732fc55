"""RFC 8058 one-click unsubscribe (issue 10): every e-mail's List-Unsubscribe names a
per-recipient, per-tenant link the hub serves; a POST with List-Unsubscribe=One-Click
opts the person out of the tenant's e-mail, a GET only asks, a forged link does nothing."""

from __future__ import annotations

import re

import httpx

from tests.messaging.notification_support import acme, hub, mailbox, smtp_server  # noqa: F401 - fixtures
from tests.messaging.outbound_support import twilio_tenant, wait_for_status

TO = "maria@cliente.example.com"


def send_email(hub, tenant, to: str = TO) -> dict:
    r = hub.http.post("/v1/messages", headers=tenant.headers, json={
        "channel": "email", "to": to, "subject": "Lembrete", "body": "Sua consulta é amanhã."})
    assert r.status_code == 202, r.text
    return r.json()


def one_click_link(mailbox, to: str = TO) -> str:
    received = mailbox.messages(to)[-1]
    link = re.match(r"<([^>]+)>", received["List-Unsubscribe"]).group(1)
    # RFC 8058 one-click is for HTTPS links only: a local hub's http link gets no -Post header
    one_click = "List-Unsubscribe=One-Click" if link.startswith("https://") else None
    assert received["List-Unsubscribe-Post"] == one_click
    return link


def consents(hub, tenant) -> list[tuple[str, str, str]]:
    [contact] = hub.http.get("/v1/contacts", headers=tenant.headers, params={"email": TO}).json()["data"]
    detail = hub.http.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers).json()
    return [(c["channel"], c["status"], c["source"]) for c in detail["consents"]]


def test_one_click_opts_the_recipient_out_and_a_get_only_asks(hub, acme, mailbox):  # noqa: F811
    wait_for_status(hub, acme, send_email(hub, acme)["id"], "sent")
    link = one_click_link(mailbox)
    assert link.startswith(hub.url + "/unsubscribe/") and TO not in link  # sealed, not readable

    page = httpx.get(link)
    assert page.status_code == 200 and TO in page.text and 'method="post"' in page.text
    assert "form-action 'self'" in page.headers["content-security-policy"]
    assert hub.http.get("/v1/contacts", headers=acme.headers, params={"email": TO}).json()["data"] == []

    assert httpx.post(link, content=b"").status_code == 400  # RFC 8058 needs the One-Click body
    done = httpx.post(link, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text
    assert consents(hub, acme) == [("email", "opted_out", "list_unsubscribe")]
    assert httpx.post(link, data={"List-Unsubscribe": "One-Click"}).status_code == 200  # twice is fine

    again = send_email(hub, acme)
    assert again["status"] == "suppressed", again  # the next e-mail is not sent
    assert len(mailbox.messages(TO)) == 1


def test_a_forged_or_altered_link_changes_nothing(hub, acme, mailbox):  # noqa: F811
    wait_for_status(hub, acme, send_email(hub, acme)["id"], "sent")
    link = one_click_link(mailbox)
    token = link.rsplit("/", 1)[1]
    altered = link[: -len(token)] + token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for forged in (altered, hub.url + "/unsubscribe/not-a-token", hub.url + "/unsubscribe/" + "A" * 80):
        assert httpx.post(forged, data={"List-Unsubscribe": "One-Click"}).status_code == 404
        assert httpx.get(forged).status_code == 404
    assert hub.http.get("/v1/contacts", headers=acme.headers, params={"email": TO}).json()["data"] == []


def test_a_link_is_the_tenants_own(hub, acme, mailbox):  # noqa: F811
    other = twilio_tenant(hub, "outra")
    wait_for_status(hub, acme, send_email(hub, acme)["id"], "sent")
    assert httpx.post(one_click_link(mailbox), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    # the same person at another clinic still gets that clinic's e-mail
    assert send_email(hub, other)["status"] == "queued"
    assert hub.http.get("/v1/contacts", headers=other.headers, params={"email": TO}).json()["data"] == []
