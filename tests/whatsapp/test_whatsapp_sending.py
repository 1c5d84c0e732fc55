"""Sending through a tenant's whatsapp_cloud integration: the 24-hour customer-service
window and the template checks, on the API path (a clear 422) and again at delivery
(a permanent failure a fallback can act on). Both backends; nothing reaches Meta here
(the sandboxed end-to-end sends are in test_whatsapp_live.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.messaging.delivery import deliver_message
from hub.messaging.models import Message, MessageAttempt
from hub.whatsapp.models import WhatsAppMessageTemplate
from hub.whatsapp.service import template_languages
from tests.whatsapp.whatsapp_support import (
    CUSTOMER,
    add_template,
    change,
    envelope,
    handle_stored,
    headers_for,
    post_signed,
    text_message,
    whatsapp_tenant,
)

STRANGER = "+5521998765432"


@pytest.fixture
def clinic(runtime):
    return whatsapp_tenant(runtime, "clinic")


@pytest.fixture
def headers(client, runtime, clinic):
    return headers_for(client, runtime, clinic.tenant_id)


def customer_writes(client, runtime, tenant, *, hours_ago: float = 0) -> None:
    """The customer's inbound WhatsApp message, as Meta delivers it, ``hours_ago``."""
    body = envelope([change(tenant.phone_number_id, messages=[text_message("Oi, tudo bem?")])])
    assert post_signed(client, body, tenant.app_secret).status_code == 200
    assert handle_stored(runtime) == ["handled"]
    if hours_ago:
        backdate_inbound(runtime, timedelta(hours=hours_ago))


def backdate_inbound(runtime, by: timedelta) -> None:
    """As if the inbound messages had arrived ``by`` earlier."""
    with runtime.session_factory() as session, session.begin():
        for message in session.scalars(select(Message).where(Message.direction == "inbound")):
            message.created_at = message.created_at - by


def send(client, headers, *, to: str = CUSTOMER, **fields):
    return client.post("/v1/messages", headers=headers, json={"channel": "whatsapp", "to": to, **fields})


def error_code(answer) -> str:
    assert answer.status_code == 422, answer.text
    return answer.json()["error"]["code"]


class TestWindow:
    def test_text_inside_the_window_is_queued_through_whatsapp_cloud(self, client, runtime, clinic, headers):
        customer_writes(client, runtime, clinic, hours_ago=23.5)
        answer = send(client, headers, body="Sua consulta está confirmada ✅")
        assert answer.status_code == 202, answer.text
        with runtime.session_factory() as session:
            message = session.get(Message, uuid.UUID(answer.json()["id"]))
            assert message.integration_id == clinic.integration_id
            assert message.from_address == clinic.phone_number_id

    def test_text_outside_the_window_or_to_someone_who_never_wrote_needs_a_template(self, client, runtime, clinic,
                                                                                    headers):
        customer_writes(client, runtime, clinic, hours_ago=24.5)
        assert error_code(send(client, headers, body="Oi")) == "whatsapp_window_closed"
        assert error_code(send(client, headers, to=STRANGER, body="Oi")) == "whatsapp_window_closed"
        media = send(client, headers, media_urls=["https://example.com/a.jpg"])
        assert error_code(media) == "whatsapp_window_closed"
        with runtime.session_factory() as session:  # nothing half written
            assert session.scalars(select(Message).where(Message.direction == "outbound")).all() == []

    def test_the_window_is_per_tenant(self, client, runtime, clinic, headers):
        other = whatsapp_tenant(runtime, "other")
        customer_writes(client, runtime, other)  # the customer wrote to another tenant only
        assert error_code(send(client, headers, body="Oi")) == "whatsapp_window_closed"


