"""Listing message templates with Graph paging."""

from __future__ import annotations

import httpx
import pytest
from whatsapp_cloud_support import WABA_ID

from connectors.base import PermanentProviderError
from connectors.sandbox.meta import MetaSandbox
from connectors.whatsapp_cloud import ProviderTemplate, WhatsAppCloudConnector
from connectors.whatsapp_cloud.templates import body_parameter_count


def create_template(name: str, *, body: str, language: str = "pt_BR", status: str = "APPROVED") -> dict:
    return {
        "name": name,
        "language": language,
        "status": status,
        "category": "UTILITY",
        "components": [{"type": "HEADER", "format": "TEXT", "text": "Clínica {{1}}"}, {"type": "BODY", "text": body}],
    }


STORE = [
    create_template("confirmacao", body="Olá {{1}}, confirma {{2}} às {{3}}?"),
    create_template("lembrete", body="{{1}}, sua consulta é amanhã."),
    create_template("lembrete", body="{{1}}, your appointment is tomorrow.", language="en_US"),
    create_template("boas_vindas", body="Bem-vindo!", status="PENDING"),
    create_template("repetido", body="{{1}} e {{1}} de novo, e {{2}}"),
]


class TestListMessageTemplates:
    def test_all_pages_are_followed(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        sandbox.set_templates(STORE, waba_id=WABA_ID)
        templates = connector.list_message_templates(page_size=2)
        assert [(t.name, t.language, t.status) for t in templates] == [
            ("confirmacao", "pt_BR", "APPROVED"),
            ("lembrete", "pt_BR", "APPROVED"),
            ("lembrete", "en_US", "APPROVED"),
            ("boas_vindas", "pt_BR", "PENDING"),
            ("repetido", "pt_BR", "APPROVED"),
        ]
        assert [t.body_parameter_count for t in templates] == [3, 1, 1, 0, 2]
        assert all(isinstance(t, ProviderTemplate) and t.category == "UTILITY" for t in templates)
        assert templates[0].components[1] == {"type": "BODY", "text": "Olá {{1}}, confirma {{2}} às {{3}}?"}
        assert templates[0].provider_template_id

    def test_sandbox_pages_like_graph(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox, meta_server):
        sandbox.set_templates(STORE, waba_id=WABA_ID)
        headers = {"Authorization": "Bearer t"}
        url = f"{meta_server.url}/v21.0/{WABA_ID}/message_templates"
        first = httpx.get(url, params={"limit": 3}, headers=headers).json()
        assert len(first["data"]) == 3 and "next" in first["paging"]
        last = httpx.get(first["paging"]["next"], headers=headers).json()
        assert [t["name"] for t in last["data"]] == ["boas_vindas", "repetido"]
        assert "next" not in last["paging"]  # the end: Graph omits ``next``

    def test_other_accounts_fall_back_to_the_default_store(self, connector: WhatsAppCloudConnector):
        names = {(t.name, t.language) for t in connector.list_message_templates()}
        assert ("hello_world", "en_US") in names and ("appointment_reminder", "pt_BR") in names

    def test_more_pages_than_allowed_is_an_error(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        sandbox.set_templates(STORE, waba_id=WABA_ID)
        # one page per template; a max_pages below that is an explicit failure, not a silent cut
        with pytest.raises(PermanentProviderError):
            connector.list_message_templates(page_size=1, max_pages=3)

    def test_missing_token_is_refused(self, sandbox: MetaSandbox, meta_server):
        answer = httpx.get(f"{meta_server.url}/v21.0/{WABA_ID}/message_templates")
        assert answer.status_code == 401 and answer.json()["error"]["code"] == 2500


class TestBodyParameterCount:
    @pytest.mark.parametrize(
        ("text", "count"),
        [("Sem variáveis", 0), ("{{1}} {{2}}", 2), ("{{ 1 }} e {{1}}", 1), ("Olá {{first_name}}, {{date}}", 2)],
    )
    def test_distinct_placeholders_of_the_body(self, text: str, count: int):
        assert body_parameter_count([{"type": "HEADER", "text": "{{9}}"}, {"type": "BODY", "text": text}]) == count
