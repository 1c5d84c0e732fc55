"""The SMTP connector against real aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from smtp_support import FROM_ADDRESS, PASSWORD, USERNAME, create_connector

from connectors.base import (
    OutboundMessage,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    WebhookRequest,
)
from connectors.registry import load_registry
from connectors.sandbox.server import free_port
from connectors.smtp import SmtpConnector, SmtpCredentials

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

PATIENT = "ana.souza@example.com"


def create_email(**overrides) -> OutboundMessage:
    values = {
        "channel": "email",
        "to": PATIENT,
        "subject": "Confirmação da sua consulta",
        "body": "Olá Ana,\nsua consulta é amanhã às 9h.",
        "html": "<p>Olá Ana,</p><p>sua consulta é <b>amanhã às 9h</b>.</p>",
    }
    return OutboundMessage(**(values | overrides))


def unix(text: str) -> str:
    """Parts come back with the wire's CRLF line ends."""
    return text.replace("\r\n", "\n")


def send_error(connector: SmtpConnector, message: OutboundMessage | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        connector.send(message or create_email())
    return caught.value


class TestSend:
    def test_multipart_alternative_with_both_parts(self, relay):
        result = create_connector(relay.port).send(create_email())
        [envelope] = relay.handler.envelopes
        assert envelope.mail_from == FROM_ADDRESS
        assert envelope.rcpt_tos == [PATIENT]
        [message] = relay.handler.messages()
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert unix(text.get_content()) == "Olá Ana,\nsua consulta é amanhã às 9h.\n"
        assert unix(html.get_content()) == "<p>Olá Ana,</p><p>sua consulta é <b>amanhã às 9h</b>.</p>\n"
        assert message["Subject"] == "Confirmação da sua consulta"
        assert message["From"].addresses[0].display_name == "Clínica Sorriso"
        assert message["From"].addresses[0].addr_spec == FROM_ADDRESS
        assert message["To"] == PATIENT
        assert message["Date"]
        assert result.status == "sent"

    def test_message_id_is_ours_and_returned(self, relay):
        result = create_connector(relay.port).send(create_email())
        [message] = relay.handler.messages()
        assert message["Message-ID"] == result.provider_message_id
        assert result.provider_message_id.endswith("@clinica-sorriso.com.br>")

    def test_idempotency_key_gives_a_stable_message_id(self, relay):
        connector = create_connector(relay.port)
        first = connector.send(create_email(idempotency_key="msg-1"))
        again = connector.send(create_email(idempotency_key="msg-1"))
        other = connector.send(create_email(idempotency_key="msg-2"))
        fresh = {connector.send(create_email()).provider_message_id for _ in range(2)}
        assert first.provider_message_id == again.provider_message_id != other.provider_message_id
        assert len(fresh) == 2

    def test_reply_to_unsubscribe_and_extra_headers(self, relay):
        create_connector(relay.port).send(
            create_email(
                reply_to="recepcao@clinica-sorriso.com.br",
                headers={
                    "List-Unsubscribe": "<https://hub.example/u/abc123>, <mailto:unsub@clinica-sorriso.com.br>",
                    "X-Hub-Message": "msg-77",
                },
            )
        )
        [message] = relay.handler.messages()
        assert message["Reply-To"] == "recepcao@clinica-sorriso.com.br"
        # a long header may be folded right after the colon; unfolding leaves a leading space
        assert (
            message["List-Unsubscribe"].strip()
            == "<https://hub.example/u/abc123>, <mailto:unsub@clinica-sorriso.com.br>"
        )
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["X-Hub-Message"] == "msg-77"

    def test_mailto_only_unsubscribe_gets_no_one_click_header(self, relay):
        create_connector(relay.port).send(create_email(headers={"List-Unsubscribe": "<mailto:u@x.example>"}))
        [message] = relay.handler.messages()
        assert message["List-Unsubscribe-Post"] is None

    def test_text_only(self, relay):
        create_connector(relay.port).send(create_email(html=None))
        [message] = relay.handler.messages()
        assert message.get_content_type() == "text/plain"
        assert "amanhã às 9h" in message.get_content()

    def test_html_only_gets_a_text_part_derived_from_it(self, relay):
        create_connector(relay.port).send(
            create_email(body="", html="<style>p{}</style><p>Olá&nbsp;Ana</p><p>Até <b>amanhã</b></p>")
        )
        [message] = relay.handler.messages()
        assert message.get_content_type() == "multipart/alternative"
        assert unix(message.get_body(("plain",)).get_content()) == "Olá Ana\nAté amanhã\n"

    def test_media_urls_become_links_in_the_text(self, relay):
        create_connector(relay.port).send(create_email(html=None, media_urls=["https://cdn.example/laudo.pdf"]))
        [message] = relay.handler.messages()
        assert message.get_content().rstrip().endswith("https://cdn.example/laudo.pdf")

    @pytest.mark.parametrize(
        "headers",
        [
            {"X-Evil": "a\r\nBcc: all@example.com"},
            {"Bad Name": "x"},
            {"From": "ceo@bank.example"},
            {"message-id": "<x@y>"},
        ],
    )
    def test_unsafe_or_reserved_headers_are_refused_before_sending(self, relay, headers):
        error = send_error(create_connector(relay.port), create_email(headers=headers))
        assert isinstance(error, PermanentProviderError)
        assert relay.handler.envelopes == []

    @pytest.mark.parametrize("to", ["not-an-address", "a@x.example, b@y.example"])
    def test_recipient_must_be_one_address(self, relay, to):
        error = send_error(create_connector(relay.port), create_email(to=to))
        assert isinstance(error, PermanentProviderError) and error.code == "invalid_address"
        assert relay.handler.envelopes == []

    def test_wrong_channel_is_refused(self, relay):
        assert isinstance(send_error(create_connector(relay.port), create_email(channel="sms")), PermanentProviderError)


class TestAuth:
    def test_login_then_send(self, auth_relay):
        connector = create_connector(auth_relay.port, username=USERNAME, password=PASSWORD)
        connector.send(create_email())
        assert len(auth_relay.handler.envelopes) == 1

    def test_wrong_password_is_permanent_535(self, auth_relay):
        connector = create_connector(auth_relay.port, username=USERNAME, password="wrong")
        error = send_error(connector)
        assert isinstance(error, PermanentProviderError) and error.code == "535"

    def test_no_login_where_auth_is_required_is_permanent_530(self, auth_relay):
        error = send_error(create_connector(auth_relay.port))
        assert isinstance(error, PermanentProviderError) and error.code == "530"


class TestErrorMapping:
    def test_451_greylisting_is_transient(self, busy_relay):
        error = send_error(create_connector(busy_relay.port))
        assert isinstance(error, TransientProviderError) and error.code == "451"
        assert "Greylisted" in error.message

    def test_550_unknown_user_is_permanent(self, rejecting_relay):
        error = send_error(create_connector(rejecting_relay.port))
        assert isinstance(error, PermanentProviderError) and error.code == "550"
        assert rejecting_relay.handler.envelopes == []

    def test_refused_connection_is_transient(self):
        error = send_error(create_connector(free_port(), timeout=1))
        assert isinstance(error, TransientProviderError) and error.code == "connection_error"

    def test_silent_server_is_transient_and_answers_like_a_closed_port(self, silent_port: int):
        # an open port that never greets (Redis, say) must not read differently from a closed
        # one: that difference was an oracle for scanning the hub's network (issue 18)
        error = send_error(create_connector(silent_port, timeout=0.3))
        assert isinstance(error, TransientProviderError) and error.code == "connection_error"
        assert error.message == f"could not connect to the SMTP server 127.0.0.1:{silent_port}"

    def test_starttls_on_a_server_without_it_is_permanent(self, relay):
        error = send_error(create_connector(relay.port, security="starttls"))
        assert isinstance(error, PermanentProviderError) and error.code == "not_supported"
        assert relay.handler.envelopes == []


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections (the kernel backlog) but never greets."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield listener.getsockname()[1]


class TestCheck:
    def test_noop_against_a_live_relay(self, relay):
        health = create_connector(relay.port).check()
        assert health.ok and health.detail.startswith("250")

    def test_login_is_part_of_the_check(self, auth_relay):
        assert create_connector(auth_relay.port, username=USERNAME, password=PASSWORD).check().ok
        health = create_connector(auth_relay.port, username=USERNAME, password="wrong").check()
        assert not health.ok and health.detail.startswith("535")

    def test_unreachable_relay(self):
        health = create_connector(free_port(), timeout=1).check()
        assert not health.ok and health.detail.startswith("connection_error")


class TestContract:
    def test_registered_and_without_webhooks(self):
        assert load_registry(include_entry_points=False).get("smtp") is SmtpConnector
        assert SmtpConnector.webhook_secret_field is None and SmtpConnector.event_types == frozenset()
        request = WebhookRequest(method="POST", url="https://hub.example/webhooks/smtp", headers={}, body=b"{}")
        assert SmtpConnector.route_keys(request) == []
        assert SmtpConnector.verify(request, "anything") is False
        assert SmtpConnector.parse(request) == []

    def test_credentials_validate_on_write(self):
        with pytest.raises(ValidationError):
            SmtpCredentials(host="smtp.example", from_address="Clínica <agenda@x.example>")
        with pytest.raises(ValidationError):
            SmtpCredentials(host="smtp.example", from_address="a@x.example", security="ssl")
        schema = SmtpCredentials.model_json_schema()
        assert schema["properties"]["password"]["anyOf"][0]["format"] == "password"
