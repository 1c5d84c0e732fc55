"""Tenant isolation, proved for every tenant-scoped route of the app.

``CASES`` holds one isolation case per tenant route. The enumeration test fails
when a new ``/v1`` route appears without one, so isolation is never forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi import routing

from hub.auth.deps import RequireScope
from hub.auth.scopes import PLATFORM_ADMIN
from tests.support import smtp_credentials, tenant_headers

A_CONFIG = {"helo_hostname": "tenant-a-only.example"}


@pytest.fixture
def two_tenants(client, runtime, smtp_relay):
    """Tenant A with an smtp integration B does not have; tokens for both."""
    a_id, a = tenant_headers(client, runtime, "tenant-a")
    b_id, b = tenant_headers(client, runtime, "tenant-b")
    r = client.put("/v1/integrations/smtp", headers=a,
                   json={"credentials": smtp_credentials(smtp_relay, username="a", password="a-password-123"),
                         "config": A_CONFIG})
    assert r.status_code == 200, r.text
    return {"a_id": a_id, "a": a, "b_id": b_id, "b": b, "smtp_port": smtp_relay}


def not_found_like_a_missing_one(client, method, path, b, **kw):
    theirs = client.request(method, path, headers=b, **kw)
    missing = client.request(method, path.replace("smtp", "nonexistent_kind"), headers=b, **kw)
    assert theirs.status_code == 404
    assert theirs.json() == {"error": {**missing.json()["error"],
                                       "message": missing.json()["error"]["message"].replace("nonexistent_kind",
                                                                                             "smtp")}}


def case_own_tenant(client, t):
    body = client.get("/v1/tenant", headers=t["b"]).json()
    assert body["id"] == str(t["b_id"])


def case_list_integrations(client, t):
    assert "tenant-a-only" not in client.get("/v1/integrations", headers=t["b"]).text


def case_integrations_health(client, t):
    r = client.get("/v1/integrations/health", headers=t["b"])
    assert r.status_code == 200, r.text
    assert r.json() == {"integrations": []}
    assert [i["kind"] for i in client.get("/v1/integrations/health", headers=t["a"]).json()["integrations"]] == [
        "smtp"]


def case_check_integration(client, t):
    not_found_like_a_missing_one(client, "POST", "/v1/integrations/smtp/check", t["b"])
    health = client.get("/v1/integrations/health", headers=t["a"]).json()["integrations"][0]
    assert health["last_failure"] is None  # B's attempt ran no check of A's integration


def case_get_integration(client, t):
    not_found_like_a_missing_one(client, "GET", "/v1/integrations/smtp", t["b"])


def case_put_integration(client, t):
    r = client.put("/v1/integrations/smtp", headers=t["b"],
                   json={"credentials": smtp_credentials(t["smtp_port"]), "config": {"helo_hostname": "b.example"}})
    assert r.status_code == 200, r.text
    assert client.get("/v1/integrations/smtp", headers=t["a"]).json()["config"] == A_CONFIG


def case_delete_integration(client, t):
    not_found_like_a_missing_one(client, "DELETE", "/v1/integrations/smtp", t["b"])
    assert client.get("/v1/integrations/smtp", headers=t["a"]).status_code == 200


def case_audit(client, t):
    r = client.get(f"/v1/audit?tenant_id={t['a_id']}", headers=t["b"])
    assert r.status_code == 404
    events = client.get("/v1/audit?limit=200", headers=t["b"]).json()["data"]
    assert events and all(e["tenant_id"] == str(t["b_id"]) for e in events)


def case_audit_checkpoint(client, t):
    assert client.get(f"/v1/audit/checkpoint?tenant_id={t['a_id']}", headers=t["b"]).status_code == 404
    assert client.get("/v1/audit/checkpoint", headers=t["b"]).json()["chain"] == str(t["b_id"])


@contextmanager
def sandbox_providers(client) -> Iterator[None]:
    """Point the app at a sandbox Twilio for the duration (the ``client`` fixture has none)."""
    from connectors.sandbox.app import create_sandbox_app
    from connectors.sandbox.server import ThreadedServer

    runtime = client.app.state.runtime
    with ThreadedServer(create_sandbox_app(hub_url=runtime.settings.effective_public_url)) as server:
        runtime.sandbox_url, runtime.settings.sandbox = server.url, True
        try:
            yield
        finally:
            runtime.sandbox_url, runtime.settings.sandbox = None, False


def case_provision_twilio(client, t):
    body = {"country": "BR", "area_code": "11", "channels": ["sms"]}
    with sandbox_providers(client):
        a = client.post("/v1/integrations/twilio/provision", json=body, headers={**t["a"], "Idempotency-Key": "k"})
        # the same key from another tenant is another request, not a replay of A's
        b = client.post("/v1/integrations/twilio/provision", json=body, headers={**t["b"], "Idempotency-Key": "k"})
    assert (a.status_code, b.status_code) == (201, 201) and "Idempotent-Replay" not in b.headers
    a_config, b_config = a.json()["config"], b.json()["config"]
    assert a_config["subaccount_sid"] != b_config["subaccount_sid"]
    assert not set(a_config["numbers"]) & set(b_config["numbers"])
    assert client.get("/v1/integrations/twilio", headers=t["a"]).json()["config"] == a_config
    assert client.get("/v1/integrations/smtp", headers=t["a"]).json()["config"] == A_CONFIG


def a_message(client, t) -> tuple[str, str]:
    """Tenant A's Twilio integration and one queued message (nothing delivers it here):
    ``(message id, conversation id)``."""
    from hub.messaging import service as messaging
    from hub.messaging.schemas import MessageCreate
    from tenants import service as tenants
    from tenants.models import IntegrationStatus

    runtime = client.app.state.runtime
    with runtime.session_factory() as session, session.begin():
        tenants.put_integration(session=session, vault=runtime.vault, tenant_id=t["a_id"], kind="twilio",
                                credentials={"account_sid": "AC" + "a" * 32, "auth_token": "a-token"},
                                config={"numbers": ["+5511930000001"], "channels": ["sms", "whatsapp"]},
                                status=IntegrationStatus.ACTIVE)
        message = messaging.send_message(
            session=session, runtime=runtime, tenant_id=t["a_id"], idempotency_key="a-key",
            message_in=MessageCreate(channel="sms", to="+5511987654321", body="tenant-a-only")).message
        return str(message.id), str(message.conversation_id)


def same_as_missing(client, method, path, own_id, b, **kw):
    """B asking for A's object gets exactly the answer it gets for one that does not exist."""
    import uuid

    theirs = client.request(method, path, headers=b, **kw)
    missing = client.request(method, path.replace(own_id, str(uuid.uuid4())), headers=b, **kw)
    assert theirs.status_code == 404, theirs.text
    assert theirs.json() == missing.json()


