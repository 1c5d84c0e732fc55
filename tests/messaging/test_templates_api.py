"""Templates API: defaults merged with overrides, custom templates, preview, and every
refusal a 422 that names the problem — injection attempts included."""

from __future__ import annotations

import pytest

from hub.messaging.rendering import DEFAULT_TEMPLATE_NAMES
from tests.support import tenant_headers

CUSTOM = {
    "required": ["customer_name"],
    "optional": ["coupon"],
    "locales": {
        "pt-BR": {
            "sms": {"body": "Oi {{ customer_name }}! {{ coupon|default('') }}"},
            "email": {"subject": "Olá {{ customer_name }}", "html": "<p>Oi {{ customer_name }}</p>",
                      "body": "Oi {{ customer_name }}"},
        },
        "en": {"sms": {"body": "Hi {{ customer_name }}!"}},
    },
}


@pytest.fixture
def acme(client, runtime):
    return tenant_headers(client, runtime, "acme")[1]


def create(client, headers, name="promo", **overrides):
    return client.post("/v1/templates", headers=headers, json={"name": name, **CUSTOM, **overrides})


class TestReading:
    def test_the_eight_defaults_are_listed_as_defaults(self, client, acme):
        r = client.get("/v1/templates", headers=acme)
        assert r.status_code == 200, r.text
        listed = {t["name"]: t for t in r.json()["data"]}
        assert set(listed) == set(DEFAULT_TEMPLATE_NAMES)
        assert {t["source"] for t in listed.values()} == {"default"}
        welcome = listed["welcome"]
        assert set(welcome["locales"]) == {"pt-BR", "en"}
        assert set(welcome["locales"]["pt-BR"]["email"]) == {"subject", "html", "body"}

    def test_an_unknown_template_is_404(self, client, acme):
        r = client.get("/v1/templates/nope", headers=acme)
        assert r.status_code == 404 and r.json()["error"]["code"] == "template_not_found"