class TestTemplates:
    def test_an_approved_template_goes_outside_the_window(self, client, runtime, clinic, headers):
        add_template(runtime, clinic, "appointment_reminder")
        answer = send(client, headers, whatsapp_template={"name": "appointment_reminder",
                                                          "parameters": ["Maria", "25/11 às 14h"]})
        assert answer.status_code == 202, answer.text
        assert answer.json()["body"] == "Olá Maria, sua consulta é em 25/11 às 14h."
        with runtime.session_factory() as session:
            row = session.get(WhatsAppMessageTemplate, uuid.UUID(answer.json()["id"]))
            # pt-BR tenant: the pt_BR version was chosen
            assert (row.name, row.language, row.parameters) == ("appointment_reminder", "pt_BR",
                                                                ["Maria", "25/11 às 14h"])

    def test_a_template_not_approved_or_unknown_is_refused(self, client, runtime, clinic, headers):
        add_template(runtime, clinic, "promo", status="PENDING")
        add_template(runtime, clinic, "old", status="PAUSED", body="Oi")
        for name, parameters in (("promo", ["a", "b"]), ("old", []), ("never_created", [])):
            answer = send(client, headers, whatsapp_template={"name": name, "parameters": parameters})
            assert error_code(answer) == "whatsapp_template_not_approved", name

    def test_a_missing_language_is_refused(self, client, runtime, clinic, headers):
        add_template(runtime, clinic, "welcome", "en_US", body="Welcome {{1}}")
        answer = send(client, headers, whatsapp_template={"name": "welcome", "parameters": ["Ana"]})
        assert error_code(answer) == "whatsapp_template_language_missing"
        assert "pt_BR" in answer.json()["error"]["message"] and "en_US" in answer.json()["error"]["message"]
        explicit = send(client, headers, whatsapp_template={"name": "welcome", "language": "es_ES",
                                                            "parameters": ["Ana"]})
        assert error_code(explicit) == "whatsapp_template_language_missing"
        assert send(client, headers, whatsapp_template={"name": "welcome", "language": "en_US",
                                                        "parameters": ["Ana"]}).status_code == 202

    def test_an_english_tenant_gets_en_us_or_en(self, client, runtime):
        tenant = whatsapp_tenant(runtime, "english", locale="en")
        headers = headers_for(client, runtime, tenant.tenant_id)
        add_template(runtime, tenant, "welcome", "en", body="Welcome {{1}}")
        add_template(runtime, tenant, "welcome", "pt_BR", body="Bem-vindo {{1}}")
        answer = send(client, headers, whatsapp_template={"name": "welcome", "parameters": ["Ann"]})
        assert answer.status_code == 202 and answer.json()["body"] == "Welcome Ann"
        assert template_languages("pt-BR")[0] == "pt_BR" and template_languages("en")[:2] == ["en_US", "en"]

    def test_a_wrong_parameter_count_is_refused(self, client, runtime, clinic, headers):
        add_template(runtime, clinic, "appointment_reminder")
        add_template(runtime, clinic, "with_header", header="Consulta de {{1}}", body="Oi")
        for name, parameters in (("appointment_reminder", ["Maria"]), ("appointment_reminder", ["a", "b", "c"]),
                                 ("with_header", [])):
            answer = send(client, headers, whatsapp_template={"name": name, "parameters": parameters})
            assert error_code(answer) == "whatsapp_template_parameters", (name, parameters)

    def test_another_tenants_templates_are_not_this_tenants(self, client, runtime, clinic, headers):
        other = whatsapp_tenant(runtime, "other")
        add_template(runtime, other, "appointment_reminder")
        answer = send(client, headers, whatsapp_template={"name": "appointment_reminder", "parameters": ["a", "b"]})
        assert error_code(answer) == "whatsapp_template_not_approved"
        listed = client.get("/v1/integrations/whatsapp_cloud/templates", headers=headers)
        assert listed.status_code == 200 and listed.json() == {"data": []}


class TestAtDelivery:
    def test_a_window_that_closed_while_the_message_waited_fails_it_permanently(self, client, runtime, clinic,
                                                                              headers):
        customer_writes(client, runtime, clinic, hours_ago=23.99)
        answer = send(client, headers, body="Oi de novo")
        assert answer.status_code == 202
        backdate_inbound(runtime, timedelta(minutes=2))  # the queue waited: the window closed meanwhile
        message_id = uuid.UUID(answer.json()["id"])
        # no provider is called: the check refuses first (there is no sandbox in this test)
        assert deliver_message(runtime=runtime, message_id=message_id) == "failed"
        with runtime.session_factory() as session:
            message = session.get(Message, message_id)
            assert (message.status, message.error_code) == ("failed", "whatsapp_window_closed")
            [attempt] = session.scalars(select(MessageAttempt).where(MessageAttempt.message_id == message_id))
            assert (attempt.outcome, attempt.error_code) == ("failed", "whatsapp_window_closed")

    def test_a_template_paused_after_queueing_fails_it_permanently(self, client, runtime, clinic, headers):
        from hub.whatsapp.models import WhatsAppTemplate

        add_template(runtime, clinic, "appointment_reminder")
        answer = send(client, headers, whatsapp_template={"name": "appointment_reminder", "parameters": ["a", "b"]})
        assert answer.status_code == 202
        with runtime.session_factory() as session, session.begin():
            session.execute(update(WhatsAppTemplate).values(status="PAUSED"))
        message_id = uuid.UUID(answer.json()["id"])
        assert deliver_message(runtime=runtime, message_id=message_id) == "failed"
        with runtime.session_factory() as session:
            assert session.get(Message, message_id).error_code == "whatsapp_template_not_approved"


class TestTwilioStillSendsWhatsAppWithoutACloudIntegration:
    def test_a_template_without_whatsapp_cloud_is_refused(self, client, runtime):
        from tests.webhooks.helpers import new_account_sid, twilio_tenant

        tenant = twilio_tenant(runtime, "twilio-only", account_sid=new_account_sid(), auth_token="t" * 32,
                               numbers=["+5511955550000"])
        headers = headers_for(client, runtime, tenant.tenant_id)
        text = send(client, headers, body="Oi")  # Twilio has no window check here: queued as before
        assert text.status_code == 202, text.text
        with runtime.session_factory() as session:
            assert session.get(Message, uuid.UUID(text.json()["id"])).integration_id == tenant.integration_id
        answer = send(client, headers, whatsapp_template={"name": "x"})
        assert error_code(answer) == "whatsapp_template_unsupported"


