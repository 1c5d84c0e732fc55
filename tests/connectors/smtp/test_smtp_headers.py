"""Issue 18, item 1 at the connector: no header value the composer writes — subject, From
display name, Reply-To, extra headers — can become another header, however it is spelled
(literal, q- or b-encoded, nested). Sent to a real aiosmtpd relay: refused for good, and the
relay receives nothing."""

from __future__ import annotations

import base64

import pytest
from smtp_support import create_connector

from connectors.base import OutboundMessage, PermanentProviderError
from connectors.smtp.compose import compose_email, verify_generated_headers
from connectors.smtp.headers import header_text_problem

EVIL = "evil@evil.example"
Q = "=?utf-8?q?Hi=0D=0ABcc:_evil@evil.example?="
B = "=?utf-8?b?" + base64.b64encode(b"Hi\r\nContent-Type: text/html\r\n\r\n<b>pay here</b>").decode() + "?="
NESTED = "=?utf-8?q?" + Q.replace("=", "=3D").replace("?", "=3F").replace("_", "=5F") + "?="
FROM_Q = "=?utf-8?q?Cl=C3=ADnica=0D=0AFrom:_evil@evil.example?="
FROM_B = "=?utf-8?b?" + base64.b64encode(b"X\r\nBcc: e@e.example").decode() + "?="


def message(**fields) -> OutboundMessage:
    return OutboundMessage(**{"channel": "email", "to": "maria@cliente.example.com", "body": "Olá",
                              "subject": "Consulta", **fields})


def refused(connector, outbound: OutboundMessage) -> PermanentProviderError:
    with pytest.raises(PermanentProviderError) as raised:
        connector.send(outbound)
    return raised.value


class TestRefused:
    @pytest.mark.parametrize("subject", [Q, B, NESTED, "Hi\r\nBcc: " + EVIL, "Hi\u2028Bcc: x", "=?utf-8?q?a=00b?="])
    def test_subject(self, relay, subject):
        error = refused(create_connector(relay.port), message(subject=subject))
        assert error.code == "invalid_header" and "'Subject'" in error.message
        assert relay.handler.envelopes == []

    @pytest.mark.parametrize("name", [FROM_Q, FROM_B])
    def test_from_display_name_stored_before_the_check(self, relay, name):
        connector = create_connector(relay.port)
        # as a row saved before the credentials validator existed would hold it
        connector.credentials = connector.credentials.model_copy(update={"from_name": name})
        assert refused(connector, message()).code == "invalid_header"
        assert relay.handler.envelopes == []

    def test_reply_to(self, relay):
        error = refused(create_connector(relay.port), message(reply_to=f"=?utf-8?q?a=0D=0ABcc:_{EVIL}?= <a@x.example>"))
        assert error.code in {"invalid_header", "invalid_address"}
        assert relay.handler.envelopes == []

    def test_extra_header(self, relay):
        headers = {"List-Unsubscribe": f"<https://acme.example/sair/{Q}>"}
        assert refused(create_connector(relay.port), message(headers=headers)).code == "invalid_header"
        assert relay.handler.envelopes == []

    def test_a_header_name_outside_rfc_5322(self, relay):
        assert refused(create_connector(relay.port), message(headers={"X-Tag\u00e9": "x"})).code == "invalid_header"


class TestDelivered:
    def test_a_harmless_encoded_word_arrives_as_one_header(self, relay):
        create_connector(relay.port).send(message(subject=f"=?utf-8?q?Ol=C3=A1?= Bcc: {EVIL}"))
        [received] = relay.handler.messages()
        assert received["Subject"] == f"Olá Bcc: {EVIL}"
        assert len(received.get_all("From")) == 1 and len(received.get_all("Content-Type")) == 1
        assert received.get_all("Bcc") is None and received.get_all("Reply-To") is None
        assert str(received["From"]) == "Clínica Sorriso <agenda@clinica-sorriso.com.br>"


class TestLastLineOfDefence:
    def test_a_value_that_slipped_past_the_checks_is_caught_in_the_generated_message(self):
        email = compose_email(message(), from_address="a@x.example", from_name=None, message_id="<1@x.example>")
        # the email package decodes encoded-words when a header is set and writes them raw
        email.replace_header("Subject", Q)
        with pytest.raises(PermanentProviderError, match="bcc"):
            verify_generated_headers(email)


class TestHeaderText:
    @pytest.mark.parametrize("value", ["Consulta amanhã", "=?utf-8?q?Ol=C3=A1?=", "a\tb", "Pedido 7 Bcc: x"])
    def test_fine(self, value):
        assert header_text_problem(value) is None

    def test_says_what_is_wrong(self):
        assert header_text_problem(Q) == "contains a line break once its RFC 2047 encoded-words are decoded"
        assert header_text_problem("a\rb") == "contains a line break"