def case_send_message(client, t):
    a_message(client, t)
    body = {"channel": "sms", "to": "+5511987654321", "body": "tenant-a-only"}
    # A's Idempotency-Key is not B's, and A's Twilio integration cannot send for B
    r = client.post("/v1/messages", json=body, headers={**t["b"], "Idempotency-Key": "a-key"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_sending_integration"
    assert "Idempotent-Replay" not in r.headers


def case_list_messages(client, t):
    a_message(client, t)
    assert "tenant-a-only" not in client.get("/v1/messages", headers=t["b"]).text
    assert client.get("/v1/messages?to=%2B5511987654321", headers=t["b"]).json()["data"] == []
    assert len(client.get("/v1/messages", headers=t["a"]).json()["data"]) == 1


def case_get_message(client, t):
    message_id, _ = a_message(client, t)
    same_as_missing(client, "GET", f"/v1/messages/{message_id}", message_id, t["b"])


def case_retry_message(client, t):
    message_id, _ = a_message(client, t)
    same_as_missing(client, "POST", f"/v1/messages/{message_id}/retry", message_id, t["b"])
    assert client.get(f"/v1/messages/{message_id}", headers=t["a"]).json()["status"] == "queued"


def case_list_conversations(client, t):
    _, conversation_id = a_message(client, t)
    assert conversation_id not in client.get("/v1/conversations", headers=t["b"]).text
    assert [c["id"] for c in client.get("/v1/conversations", headers=t["a"]).json()["data"]] == [conversation_id]


def case_get_conversation(client, t):
    _, conversation_id = a_message(client, t)
    same_as_missing(client, "GET", f"/v1/conversations/{conversation_id}", conversation_id, t["b"])


def case_reply_to_conversation(client, t):
    _, conversation_id = a_message(client, t)
    same_as_missing(client, "POST", f"/v1/conversations/{conversation_id}/messages", conversation_id, t["b"],
                    json={"body": "from b"})
    messages = client.get(f"/v1/conversations/{conversation_id}", headers=t["a"]).json()["messages"]
    assert [m["body"] for m in messages] == ["tenant-a-only"]


def case_update_conversation(client, t):
    _, conversation_id = a_message(client, t)
    same_as_missing(client, "PATCH", f"/v1/conversations/{conversation_id}", conversation_id, t["b"],
                    json={"status": "closed"})
    assert client.get(f"/v1/conversations/{conversation_id}", headers=t["a"]).json()["status"] == "open"


@contextmanager
def a_calendar(client, t) -> Iterator[dict]:
    """Tenant A connected to Google (the sandbox's), "dr-ana" mapped to its primary
    calendar and one appointment booked, all through the API; B has no Google."""
    from tests.calendar.calendar_support import Browser

    with sandbox_providers(client):
        url = client.post("/v1/integrations/google/connect", headers=t["a"]).json()["authorization_url"]
        assert Browser(client).connect(url).status_code == 200
        calendar_id = client.get("/v1/google/calendars", headers=t["a"]).json()[0]["id"]
        mapped = client.put("/v1/calendars/dr-ana", headers=t["a"], json={"name": "Dra. A", "calendar_id": calendar_id})
        assert mapped.status_code == 200, mapped.text
        booked = client.post("/v1/appointments", headers=t["a"], json={
            "resource_id": "dr-ana", "start": "2031-03-03T13:00:00Z", "end": "2031-03-03T13:30:00Z",
            "title": "tenant-a-only"})
        assert booked.status_code == 201, booked.text
        yield {"appointment_id": booked.json()["id"], "calendar_id": calendar_id}


def same_as_missing_resource(client, method, path, b, **kw):
    theirs = client.request(method, path, headers=b, **kw)
    missing = client.request(method, path.replace("dr-ana", "nobody"), headers=b, **kw)
    assert theirs.status_code == missing.status_code and theirs.status_code in (404, 422), theirs.text
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"]
    assert theirs.json()["error"]["message"] == missing.json()["error"]["message"].replace("nobody", "dr-ana")


def case_google_connect(client, t):
    from jose import jwt

    from tests.calendar.calendar_support import Browser, query_of

    with a_calendar(client, t):
        r = client.post("/v1/integrations/google/connect", headers=t["b"])
        assert r.status_code == 200
        google_url = Browser(client).open(r.json()["authorization_url"])
        assert jwt.get_unverified_claims(query_of(google_url)["state"])["tid"] == str(t["b_id"])
        assert client.get("/v1/integrations/google", headers=t["b"]).status_code == 404
        assert client.get("/v1/integrations/google", headers=t["a"]).json()["status"] == "active"


def case_google_connection(client, t):
    with a_calendar(client, t):
        r = client.get("/v1/integrations/google", headers=t["b"])
        assert r.status_code == 404 and r.json()["error"]["code"] == "google_not_connected"
        assert client.get("/v1/integrations/google", headers=t["a"]).status_code == 200


def case_google_disconnect(client, t):
    with a_calendar(client, t):
        assert client.delete("/v1/integrations/google", headers=t["b"]).status_code == 404
        assert client.get("/v1/integrations/google", headers=t["a"]).json()["status"] == "active"


@contextmanager
def a_google_client(client, t) -> Iterator[str]:
    """Tenant A with a Google OAuth client of its own (known to the sandbox Google)."""
    with sandbox_providers(client):
        client_id = "1111-tenant-a.apps.googleusercontent.com"
        import httpx

        google = httpx.post(f"{client.app.state.runtime.sandbox_url}/_sandbox/google/clients", json={
            "client_id": client_id, "client_secret": "tenant-a-client-secret", "redirect_uris": []}, trust_env=False)
        assert google.status_code == 204, google.text
        r = client.put("/v1/integrations/google/oauth-client", headers=t["a"],
                       json={"client_id": client_id, "client_secret": "tenant-a-client-secret"})
        assert r.status_code == 200, r.text
        yield client_id


def case_google_oauth_client_get(client, t):
    with a_google_client(client, t) as client_id:
        r = client.get("/v1/integrations/google/oauth-client", headers=t["b"])
        assert r.status_code == 404 and r.json()["error"]["code"] == "google_client_not_set"
        assert client_id not in r.text
        assert client.get("/v1/integrations/google/oauth-client", headers=t["a"]).json()["client_id"] == client_id


def case_google_oauth_client_put(client, t):
    with a_google_client(client, t) as client_id:
        # B cannot take A's client without its secret, and A keeps it
        r = client.put("/v1/integrations/google/oauth-client", headers=t["b"],
                       json={"client_id": client_id, "client_secret": "a-guessed-secret"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "google_client_rejected"
        assert client.get("/v1/integrations/google/oauth-client", headers=t["a"]).json()["client_id"] == client_id


def case_google_oauth_client_delete(client, t):
    with a_google_client(client, t) as client_id:
        r = client.delete("/v1/integrations/google/oauth-client", headers=t["b"])
        assert r.status_code == 404 and r.json()["error"]["code"] == "google_client_not_set"
        assert client.get("/v1/integrations/google/oauth-client", headers=t["a"]).json()["client_id"] == client_id


def case_google_calendars(client, t):
    with a_calendar(client, t) as a:
        r = client.get("/v1/google/calendars", headers=t["b"])
        assert r.status_code == 404 and a["calendar_id"] not in r.text


def case_list_calendars(client, t):
    with a_calendar(client, t):
        assert client.get("/v1/calendars", headers=t["b"]).json() == []
        assert [c["resource_id"] for c in client.get("/v1/calendars", headers=t["a"]).json()] == ["dr-ana"]


def case_map_calendar(client, t):
    with a_calendar(client, t) as a:
        r = client.put("/v1/calendars/dr-ana", headers=t["b"], json={"name": "B", "calendar_id": a["calendar_id"]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "google_not_connected"
        assert client.get("/v1/calendars/dr-ana", headers=t["a"]).json()["name"] == "Dra. A"


def case_get_calendar(client, t):
    with a_calendar(client, t):
        same_as_missing_resource(client, "GET", "/v1/calendars/dr-ana", t["b"])


def case_unmap_calendar(client, t):
    with a_calendar(client, t):
        same_as_missing_resource(client, "DELETE", "/v1/calendars/dr-ana", t["b"])
        assert client.get("/v1/calendars/dr-ana", headers=t["a"]).json()["status"] == "active"


def case_sync_log(client, t):
    with a_calendar(client, t):
        same_as_missing_resource(client, "GET", "/v1/calendars/dr-ana/sync-log", t["b"])
        assert client.get("/v1/calendars/dr-ana/sync-log", headers=t["a"]).json()["data"]


def case_book(client, t):
    with a_calendar(client, t):
        body = {"resource_id": "dr-ana", "start": "2031-03-03T13:00:00Z", "end": "2031-03-03T13:30:00Z",
                "title": "b"}
        theirs = client.post("/v1/appointments", headers=t["b"], json=body)
        missing = client.post("/v1/appointments", headers=t["b"], json=body | {"resource_id": "nobody"})
        assert theirs.status_code == missing.status_code == 422
        assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "resource_not_found"
        assert len(client.get("/v1/appointments", headers=t["a"]).json()["data"]) == 1


def case_list_appointments(client, t):
    with a_calendar(client, t):
        assert client.get("/v1/appointments", headers=t["b"]).json()["data"] == []
        assert client.get("/v1/appointments?resource_id=dr-ana", headers=t["b"]).json()["data"] == []


def case_get_appointment(client, t):
    with a_calendar(client, t) as a:
        same_as_missing(client, "GET", f"/v1/appointments/{a['appointment_id']}", a["appointment_id"], t["b"])


def case_update_appointment(client, t):
    with a_calendar(client, t) as a:
        same_as_missing(client, "PATCH", f"/v1/appointments/{a['appointment_id']}", a["appointment_id"], t["b"],
                        json={"title": "b"})
        assert client.get(f"/v1/appointments/{a['appointment_id']}", headers=t["a"]).json()["title"] == \
            "tenant-a-only"


def case_cancel_appointment(client, t):
    with a_calendar(client, t) as a:
        same_as_missing(client, "DELETE", f"/v1/appointments/{a['appointment_id']}", a["appointment_id"], t["b"])
        assert client.get(f"/v1/appointments/{a['appointment_id']}", headers=t["a"]).json()["status"] == \
            "confirmed"


def a_contact(client, t) -> str:
    """Tenant A's contact, created through the API: its id."""
    r = client.post("/v1/contacts", headers=t["a"], json={"name": "tenant-a-only", "phone": "+5511987654321"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def case_list_contacts(client, t):
    a_contact(client, t)
    assert "tenant-a-only" not in client.get("/v1/contacts", headers=t["b"]).text
    assert client.get("/v1/contacts?phone=%2B5511987654321", headers=t["b"]).json()["data"] == []


def case_create_contact(client, t):
    a_contact(client, t)
    # the same phone is free in B: A's contact is no conflict there
    r = client.post("/v1/contacts", headers=t["b"], json={"phone": "+5511987654321"})
    assert r.status_code == 201 and r.json()["name"] is None


def case_get_contact(client, t):
    contact_id = a_contact(client, t)
    same_as_missing(client, "GET", f"/v1/contacts/{contact_id}", contact_id, t["b"])


def case_update_contact(client, t):
    contact_id = a_contact(client, t)
    same_as_missing(client, "PATCH", f"/v1/contacts/{contact_id}", contact_id, t["b"], json={"name": "b"})
    assert client.get(f"/v1/contacts/{contact_id}", headers=t["a"]).json()["name"] == "tenant-a-only"


def case_export_contact(client, t):
    contact_id = a_contact(client, t)
    same_as_missing(client, "GET", f"/v1/contacts/{contact_id}/export", contact_id, t["b"])


def case_erase_contact(client, t):
    contact_id = a_contact(client, t)
    same_as_missing(client, "DELETE", f"/v1/contacts/{contact_id}", contact_id, t["b"])
    assert client.get(f"/v1/contacts/{contact_id}", headers=t["a"]).status_code == 200


def an_auto_reply(client, t) -> str:
    r = client.post("/v1/auto-replies", headers=t["a"], json={"keywords": ["preço"], "reply": "tenant-a-only"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def case_list_auto_replies(client, t):
    an_auto_reply(client, t)
    assert client.get("/v1/auto-replies", headers=t["b"]).json()["data"] == []


def case_create_auto_reply(client, t):
    an_auto_reply(client, t)
    assert client.post("/v1/auto-replies", headers=t["b"], json={"keywords": ["x"], "reply": "b"}).status_code == 201
    assert [r["reply"] for r in client.get("/v1/auto-replies", headers=t["a"]).json()["data"]] == ["tenant-a-only"]


def case_get_auto_reply(client, t):
    rule_id = an_auto_reply(client, t)
    same_as_missing(client, "GET", f"/v1/auto-replies/{rule_id}", rule_id, t["b"])


def case_update_auto_reply(client, t):
    rule_id = an_auto_reply(client, t)
    same_as_missing(client, "PATCH", f"/v1/auto-replies/{rule_id}", rule_id, t["b"], json={"reply": "b"})


def case_delete_auto_reply(client, t):
    rule_id = an_auto_reply(client, t)
    same_as_missing(client, "DELETE", f"/v1/auto-replies/{rule_id}", rule_id, t["b"])
    assert client.get(f"/v1/auto-replies/{rule_id}", headers=t["a"]).status_code == 200


A_HOURS = {"schedule": {"mon": [["08:00", "18:00"]]}, "after_hours_reply": "tenant-a-only"}


def case_get_business_hours(client, t):
    assert client.put("/v1/business-hours", headers=t["a"], json=A_HOURS).status_code == 200
    assert "tenant-a-only" not in client.get("/v1/business-hours", headers=t["b"]).text


def case_put_business_hours(client, t):
    assert client.put("/v1/business-hours", headers=t["a"], json=A_HOURS).status_code == 200
    assert client.put("/v1/business-hours", headers=t["b"], json={"schedule": {}}).status_code == 200
    assert client.get("/v1/business-hours", headers=t["a"]).json()["after_hours_reply"] == "tenant-a-only"


@contextmanager
def a_whatsapp_account(client, t) -> Iterator[None]:
    """Tenant A's whatsapp_cloud integration with one synced template and one mapping."""
    from tests.support import sandbox_for
    from tests.whatsapp.whatsapp_support import add_template, new_phone_number_id

    runtime = client.app.state.runtime
    with sandbox_for(runtime):  # the install subscribes the app at Meta
        put = client.put("/v1/integrations/whatsapp_cloud", headers=t["a"], json={"credentials": {
            "phone_number_id": new_phone_number_id(), "waba_id": "1", "access_token": "a-token",
            "app_secret": "a-secret", "verify_token": "a-verify"}})
    assert put.status_code == 200, put.text
    from types import SimpleNamespace

    from tenants import service as tenants

    with runtime.session_factory() as session:
        integration = tenants.get_integration(session=session, tenant_id=t["a_id"], kind="whatsapp_cloud")
    add_template(runtime, SimpleNamespace(tenant_id=t["a_id"], integration_id=integration.id), "tenant_a_only")
    assert client.put("/v1/integrations/whatsapp_cloud/template-mappings/welcome", headers=t["a"],
                      json={"whatsapp_name": "tenant_a_only",
                            "parameters": ["customer_name", "business_name"]}).status_code == 200
    yield


def _a_whatsapp_state(client, t) -> tuple[list, list]:
    templates = client.get("/v1/integrations/whatsapp_cloud/templates", headers=t["a"]).json()["data"]
    mappings = client.get("/v1/integrations/whatsapp_cloud/template-mappings", headers=t["a"]).json()["data"]
    return [x["name"] for x in templates], [(m["template"], m["whatsapp_name"]) for m in mappings]


A_WHATSAPP = (["tenant_a_only"], [("welcome", "tenant_a_only")])


def case_whatsapp_templates(client, t):
    with a_whatsapp_account(client, t):
        r = client.get("/v1/integrations/whatsapp_cloud/templates", headers=t["b"])
        assert r.status_code == 404 and "tenant_a_only" not in r.text
        assert _a_whatsapp_state(client, t) == A_WHATSAPP


def case_whatsapp_sync(client, t):
    with a_whatsapp_account(client, t):
        assert client.post("/v1/integrations/whatsapp_cloud/templates/sync", headers=t["b"]).status_code == 404
        assert _a_whatsapp_state(client, t) == A_WHATSAPP


def case_whatsapp_mappings(client, t):
    with a_whatsapp_account(client, t):
        r = client.get("/v1/integrations/whatsapp_cloud/template-mappings", headers=t["b"])
        assert r.json() == {"data": []}


def case_whatsapp_put_mapping(client, t):
    with a_whatsapp_account(client, t):
        r = client.put("/v1/integrations/whatsapp_cloud/template-mappings/welcome", headers=t["b"],
                       json={"whatsapp_name": "b_template"})
        assert r.status_code == 200
        assert _a_whatsapp_state(client, t) == A_WHATSAPP


def case_whatsapp_delete_mapping(client, t):
    with a_whatsapp_account(client, t):
        theirs = client.delete("/v1/integrations/whatsapp_cloud/template-mappings/welcome", headers=t["b"])
        missing = client.delete("/v1/integrations/whatsapp_cloud/template-mappings/nothing", headers=t["b"])
        assert (theirs.status_code, missing.status_code) == (404, 404)
        assert _a_whatsapp_state(client, t) == A_WHATSAPP


def a_broadcast(client, t) -> str:
    """Tenant A's broadcast of one message (nothing delivers it here): its id."""
    a_message(client, t)  # A's Twilio integration
    r = client.post("/v1/broadcasts", headers={**t["a"], "Idempotency-Key": "a-broadcast"}, json={
        "template": "welcome", "data": {"business_name": "tenant-a-only"},
        "recipients": [{"to": "+5511987654322", "data": {"customer_name": "tenant-a-only"}}]})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def case_create_broadcast(client, t):
    a_broadcast(client, t)
    body = {"template": "welcome", "data": {"business_name": "b", "customer_name": "b"},
            "recipients": [{"to": "+5511987654322"}]}
    # A's Idempotency-Key is not B's, and A's Twilio integration cannot send for B
    r = client.post("/v1/broadcasts", json=body, headers={**t["b"], "Idempotency-Key": "a-broadcast"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_sending_integration", r.text


def case_list_broadcasts(client, t):
    a_broadcast(client, t)
    assert client.get("/v1/broadcasts", headers=t["b"]).json()["data"] == []
    assert len(client.get("/v1/broadcasts", headers=t["a"]).json()["data"]) == 1


def case_get_broadcast(client, t):
    broadcast_id = a_broadcast(client, t)
    same_as_missing(client, "GET", f"/v1/broadcasts/{broadcast_id}", broadcast_id, t["b"])


def case_cancel_broadcast(client, t):
    broadcast_id = a_broadcast(client, t)
    same_as_missing(client, "POST", f"/v1/broadcasts/{broadcast_id}/cancel", broadcast_id, t["b"])
    assert client.get(f"/v1/broadcasts/{broadcast_id}", headers=t["a"]).json()["status"] != "canceled"


def case_event_stream(client, t):
    # The stream never ends, so this drives what it reads: every replayed or notified id
    # goes through events_since under the stream's tenant, including ids another tenant's
    # notice named. tests/events proves it over a live stream too.
    from hub.events import service as events

    runtime = client.app.state.runtime
    with runtime.session_factory() as session, session.begin():
        a_event = events.publish_event(session=session, tenant_id=t["a_id"], type="message.received",
                                       data={"marker": "tenant-a-only"})
        a_event_id = a_event.id
    with runtime.session_factory() as session:
        assert events.events_since(session=session, tenant_id=t["b_id"], after=0, also=[a_event_id]) == []
        assert events.latest_event_id(session=session, tenant_id=t["b_id"]) == 0
        assert [e.id for e in events.events_since(session=session, tenant_id=t["a_id"], after=0)] == [a_event_id]


def case_cancel_message(client, t):
    message_id, _ = a_message(client, t)
    same_as_missing(client, "DELETE", f"/v1/messages/{message_id}", message_id, t["b"])
    assert client.get(f"/v1/messages/{message_id}", headers=t["a"]).json()["status"] == "queued"


def a_settings(client, t) -> None:
    r = client.put("/v1/messaging/settings", headers=t["a"],
                   json={"channel_order": ["sms"], "email_reply_to": "a-only@tenant-a.example.com"})
    assert r.status_code == 200, r.text


def case_get_messaging_settings(client, t):
    a_settings(client, t)
    body = client.get("/v1/messaging/settings", headers=t["b"]).json()
    assert body["channel_order"] == ["whatsapp", "sms", "email"] and body["email_reply_to"] is None


def case_put_messaging_settings(client, t):
    a_settings(client, t)
    r = client.put("/v1/messaging/settings", headers=t["b"], json={"channel_order": ["email"]})
    assert r.status_code == 200 and r.json()["email_reply_to"] is None
    assert client.get("/v1/messaging/settings", headers=t["a"]).json()["channel_order"] == ["sms"]


A_TEMPLATE = {"required": ["customer_name"],
              "locales": {"pt-BR": {"sms": {"body": "tenant-a-only {{ customer_name }}"}}}}


def a_templates(client, t) -> None:
    assert client.post("/v1/templates", headers=t["a"], json={"name": "a-only", **A_TEMPLATE}).status_code == 201
    assert client.put("/v1/templates/welcome", headers=t["a"], json=A_TEMPLATE).status_code == 200


def case_list_templates(client, t):
    a_templates(client, t)
    r = client.get("/v1/templates", headers=t["b"])
    assert "tenant-a-only" not in r.text and "a-only" not in [x["name"] for x in r.json()["data"]]
    assert {x["source"] for x in r.json()["data"]} == {"default"}


def case_get_template(client, t):
    a_templates(client, t)
    theirs = client.get("/v1/templates/a-only", headers=t["b"])
    missing = client.get("/v1/templates/b-never", headers=t["b"])
    assert theirs.status_code == missing.status_code == 404
    assert client.get("/v1/templates/welcome", headers=t["b"]).json()["source"] == "default"


def case_create_template(client, t):
    a_templates(client, t)
    # the name is A's, not taken for B
    assert client.post("/v1/templates", headers=t["b"], json={"name": "a-only", **A_TEMPLATE}).status_code == 201


def case_put_template(client, t):
    a_templates(client, t)
    r = client.put("/v1/templates/a-only", headers=t["b"], json={
        "required": [], "locales": {"pt-BR": {"sms": {"body": "b"}}}})
    assert r.status_code == 200
    assert "tenant-a-only" in client.get("/v1/templates/a-only", headers=t["a"]).text


def case_delete_template(client, t):
    a_templates(client, t)
    assert client.delete("/v1/templates/a-only", headers=t["b"]).status_code == 404
    r = client.delete("/v1/templates/welcome", headers=t["b"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "template_is_default"
    assert client.get("/v1/templates/a-only", headers=t["a"]).status_code == 200
    assert client.get("/v1/templates/welcome", headers=t["a"]).json()["source"] == "override"


def case_preview_template(client, t):
    a_templates(client, t)
    r = client.post("/v1/templates/a-only/preview", headers=t["b"], json={"data": {"customer_name": "x"}})
    assert r.status_code == 404
    r = client.post("/v1/templates/welcome/preview", headers=t["b"], json={"channel": "sms"})
    assert r.status_code == 200 and "tenant-a-only" not in r.text


CASES: dict[tuple[str, str], Callable] = {
    ("POST", "/v1/broadcasts"): case_create_broadcast,
    ("GET", "/v1/broadcasts"): case_list_broadcasts,
    ("GET", "/v1/broadcasts/{broadcast_id}"): case_get_broadcast,
    ("POST", "/v1/broadcasts/{broadcast_id}/cancel"): case_cancel_broadcast,
    ("GET", "/v1/events/stream"): case_event_stream,
    ("GET", "/v1/integrations/whatsapp_cloud/templates"): case_whatsapp_templates,
    ("POST", "/v1/integrations/whatsapp_cloud/templates/sync"): case_whatsapp_sync,
    ("GET", "/v1/integrations/whatsapp_cloud/template-mappings"): case_whatsapp_mappings,
    ("PUT", "/v1/integrations/whatsapp_cloud/template-mappings/{template}"): case_whatsapp_put_mapping,
    ("DELETE", "/v1/integrations/whatsapp_cloud/template-mappings/{template}"): case_whatsapp_delete_mapping,
    ("GET", "/v1/tenant"): case_own_tenant,
    ("GET", "/v1/integrations"): case_list_integrations,
    ("GET", "/v1/integrations/{kind}"): case_get_integration,
    ("PUT", "/v1/integrations/{kind}"): case_put_integration,
    ("DELETE", "/v1/integrations/{kind}"): case_delete_integration,
    ("POST", "/v1/integrations/twilio/provision"): case_provision_twilio,
    ("GET", "/v1/audit"): case_audit,
    ("GET", "/v1/audit/checkpoint"): case_audit_checkpoint,
    ("POST", "/v1/messages"): case_send_message,
    ("GET", "/v1/messages"): case_list_messages,
    ("GET", "/v1/integrations/health"): case_integrations_health,
    ("POST", "/v1/integrations/{kind}/check"): case_check_integration,
    ("GET", "/v1/messages/{message_id}"): case_get_message,
    ("POST", "/v1/messages/{message_id}/retry"): case_retry_message,
    ("DELETE", "/v1/messages/{message_id}"): case_cancel_message,
    ("GET", "/v1/messaging/settings"): case_get_messaging_settings,
    ("PUT", "/v1/messaging/settings"): case_put_messaging_settings,
    ("GET", "/v1/templates"): case_list_templates,
    ("POST", "/v1/templates"): case_create_template,
    ("GET", "/v1/templates/{name}"): case_get_template,
    ("PUT", "/v1/templates/{name}"): case_put_template,
    ("DELETE", "/v1/templates/{name}"): case_delete_template,
    ("POST", "/v1/templates/{name}/preview"): case_preview_template,
    ("GET", "/v1/conversations"): case_list_conversations,
    ("GET", "/v1/conversations/{conversation_id}"): case_get_conversation,
    ("POST", "/v1/conversations/{conversation_id}/messages"): case_reply_to_conversation,
    ("PATCH", "/v1/conversations/{conversation_id}"): case_update_conversation,
    ("POST", "/v1/integrations/google/connect"): case_google_connect,
    ("GET", "/v1/integrations/google"): case_google_connection,
    ("DELETE", "/v1/integrations/google"): case_google_disconnect,
    ("GET", "/v1/integrations/google/oauth-client"): case_google_oauth_client_get,
    ("PUT", "/v1/integrations/google/oauth-client"): case_google_oauth_client_put,
    ("DELETE", "/v1/integrations/google/oauth-client"): case_google_oauth_client_delete,
    ("GET", "/v1/google/calendars"): case_google_calendars,
    ("GET", "/v1/calendars"): case_list_calendars,
    ("PUT", "/v1/calendars/{resource_id}"): case_map_calendar,
    ("GET", "/v1/calendars/{resource_id}"): case_get_calendar,
    ("DELETE", "/v1/calendars/{resource_id}"): case_unmap_calendar,
    ("GET", "/v1/calendars/{resource_id}/sync-log"): case_sync_log,
    ("POST", "/v1/appointments"): case_book,
    ("GET", "/v1/appointments"): case_list_appointments,
    ("GET", "/v1/appointments/{appointment_id}"): case_get_appointment,
    ("PATCH", "/v1/appointments/{appointment_id}"): case_update_appointment,
    ("DELETE", "/v1/appointments/{appointment_id}"): case_cancel_appointment,
    ("GET", "/v1/contacts"): case_list_contacts,
    ("POST", "/v1/contacts"): case_create_contact,
    ("GET", "/v1/contacts/{contact_id}"): case_get_contact,
    ("PATCH", "/v1/contacts/{contact_id}"): case_update_contact,
    ("GET", "/v1/contacts/{contact_id}/export"): case_export_contact,
    ("DELETE", "/v1/contacts/{contact_id}"): case_erase_contact,
    ("GET", "/v1/auto-replies"): case_list_auto_replies,
    ("POST", "/v1/auto-replies"): case_create_auto_reply,
    ("GET", "/v1/auto-replies/{rule_id}"): case_get_auto_reply,
    ("PATCH", "/v1/auto-replies/{rule_id}"): case_update_auto_reply,
    ("DELETE", "/v1/auto-replies/{rule_id}"): case_delete_auto_reply,
    ("GET", "/v1/business-hours"): case_get_business_hours,
    ("PUT", "/v1/business-hours"): case_put_business_hours,
}


def api_routes(app):
    """Every route with a dependant (FastAPI ≥ 0.160 nests included routers lazily)."""
    return [r for r in routing.iter_route_contexts(app.routes) if getattr(r, "dependant", None) is not None]


def _scopes_required(route) -> set[str | None]:
    found, stack = set(), [route.dependant]
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RequireScope):
            found.add(dep.call.scope)
        stack.extend(dep.dependencies)
    return found


def tenant_routes(app) -> set[tuple[str, str]]:
    """Every /v1 route a tenant's token can reach (all but platform-admin ones)."""
    routes = set()
    for route in api_routes(app):
        if route.path.startswith("/v1"):
            if PLATFORM_ADMIN in _scopes_required(route):
                continue
            routes |= {(method, route.path) for method in route.methods}
    return routes


def test_every_tenant_route_has_an_isolation_case(app):
    missing = tenant_routes(app) - set(CASES)
    assert not missing, f"add an isolation case to tests/api/test_isolation.py for: {sorted(missing)}"
    assert not set(CASES) - tenant_routes(app), "a case names a route that no longer exists"


def test_every_v1_route_requires_a_token(app, client):
    from fastapi.testclient import TestClient

    v1 = [r for r in api_routes(app) if r.path.startswith("/v1")]
    assert len(v1) >= 14
    for i, route in enumerate(v1):
        path = route.path.replace("{", "").replace("}", "")
        for j, method in enumerate(sorted(route.methods)):
            # each from its own address: more failures from one would meet the failed-authentication
            # limit (tests/auth/test_perimeter.py) and answer 429 first
            caller = TestClient(app, raise_server_exceptions=False, client=(f"198.18.{i}.{j + 1}", 40000))
            r = caller.request(method, path)
            assert r.status_code == 401, (method, route.path, r.status_code)


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_tenant_b_cannot_reach_tenant_a(client, two_tenants, route):
    CASES[route](client, two_tenants)
