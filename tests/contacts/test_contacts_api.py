"""Contacts through the API: create with normalized phone and e-mail, conflicts, reads
with consents, updates recording consent changes, the list's filters and pages, and
bad input refused with nothing written."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from hub.contacts.models import Contact, ContactConsent
from tests.support import tenant_headers


@pytest.fixture
def acme(client, runtime):
    return tenant_headers(client, runtime, "acme")


def create(client, headers, **body):
    return client.post("/v1/contacts", headers=headers, json=body)


def rows(runtime, model) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))


class TestCreate:
    def test_phone_and_email_are_normalized_and_consents_recorded(self, client, acme):
        _, headers = acme
        r = create(client, headers, name="Ana Souza", phone="(11) 8765-4321", email="Ana@Exemplo.COM.br",
                   locale="en", consent={"whatsapp": "opted_in", "sms": "opted_out"})
        assert r.status_code == 201, r.text
        body = r.json()
        # a national number in the tenant's country (pt-BR: Brazil), mobile 9th digit added
        assert (body["name"], body["phone"], body["email"], body["locale"]) == (
            "Ana Souza", "+5511987654321", "Ana@exemplo.com.br", "en")
        assert sorted((c["channel"], c["status"], c["source"]) for c in body["consents"]) == [
            ("sms", "opted_out", "api"), ("whatsapp", "opted_in", "api")]
        got = client.get(f"/v1/contacts/{body['id']}", headers=headers).json()
        assert got == body

    def test_a_taken_phone_in_another_spelling_is_a_409_naming_the_contact(self, client, acme):
        _, headers = acme
        first = create(client, headers, phone="+55 11 98765-4321").json()
        again = create(client, headers, phone="11987654321", name="Outra")
        by_email = create(client, headers, email="x@y.com.br")
        taken_email = create(client, headers, email="x@Y.COM.BR", phone="+5521988887777")
        assert again.status_code == 409 and again.json()["error"]["code"] == "contact_exists"
        assert again.json()["error"]["details"] == {"id": first["id"]}
        assert taken_email.status_code == 409
        assert taken_email.json()["error"]["details"] == {"id": by_email.json()["id"]}

    def test_bad_input_is_a_422_and_nothing_is_written(self, client, runtime, acme):
        _, headers = acme
        for body, code in (
            ({"name": "Só nome"}, "validation_error"),
            ({"phone": "12345"}, "invalid_phone"),
            ({"phone": "+55 11 3333"}, "invalid_phone"),
            ({"email": "not-an-email"}, "invalid_email"),
            ({"phone": "+5511987654321", "email": "a@b"}, "invalid_email"),
            ({"phone": "+5511987654321", "consent": {"fax": "opted_in"}}, "validation_error"),
            ({"phone": "+5511987654321", "consent": {"sms": "maybe"}}, "validation_error"),
            ({"phone": "+5511987654321", "locale": "portuguese!"}, "validation_error"),
            ({"phone": "+5511987654321", "surprise": 1}, "validation_error"),
        ):
            r = create(client, headers, **body)
            assert r.status_code == 422 and r.json()["error"]["code"] == code, (body, r.text)
        assert rows(runtime, Contact) == rows(runtime, ContactConsent) == 0


class TestUpdate:
    def test_fields_change_and_consent_changes_are_recorded_with_their_time(self, client, acme):
        _, headers = acme
        contact = create(client, headers, phone="+5511987654321", consent={"sms": "opted_in"}).json()
        [before] = contact["consents"]
        r = client.patch(f"/v1/contacts/{contact['id']}", headers=headers,
                         json={"name": "Ana", "email": "ana@exemplo.com", "consent": {"sms": "opted_out",
                                                                                        "email": "opted_in"}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["name"], body["phone"], body["email"]) == ("Ana", "+5511987654321", "ana@exemplo.com")
        consents = {c["channel"]: c for c in body["consents"]}
        assert (consents["sms"]["status"], consents["sms"]["source"]) == ("opted_out", "api")
        assert consents["sms"]["changed_at"] > before["changed_at"]
        assert consents["email"]["status"] == "opted_in"

    def test_an_unchanged_consent_keeps_its_time(self, client, acme):
        _, headers = acme
        contact = create(client, headers, phone="+5511987654321", consent={"sms": "opted_out"}).json()
        body = client.patch(f"/v1/contacts/{contact['id']}", headers=headers,
                            json={"consent": {"sms": "opted_out"}}).json()
        assert body["consents"] == contact["consents"]

    def test_taking_anothers_phone_is_a_409_and_clearing_both_addresses_a_422(self, client, acme):
        _, headers = acme
        ana = create(client, headers, phone="+5511987654321").json()
        bia = create(client, headers, phone="+5521988887777", email="bia@exemplo.com").json()
        taken = client.patch(f"/v1/contacts/{bia['id']}", headers=headers, json={"phone": "11 98765 4321"})
        unreachable = client.patch(f"/v1/contacts/{ana['id']}", headers=headers, json={"phone": None})
        assert taken.status_code == 409 and taken.json()["error"]["details"] == {"id": ana["id"]}
        assert unreachable.status_code == 422 and unreachable.json()["error"]["code"] == "contact_unreachable"
        assert client.get(f"/v1/contacts/{bia['id']}", headers=headers).json()["phone"] == "+5521988887777"
        assert client.get(f"/v1/contacts/{ana['id']}", headers=headers).json()["phone"] == "+5511987654321"
        # its own phone again is no conflict; clearing one of two addresses is fine
        assert client.patch(f"/v1/contacts/{bia['id']}", headers=headers,
                            json={"phone": "+55 21 98888-7777"}).status_code == 200
        assert client.patch(f"/v1/contacts/{bia['id']}", headers=headers,
                            json={"phone": None}).json()["phone"] is None


class TestList:
    def test_newest_first_in_pages_with_filters(self, client, acme):
        _, headers = acme
        ids = [create(client, headers, phone=f"+55119876543{i:02d}").json()["id"] for i in range(5)]
        create(client, headers, email="ana@exemplo.com")
        first = client.get("/v1/contacts?limit=4", headers=headers).json()
        rest = client.get(f"/v1/contacts?limit=4&cursor={first['next_cursor']}", headers=headers).json()
        listed = [c["id"] for c in first["data"] + rest["data"]]
        assert len(listed) == 6 and listed[1:] == ids[::-1] and rest["next_cursor"] is None
        by_phone = client.get("/v1/contacts", headers=headers, params={"phone": "(11) 98765-4302"}).json()
        assert [c["id"] for c in by_phone["data"]] == [ids[2]]
        by_email = client.get("/v1/contacts", headers=headers, params={"email": "ana@EXEMPLO.com"}).json()
        assert [c["email"] for c in by_email["data"]] == ["ana@exemplo.com"]
        bad = client.get("/v1/contacts", headers=headers, params={"phone": "abc"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_phone"


class TestScopesAndIsolation:
    def test_scopes_are_enforced(self, client, runtime):
        _, reader = tenant_headers(client, runtime, "reader", scopes=["contacts:read"])
        assert client.get("/v1/contacts", headers=reader).status_code == 200
        r = create(client, reader, phone="+5511987654321")
        assert r.status_code == 403
        _, writer_only_messages = tenant_headers(client, runtime, "msgs", scopes=["messages:read"])
        assert client.get("/v1/contacts", headers=writer_only_messages).status_code == 403

    def test_another_tenants_contact_is_a_404_everywhere(self, client, runtime, acme):
        _, a = acme
        _, b = tenant_headers(client, runtime, "other")
        contact = create(client, a, name="Ana", phone="+5511987654321").json()
        path = f"/v1/contacts/{contact['id']}"
        missing = f"/v1/contacts/{uuid.uuid4()}"
        for method, suffix, body in (("GET", "", None), ("PATCH", "", {"name": "B"}), ("GET", "/export", None),
                                     ("DELETE", "", None)):
            theirs = client.request(method, path + suffix, headers=b, json=body)
            nothing = client.request(method, missing + suffix, headers=b, json=body)
            assert theirs.status_code == 404 and theirs.json() == nothing.json(), (method, suffix)
        assert client.get("/v1/contacts", headers=b).json()["data"] == []
        # B may hold the same phone as a contact of its own
        assert create(client, b, phone="+5511987654321").status_code == 201
        assert client.get(path, headers=a).json()["name"] == "Ana"
