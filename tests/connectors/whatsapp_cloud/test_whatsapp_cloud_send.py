"""Sending through the Graph API: the real connector against the Meta sandbox over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
from whatsapp_cloud_support import ACCESS_TOKEN, PHONE_NUMBER_ID, WABA_ID, create_credentials

from connectors.base import OutboundMessage, PermanentProviderError, ProviderError, TransientProviderError
from connectors.sandbox.meta import MetaSandbox
from connectors.whatsapp_cloud import WhatsAppCloudConnector
from connectors.whatsapp_cloud.errors import provider_error_from_response

CUSTOMER = "+55 11 98765-4321"
CUSTOMER_WA_ID = "5511987654321"


def create_message(**overrides) -> OutboundMessage:
    return OutboundMessage(
        **({"channel": "whatsapp", "to": CUSTOMER, "body": "Sua consulta é amanhã às 9h."} | overrides)
    )


def send_error(connector: WhatsAppCloudConnector, message: OutboundMessage | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        connector.send(message or create_message())
    return caught.value


class TestSendText:
    def test_text_is_posted_with_bearer_token_and_answered_with_a_wamid(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox
    ):
        result = connector.send(create_message())
        assert result.provider_message_id.startswith("wamid.")
        assert result.status == "accepted"
        assert result.raw["contacts"] == [{"input": CUSTOMER_WA_ID, "wa_id": CUSTOMER_WA_ID}]
        [sent] = sandbox.sent_messages(PHONE_NUMBER_ID)
        assert sent.message_id == result.provider_message_id
        assert sent.payload == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER_WA_ID,
            "type": "text",
            "text": {"preview_url": False, "body": "Sua consulta é amanhã às 9h."},
        }
        assert sent.access_token == ACCESS_TOKEN
        assert sandbox.token_for(PHONE_NUMBER_ID) == ACCESS_TOKEN

    def test_api_version_comes_from_config(self, sandbox: MetaSandbox, meta_server):
        connector = WhatsAppCloudConnector(
            credentials=create_credentials(), config={"api_version": "v19.0"}, base_url=meta_server.url
        )
        assert connector.send(create_message()).provider_message_id
        assert connector.settings.api_version == "v19.0"

    def test_idempotency_key_travels_as_callback_data(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        connector.send(create_message(idempotency_key="msg-7f3a"))
        assert sandbox.sent_messages()[0].payload["biz_opaque_callback_data"] == "msg-7f3a"


class TestSendMedia:
    def test_image_by_link_with_caption(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        connector.send(create_message(body="Seu exame", media_urls=["https://cdn.example/exames/raio-x.JPG"]))
        payload = sandbox.sent_messages()[0].payload
        assert payload["type"] == "image"
        assert payload["image"] == {"link": "https://cdn.example/exames/raio-x.JPG", "caption": "Seu exame"}

    def test_other_files_go_as_documents_with_their_file_name(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox
    ):
        connector.send(create_message(body="Recibo", media_urls=["https://cdn.example/recibos/2024-05.pdf?sig=abc"]))
        payload = sandbox.sent_messages()[0].payload
        assert payload["type"] == "document"
        assert payload["document"] == {
            "link": "https://cdn.example/recibos/2024-05.pdf?sig=abc",
            "caption": "Recibo",
            "filename": "2024-05.pdf",
        }

    def test_two_media_files_are_refused_before_calling_meta(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox
    ):
        error = send_error(connector, create_message(media_urls=["https://a.example/1.png", "https://a.example/2.png"]))
        assert isinstance(error, PermanentProviderError)
        assert sandbox.sent_messages() == []


class TestSendTemplate:
    def test_approved_template_with_body_parameters(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        result = connector.send(
            create_message(
                template_name="appointment_reminder",
                template_language="pt_BR",
                template_parameters=["Ana", "12/05 às 9h"],
            )
        )
        assert result.status == "accepted"
        payload = sandbox.sent_messages()[0].payload
        assert payload["type"] == "template"
        assert payload["template"] == {
            "name": "appointment_reminder",
            "language": {"code": "pt_BR"},
            "components": [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "12/05 às 9h"}],
                }
            ],
        }

    def test_language_defaults_to_the_configured_one(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        connector.send(create_message(template_name="appointment_reminder", template_parameters=["Ana", "amanhã"]))
        assert sandbox.sent_messages()[0].payload["template"]["language"] == {"code": "pt_BR"}

    def test_template_without_parameters_omits_components(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox
    ):
        connector.send(create_message(template_name="hello_world", template_language="en_US"))
        assert "components" not in sandbox.sent_messages()[0].payload["template"]

    def test_wrong_parameter_count_is_132000(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        error = send_error(connector, create_message(template_name="appointment_reminder", template_parameters=["Ana"]))
        assert isinstance(error, PermanentProviderError)
        assert (error.code, error.status) == ("132000", 400)
        assert "localizable_params (1)" in error.message
        assert sandbox.sent_messages() == []

    def test_unknown_template_or_language_is_132001(self, connector: WhatsAppCloudConnector):
        for name, language in (("no_such_template", "pt_BR"), ("appointment_reminder", "es_ES")):
            error = send_error(connector, create_message(template_name=name, template_language=language))
            assert isinstance(error, PermanentProviderError)
            assert (error.code, error.status) == ("132001", 404)

    @pytest.mark.parametrize(("status", "code"), [("PENDING", "132001"), ("PAUSED", "132015"), ("DISABLED", "132016")])
    def test_templates_not_approved_are_refused(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox, status: str, code: str
    ):
        sandbox.set_templates(
            [
                {
                    "name": "promo",
                    "language": "pt_BR",
                    "status": status,
                    "category": "MARKETING",
                    "components": [{"type": "BODY", "text": "Oferta"}],
                }
            ],
            waba_id=WABA_ID,
        )
        error = send_error(connector, create_message(template_name="promo"))
        assert isinstance(error, PermanentProviderError) and error.code == code


class TestErrorMapping:
    @pytest.mark.parametrize("code", ["131026", "131047"])
    def test_undeliverable_and_closed_window_are_permanent(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox, code: str
    ):
        sandbox.inject_failure(code, to=CUSTOMER)
        error = send_error(connector)
        assert isinstance(error, PermanentProviderError)
        assert (error.code, error.status) == (code, 400)

    def test_throughput_limit_is_transient_on_http_400_as_meta_sends_it(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox
    ):
        sandbox.inject_failure("130429")
        error = send_error(connector)
        assert isinstance(error, TransientProviderError)
        assert (error.code, error.status, error.retry_after) == ("130429", 400, None)

    def test_rate_limit_on_http_429_honours_retry_after(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        sandbox.inject_failure("130429", http_status=429, retry_after=7)
        error = send_error(connector)
        assert isinstance(error, TransientProviderError)
        assert (error.code, error.status, error.retry_after) == ("130429", 429, 7.0)

    def test_pair_rate_limit_is_transient(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        sandbox.inject_failure("131056", to=CUSTOMER, retry_after=6)
        error = send_error(connector)
        assert isinstance(error, TransientProviderError)
        assert (error.code, error.retry_after) == ("131056", 6.0)

    @pytest.mark.parametrize(("http_status", "code"), [(None, "131000"), (503, "131016")])
    def test_server_errors_are_transient(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox, http_status, code
    ):
        sandbox.inject_failure("5xx", http_status=http_status)
        error = send_error(connector)
        assert isinstance(error, TransientProviderError)
        assert error.code == code and error.status >= 500

    def test_timeout_is_transient_and_meta_may_still_deliver(self, sandbox: MetaSandbox, meta_server):
        connector = WhatsAppCloudConnector(credentials=create_credentials(), base_url=meta_server.url, timeout=0.2)
        sandbox.inject_failure("timeout", delay=0.6, count=1)
        error = send_error(connector)
        assert isinstance(error, TransientProviderError) and error.code == "timeout"
        # the held request completes on the provider side: the reason retries need care
        deadline = time.monotonic() + 3
        while not sandbox.sent_messages() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sandbox.sent_messages()) == 1

    def test_unreachable_graph_is_transient(self):
        connector = WhatsAppCloudConnector(credentials=create_credentials(), base_url="http://127.0.0.1:9", timeout=1)
        error = send_error(connector)
        assert isinstance(error, TransientProviderError) and error.code == "connection_error"

    def test_failure_count_then_recovery(self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox):
        sandbox.inject_failure("130429", count=2)
        assert isinstance(send_error(connector), TransientProviderError)
        assert isinstance(send_error(connector), TransientProviderError)
        assert connector.send(create_message()).provider_message_id

    def test_failure_for_one_recipient_leaves_others_alone(
        self, connector: WhatsAppCloudConnector, sandbox: MetaSandbox
    ):
        sandbox.inject_failure("131026", to="+5511912345678")
        assert connector.send(create_message()).provider_message_id
        assert send_error(connector, create_message(to="+55 11 91234-5678")).code == "131026"

    def test_invalid_parameter_is_permanent_100(self, connector: WhatsAppCloudConnector):
        error = send_error(connector, create_message(to="whatsapp:"))
        assert isinstance(error, PermanentProviderError)  # refused before the call: no digits
        with httpx.Client(base_url=connector.base_url) as client:
            answer = client.post(
                f"/v21.0/{PHONE_NUMBER_ID}/messages",
                headers={"Authorization": "Bearer x"},
                json={"messaging_product": "whatsapp", "to": CUSTOMER_WA_ID, "type": "text", "text": {}},
            )
        mapped = provider_error_from_response(answer)
        assert isinstance(mapped, PermanentProviderError) and (mapped.code, mapped.status) == ("100", 400)

    def test_pinned_token_mismatch_is_permanent_190(self, sandbox: MetaSandbox, meta_server):
        sandbox.configure(PHONE_NUMBER_ID, None, "secret", waba_id=WABA_ID, access_token="the-real-token")
        connector = WhatsAppCloudConnector(credentials=create_credentials(), base_url=meta_server.url)
        error = send_error(connector)
        assert isinstance(error, PermanentProviderError) and (error.code, error.status) == ("190", 401)

    def test_wrong_channel_is_refused(self, connector: WhatsAppCloudConnector):
        assert isinstance(send_error(connector, create_message(channel="sms")), PermanentProviderError)


class TestGraphErrorBodies:
    """Answers the sandbox does not produce: a proxy page, an unknown code, an HTTP-date."""

    def test_html_502_from_a_proxy_is_transient_without_code(self):
        error = provider_error_from_response(httpx.Response(502, text="<html>Bad gateway</html>"))
        assert isinstance(error, TransientProviderError) and error.code is None

    def test_unknown_code_follows_is_transient_then_status(self):
        flagged = httpx.Response(400, json={"error": {"message": "x", "code": 999999, "is_transient": True}})
        plain = httpx.Response(400, json={"error": {"message": "x", "code": 999999}})
        assert isinstance(provider_error_from_response(flagged), TransientProviderError)
        assert isinstance(provider_error_from_response(plain), PermanentProviderError)

    def test_retry_after_as_http_date(self):
        later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
        answer = httpx.Response(
            429, headers={"Retry-After": later}, json={"error": {"message": "slow down", "code": 130429}}
        )
        assert 100 < provider_error_from_response(answer).retry_after <= 120


class TestCheck:
    def test_check_reads_the_phone_number(self, connector: WhatsAppCloudConnector):
        health = connector.check()
        assert health.ok and "15550783881" in health.detail

    def test_check_fails_with_a_revoked_token(self, sandbox: MetaSandbox, meta_server):
        sandbox.configure(PHONE_NUMBER_ID, None, "secret", waba_id=WABA_ID, access_token="rotated")
        connector = WhatsAppCloudConnector(credentials=create_credentials(), base_url=meta_server.url)
        health = connector.check()
        assert not health.ok and health.detail.startswith("190")