class TestTemplateMappings:
    def test_a_hub_template_maps_to_a_whatsapp_template_filled_from_data(self, client, runtime, clinic, headers):
        from hub.whatsapp import service as whatsapp

        path = "/v1/integrations/whatsapp_cloud/template-mappings/appointment-reminder"
        mapping = {"whatsapp_name": "appointment_reminder", "parameters": ["customer_name", "appointment_at"]}
        assert client.put(path, headers=headers, json=mapping).status_code == 200
        assert client.put(path, headers=headers, json={**mapping, "language": "pt_BR"}).json()["language"] == "pt_BR"
        listed = client.get("/v1/integrations/whatsapp_cloud/template-mappings", headers=headers).json()["data"]
        assert [(m["template"], m["whatsapp_name"], m["parameters"]) for m in listed] == [
            ("appointment-reminder", "appointment_reminder", ["customer_name", "appointment_at"])]

        add_template(runtime, clinic, "appointment_reminder")
        with runtime.session_factory() as session:
            request = whatsapp.mapped_template(session, tenant_id=clinic.tenant_id, template="appointment-reminder",
                                               data={"customer_name": "Maria", "appointment_at": "25/11 14h"})
            assert request == whatsapp.TemplateRequest("appointment_reminder", "pt_BR", ("Maria", "25/11 14h"))
            resolved = whatsapp.resolve_template(session, tenant_id=clinic.tenant_id,
                                                 integration_id=clinic.integration_id, request=request)
            assert resolved.text == "Olá Maria, sua consulta é em 25/11 14h."
            with pytest.raises(whatsapp.WhatsAppRefused) as refused:
                whatsapp.mapped_template(session, tenant_id=clinic.tenant_id, template="appointment-reminder",
                                         data={"customer_name": "Maria"})
            assert refused.value.code == "whatsapp_template_parameters" and "appointment_at" in refused.value.message
            assert whatsapp.mapped_template(session, tenant_id=clinic.tenant_id, template="welcome", data={}) is None

        other = whatsapp_tenant(runtime, "other")
        other_headers = headers_for(client, runtime, other.tenant_id)
        assert client.get("/v1/integrations/whatsapp_cloud/template-mappings",
                          headers=other_headers).json() == {"data": []}
        assert client.delete(path, headers=other_headers).status_code == 404
        assert client.delete(path, headers=headers).status_code == 204
        assert client.delete(path, headers=headers).status_code == 404

    def test_a_mapping_that_could_never_be_filled_is_refused_on_save(self, client, runtime, clinic, headers):
        path = "/v1/integrations/whatsapp_cloud/template-mappings/appointment-reminder"
        # a data key the hub template does not declare could never resolve
        r = client.put(path, headers=headers, json={"whatsapp_name": "appointment_reminder",
                                                    "parameters": ["customer.name", "when"]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "mapping_parameters_unknown", r.text
        assert "customer.name" in r.json()["error"]["message"] and "when" in r.json()["error"]["message"]
        # the synced WhatsApp template takes two body parameters, not one
        add_template(runtime, clinic, "appointment_reminder")
        r = client.put(path, headers=headers, json={"whatsapp_name": "appointment_reminder",
                                                    "parameters": ["customer_name"]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "mapping_parameters_count", r.text
        # an unknown hub template
        r = client.put("/v1/integrations/whatsapp_cloud/template-mappings/no-such-template", headers=headers,
                       json={"whatsapp_name": "appointment_reminder"})
        assert r.status_code == 404
        assert client.get("/v1/integrations/whatsapp_cloud/template-mappings", headers=headers).json() == {"data": []}

    def test_bad_mappings_and_missing_scopes_are_refused(self, client, runtime, clinic):
        path = "/v1/integrations/whatsapp_cloud/template-mappings/welcome"
        reader = headers_for(client, runtime, clinic.tenant_id, scopes=["integrations:read"])
        assert client.put(path, headers=reader, json={"whatsapp_name": "w"}).status_code == 403
        assert client.post("/v1/integrations/whatsapp_cloud/templates/sync", headers=reader).status_code == 403
        writer = headers_for(client, runtime, clinic.tenant_id, scopes=["integrations:write"])
        assert client.put(path, headers=writer, json={"whatsapp_name": ""}).status_code == 422
        assert client.put(path, headers=writer, json={"whatsapp_name": "w", "language": "pt-BR"}).status_code == 422
        assert client.put("/v1/integrations/whatsapp_cloud/template-mappings/Bad Name", headers=writer,
                          json={"whatsapp_name": "w"}).status_code == 422
