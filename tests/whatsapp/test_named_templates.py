"""NAMED WhatsApp templates (``{{first_name}}``, parameter_format NAMED): each body
parameter goes with its ``parameter_name``, which Meta requires; POSITIONAL ones
(``{{1}}``) by position alone (issue 10)."""

from __future__ import annotations

import httpx

from connectors.base import OutboundMessage
from connectors.whatsapp_cloud.templates import body_parameter_names
from tests.whatsapp.test_whatsapp_live import WABA_ID, clinic, hub, wait_status  # noqa: F401 - fixtures

NAMED = {"name": "lembrete_consulta", "language": "pt_BR", "status": "APPROVED", "category": "UTILITY",
         "parameter_format": "NAMED",
         "components": [{"type": "BODY", "text": "Olá {{first_name}}, sua consulta é {{when}}. Até {{first_name}}!"}]}


def test_names_come_from_the_body_in_order():
    assert body_parameter_names(NAMED["components"]) == ("first_name", "when")
    assert body_parameter_names([{"type": "BODY", "text": "Olá {{1}}, {{2}}"}]) == ()


def test_a_named_template_is_sent_with_its_parameter_names(hub, clinic):  # noqa: F811
    tenant_id, headers, phone_number_id = clinic
    hub.sandbox.meta.set_templates([NAMED], waba_id=WABA_ID)
    assert hub.http.post("/v1/integrations/whatsapp_cloud/templates/sync", headers=headers).status_code == 200

    sent = hub.http.post("/v1/messages", headers=headers, json={
        "channel": "whatsapp", "to": "5511987651234",
        "whatsapp_template": {"name": "lembrete_consulta", "parameters": ["Maria", "amanhã às 14h"]}})
    assert sent.status_code == 202, sent.text
    done = wait_status(hub, headers, sent.json()["id"], "read")
    assert done["body"] == "Olá Maria, sua consulta é amanhã às 14h. Até Maria!"
    [payload] = [m.payload for m in hub.sandbox.meta.sent_messages(phone_number_id)]
    assert payload["template"]["components"] == [{"type": "body", "parameters": [
        {"type": "text", "parameter_name": "first_name", "text": "Maria"},
        {"type": "text", "parameter_name": "when", "text": "amanhã às 14h"}]}]


def test_the_sandbox_refuses_a_named_template_sent_by_position(hub, clinic):  # noqa: F811
    _, _, phone_number_id = clinic
    hub.sandbox.meta.set_templates([NAMED], waba_id=WABA_ID)
    body = {"messaging_product": "whatsapp", "to": "5511987651234", "type": "template", "template": {
        "name": "lembrete_consulta", "language": {"code": "pt_BR"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Maria"},
                                                       {"type": "text", "text": "amanhã"}]}]}}
    answer = httpx.post(f"{hub.sandbox_url}/{hub.runtime.settings.whatsapp_graph_version}/{phone_number_id}/messages",
                        json=body, headers={"Authorization": "Bearer anything"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 132000, answer.text
    assert OutboundMessage(channel="whatsapp", to="x").template_parameter_names == ()