class TestWriting:
    def test_custom_create_read_conflict_replace_delete(self, client, acme):
        r = create(client, acme)
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "custom" and r.json()["required"] == ["customer_name"]
        assert client.get("/v1/templates/promo", headers=acme).json()["locales"]["en"]["sms"]["body"] \
            == "Hi {{ customer_name }}!"
        assert create(client, acme).status_code == 409
        r = client.put("/v1/templates/promo", headers=acme, json={**CUSTOM, "locales": {"pt-BR": {
            "sms": {"body": "Novo, {{ customer_name }}"}}}})
        assert r.status_code == 200, r.text
        assert set(r.json()["locales"]) == {"pt-BR"}
        assert "promo" in [t["name"] for t in client.get("/v1/templates", headers=acme).json()["data"]]
        assert client.delete("/v1/templates/promo", headers=acme).status_code == 204
        assert client.get("/v1/templates/promo", headers=acme).status_code == 404
        assert client.delete("/v1/templates/promo", headers=acme).status_code == 404

    def test_a_default_name_cannot_be_posted(self, client, acme):
        r = create(client, acme, name="welcome")
        assert r.status_code == 409 and r.json()["error"]["code"] == "template_exists"

    def test_an_override_replaces_the_default_until_deleted(self, client, acme):
        body = {"locales": {"pt-BR": {"sms": {"body": "{{ business_name }} te dá boas-vindas, {{ customer_name }}"}}}}
        r = client.put("/v1/templates/welcome", headers=acme, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "override"
        assert r.json()["required"] == ["customer_name", "business_name"]  # the default's, kept
        preview = client.post("/v1/templates/welcome/preview", headers=acme, json={"channel": "sms"})
        assert preview.status_code == 200, preview.text
        preview = preview.json()
        assert preview["rendered"][0]["body"] == "Souza & Filhos te dá boas-vindas, Maria José Araújo"
        # a channel the override leaves out is still the default's
        email = client.post("/v1/templates/welcome/preview", headers=acme, json={"channel": "email"}).json()
        assert email["rendered"][0]["subject"]
        assert client.delete("/v1/templates/welcome", headers=acme).status_code == 204
        again = client.post("/v1/templates/welcome/preview", headers=acme, json={"channel": "sms"}).json()
        assert "te dá boas-vindas" not in again["rendered"][0]["body"]
        r = client.delete("/v1/templates/welcome", headers=acme)
        assert r.status_code == 409 and r.json()["error"]["code"] == "template_is_default"

    def test_templates_are_the_tenants_own(self, client, runtime, acme):
        assert create(client, acme).status_code == 201
        _, other = tenant_headers(client, runtime, "other")
        assert client.get("/v1/templates/promo", headers=other).status_code == 404
        assert client.delete("/v1/templates/promo", headers=other).status_code == 404
        assert "promo" not in [t["name"] for t in client.get("/v1/templates", headers=other).json()["data"]]
        assert create(client, other).status_code == 201  # the same name is free for another tenant


INJECTIONS = [
    ("{{ ''.__class__ }}", "template_unsafe"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "template_unsafe"),
    ("{{ cycler.__init__.__globals__ }}", "template_unsafe"),
    ("{{ customer_name.upper() }}", "template_unsafe"),
    ("{{ customer_name['__class__'] }}", "template_unsafe"),
    ("{% include 'x.html' %}", "template_unsafe"),
    ("{{ config }}", "template_undeclared_variable"),
    ("{{ customer_name", "template_syntax"),
    ("{{ customer_name|attr('__class__') }}", "template_unsafe"),
]


class TestRefusals:
    def test_every_injection_attempt_is_a_422_naming_it(self, client, acme):
        for text, code in INJECTIONS:
            r = client.post("/v1/templates", headers=acme, json={
                "name": "evil", "required": ["customer_name"], "locales": {"pt-BR": {"sms": {"body": text}}}})
            assert r.status_code == 422, (text, r.text)
            assert r.json()["error"]["code"] == code, (text, r.json())
            assert "evil" in r.json()["error"]["message"]
        assert client.get("/v1/templates/evil", headers=acme).status_code == 404  # nothing written

    def test_an_unsafe_override_is_refused_and_the_default_stays(self, client, acme):
        r = client.put("/v1/templates/welcome", headers=acme, json={"locales": {"pt-BR": {"whatsapp": {
            "body": "{{ customer_name.__class__ }}"}}}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "template_unsafe"
        assert client.get("/v1/templates/welcome", headers=acme).json()["source"] == "default"

    def test_a_missing_variable_is_a_422_naming_it(self, client, acme):
        r = client.post("/v1/templates/order-created/preview", headers=acme,
                        json={"channel": "sms", "data": {"customer_name": "Ana"}})
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "template_missing_variable" and "order_number" in error["message"]
        assert "order_number" in error["details"]["variables"]
        # business_name is the tenant's name unless the data says otherwise
        assert "business_name" not in error["details"]["variables"]

    def test_attributes_outside_the_data_are_missing_not_reached(self, client, acme):
        assert create(client, acme, name="nested", required=["order"], optional=[], locales={
            "pt-BR": {"sms": {"body": "Pedido {{ order.number }} de {{ order.owner.password }}"}}}).status_code == 201
        r = client.post("/v1/templates/nested/preview", headers=acme,
                        json={"channel": "sms", "data": {"order": {"number": "7"}}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "template_missing_variable"
        assert "owner" in r.json()["error"]["message"]
        # data that is an object's method, not a value, is unreachable too
        r = client.post("/v1/templates/nested/preview", headers=acme,
                        json={"channel": "sms", "data": {"order": "texto"}})
        assert r.status_code == 422

    def test_an_email_variant_needs_all_its_parts(self, client, acme):
        r = create(client, acme, name="mail", locales={"pt-BR": {"email": {"subject": "x", "body": "y"}}})
        assert r.status_code == 422

    def test_a_too_long_sms_is_refused_with_its_segment_count(self, client, acme):
        assert create(client, acme, name="long", required=["text"], optional=[], locales={
            "pt-BR": {"sms": {"body": "{{ text }}"}}}).status_code == 201
        r = client.post("/v1/templates/long/preview", headers=acme,
                        json={"channel": "sms", "data": {"text": "ação " * 400}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_segments"
        assert r.json()["error"]["details"]["segments"] > 10


class TestPreview:
    def test_a_default_previews_in_pt_br_on_every_channel_with_segments(self, client, acme):
        r = client.post("/v1/templates/order-created/preview", headers=acme, json={})
        assert r.status_code == 200, r.text
        parts = {p["channel"]: p for p in r.json()["rendered"]}
        assert set(parts) == {"sms", "whatsapp", "email"}
        assert "R$ 1.234,56" in parts["sms"]["body"] and parts["sms"]["segments"] >= 1
        assert parts["sms"]["encoding"] in {"GSM-7", "UCS-2"} and parts["sms"]["locale"] == "pt-BR"
        assert "*Maria José Araújo*" in parts["whatsapp"]["body"]
        assert parts["email"]["subject"].startswith("Recebemos seu pedido") and "<p>" in parts["email"]["html"]

    def test_english_and_html_escaping(self, client, acme):
        r = client.post("/v1/templates/order-created/preview", headers=acme, json={
            "channel": "email", "locale": "en", "data": {
                "customer_name": "<script>x</script>", "business_name": "B", "order_number": "1",
                "total_cents": 100, "order_url": "https://x.example"}})
        assert r.status_code == 200, r.text
        [email] = r.json()["rendered"]
        assert email["locale"] == "en" and "$1.00" in email["body"]
        assert "<script>" not in email["html"] and "&lt;script&gt;" in email["html"]
        assert "<script>x</script>" in email["body"]  # the text part is not HTML

    def test_a_custom_template_needs_data(self, client, acme):
        assert create(client, acme).status_code == 201
        assert client.post("/v1/templates/promo/preview", headers=acme, json={}).status_code == 422
        r = client.post("/v1/templates/promo/preview", headers=acme, json={"data": {"customer_name": "Ana"}})
        assert r.status_code == 200
        assert {p["channel"] for p in r.json()["rendered"]} == {"sms", "email"}

    def test_a_mapped_whatsapp_template_renders_its_parameters(self, client, acme):
        r = client.put("/v1/templates/welcome", headers=acme, json={
            "locales": {"pt-BR": {"sms": {"body": "Oi {{ customer_name }}"}}},
            "whatsapp_template": {"name": "boas_vindas", "parameters": ["{{ customer_name }}", "{{ business_name }}"]}})
        assert r.status_code == 200, r.text
        r = client.post("/v1/templates/welcome/preview", headers=acme, json={"channel": "whatsapp"})
        mapped = r.json()["rendered"][0]["whatsapp_template"]
        assert mapped["name"] == "boas_vindas" and mapped["language"] == "pt_BR"
        assert mapped["parameters"][0] == "Maria José Araújo"
