"""Sending through the real twilio SDK against the sandbox: results, status callbacks
signed like Twilio's, and every injected failure mapped to the right error."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from twilio.request_validator import RequestValidator

from connectors.base import (
    MESSAGE_STATUS,
    OutboundMessage,
    PermanentProviderError,
    TransientProviderError,
)
from connectors.sandbox.server import free_port
from connectors.twilio import TwilioConnector

if TYPE_CHECKING:  # fixtures' types only: conftest is pytest's to import
    from conftest import ConnectorFactory, Sandbox, Tenant, WebhookReceiver

CUSTOMER = "+5521987654321"
OTHER_CUSTOMER = "+5531988887777"
SERVICE = "MG" + "ab" * 16


def sms(to: str = CUSTOMER, **fields) -> OutboundMessage:
    return OutboundMessage(channel="sms", to=to, body=fields.pop("body", "Sua consulta é amanhã às 14h."), **fields)


def statuses_of(receiver: WebhookReceiver, message_sid: str, count: int) -> list[str]:
    hits = receiver.wait_for(count, where=lambda r: r.form.get("MessageSid") == message_sid)
    return [hit.form["MessageStatus"] for hit in hits]


class TestSend:
    def test_sms_is_created_from_the_configured_number(self, tenant: Tenant, sandbox: Sandbox) -> None:
        result = tenant.connector.send(sms(media_urls=["https://cdn.example.com/receita.pdf"]))
        assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
        assert result.status == "queued"
        assert result.raw["from"] == tenant.number
        [created] = sandbox.state.sent_messages(to=CUSTOMER)
        assert created["sid"] == result.provider_message_id
        assert created["account_sid"] == tenant.sid
        assert created["from"] == tenant.number
        assert created["body"] == "Sua consulta é amanhã às 14h."
        assert created["num_media"] == "1"

    def test_whatsapp_gets_the_channel_prefix_on_both_ends(self, tenant: Tenant, sandbox: Sandbox) -> None:
        tenant.connector.send(OutboundMessage(channel="whatsapp", to=CUSTOMER, body="Olá"))
        [created] = sandbox.state.sent_messages(to=CUSTOMER)
        assert created["to"] == f"whatsapp:{CUSTOMER}"
        assert created["from"] == f"whatsapp:{tenant.number}"

    def test_whatsapp_template_goes_as_content_sid(self, tenant: Tenant, sandbox: Sandbox) -> None:
        message = OutboundMessage(
            channel="whatsapp", to=CUSTOMER, template_name="HX" + "0" * 32, template_parameters=["Ana", "14h"]
        )
        result = tenant.connector.send(message)
        assert result.status == "queued"

    def test_channel_not_enabled_is_refused_before_calling(
        self, connector_for: ConnectorFactory, tenant: Tenant, sandbox: Sandbox
    ) -> None:
        sms_only = connector_for(tenant.sid, tenant.token, numbers=[tenant.number], channels=["sms"])
        with pytest.raises(PermanentProviderError, match="not enabled"):
            sms_only.send(OutboundMessage(channel="whatsapp", to=CUSTOMER, body="Olá"))
        with pytest.raises(PermanentProviderError):
            sms_only.send(OutboundMessage(channel="email", to="a@b.c", body="x"))
        assert sandbox.state.sent_messages() == []

    def test_messaging_service_picks_the_sender(
        self, connector_for: ConnectorFactory, tenant: Tenant, sandbox: Sandbox, receiver: WebhookReceiver
    ) -> None:
        pooled = connector_for(tenant.sid, tenant.token, messaging_service_sid=SERVICE)
        result = pooled.send(sms(status_callback=receiver.url("/status")))
        assert result.status == "accepted"
        # Through a service Twilio reports "queued" too, since "accepted" came first.
        assert statuses_of(receiver, result.provider_message_id, 3) == ["queued", "sent", "delivered"]
        first = receiver.received[0]
        assert first.form["MessagingServiceSid"] == SERVICE
        assert TwilioConnector.route_keys(first) == [tenant.number, SERVICE, tenant.sid]


class TestStatusCallbacks:
    def test_delivered_sequence_is_signed_with_the_subaccount_token(
        self, tenant: Tenant, receiver: WebhookReceiver
    ) -> None:
        callback = receiver.url("/webhooks/twilio?message=abc")
        result = tenant.connector.send(sms(status_callback=callback))
        assert statuses_of(receiver, result.provider_message_id, 2) == ["sent", "delivered"]
        for hit in receiver.received:
            assert hit.url == callback
            assert RequestValidator(tenant.token).validate(hit.url, hit.form, hit.headers["x-twilio-signature"])
            assert TwilioConnector.verify(hit, tenant.token)
            assert TwilioConnector.route_keys(hit) == [tenant.number, tenant.sid]
        events = [TwilioConnector.parse(hit)[0] for hit in receiver.received]
        assert [e.type for e in events] == [MESSAGE_STATUS, MESSAGE_STATUS]
        assert events[-1].provider_event_id == f"{result.provider_message_id}:delivered"

    def test_callbacks_do_not_verify_with_the_main_token(
        self, tenant: Tenant, receiver: WebhookReceiver, main_connector: TwilioConnector
    ) -> None:
        tenant.connector.send(sms(status_callback=receiver.url("/s")))
        # "sent" and "delivered" may both be in by the time the first one is seen
        hits = receiver.wait_for(1)
        main_token = main_connector.credentials.auth_token.get_secret_value()
        assert not any(TwilioConnector.verify(hit, main_token) for hit in hits)
        assert all(TwilioConnector.verify(hit, tenant.token) for hit in hits)

    def test_whatsapp_is_also_reported_read(self, tenant: Tenant, receiver: WebhookReceiver) -> None:
        message = OutboundMessage(channel="whatsapp", to=CUSTOMER, body="Oi", status_callback=receiver.url("/s"))
        result = tenant.connector.send(message)
        assert statuses_of(receiver, result.provider_message_id, 3) == ["sent", "delivered", "read"]
        assert receiver.received[0].form["From"] == f"whatsapp:{tenant.number}"

    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            (30003, ["sent", "undelivered"]),
            (30005, ["sent", "undelivered"]),
            (30006, ["sent", "undelivered"]),
            (63016, ["failed"]),  # never left Twilio: no "sent"
        ],
    )
    def test_asynchronous_delivery_failure(
        self, tenant: Tenant, sandbox: Sandbox, receiver: WebhookReceiver, code: int, expected: list[str]
    ) -> None:
        sandbox.state.inject_failure("delivery_error", number=CUSTOMER, code=code)
        result = tenant.connector.send(sms(status_callback=receiver.url("/s")))
        assert result.status == "queued"  # accepted synchronously: the failure comes later
        assert statuses_of(receiver, result.provider_message_id, len(expected)) == expected
        final = receiver.received[-1]
        assert TwilioConnector.verify(final, tenant.token)
        [event] = TwilioConnector.parse(final)
        assert event.data["status"] == expected[-1]
        assert event.data["error_code"] == str(code)
        [stored] = sandbox.state.sent_messages(to=CUSTOMER)
        assert (stored["status"], stored["error_code"]) == (expected[-1], code)

    def test_no_callback_url_still_moves_the_message(self, tenant: Tenant, sandbox: Sandbox) -> None:
        result = tenant.connector.send(sms())
        deadline = time.monotonic() + 3
        while sandbox.state.sent_messages()[0]["status"] != "delivered":
            assert time.monotonic() < deadline, sandbox.state.sent_messages()
            time.sleep(0.01)
        fetched = tenant.connector.client().messages(result.provider_message_id).fetch()
        assert fetched.status == "delivered"


class TestFailures:
    @pytest.mark.parametrize(
        ("kind", "status"), [("http_500", 500), ("http_503", 503)]
    )
    def test_server_errors_are_transient(self, tenant: Tenant, sandbox: Sandbox, kind: str, status: int) -> None:
        sandbox.state.inject_failure(kind, times=1)
        with pytest.raises(TransientProviderError) as caught:
            tenant.connector.send(sms())
        assert caught.value.status == status
        assert not caught.value.permanent
        # the failure was for one request only: the retry goes through
        assert tenant.connector.send(sms()).status == "queued"

    def test_rate_limit_is_transient_with_retry_after(self, tenant: Tenant, sandbox: Sandbox) -> None:
        sandbox.state.inject_failure("http_429", retry_after=7)
        with pytest.raises(TransientProviderError) as caught:
            tenant.connector.send(sms())
        assert (caught.value.status, caught.value.code, caught.value.retry_after) == (429, "20429", 7.0)

    def test_timeout_is_transient(self, connector_for: ConnectorFactory, tenant: Tenant, sandbox: Sandbox) -> None:
        impatient = connector_for(tenant.sid, tenant.token, numbers=[tenant.number], timeout=0.2)
        # the sandbox holds its answer 10 s; a 0.2 s timeout gives up long before that,
        # with room to spare for a loaded machine
        sandbox.state.inject_failure("timeout", delay=10, times=1)
        started = time.monotonic()
        with pytest.raises(TransientProviderError, match="no answer"):
            impatient.send(sms())
        assert time.monotonic() - started < 5  # our timeout, not the sandbox's delay

    def test_connection_refused_is_transient(self, tenant: Tenant) -> None:
        nowhere = TwilioConnector(
            credentials=tenant.connector.credentials,
            config={"numbers": [tenant.number]},
            base_url=f"http://127.0.0.1:{free_port()}",
            timeout=1,
        )
        with pytest.raises(TransientProviderError):
            nowhere.send(sms())

    @pytest.mark.parametrize("code", [21211, 21610, 21614, 21408, 63016])
    def test_twilio_refusals_are_permanent_with_their_code(
        self, tenant: Tenant, sandbox: Sandbox, code: int
    ) -> None:
        sandbox.state.inject_failure("api_error", number=CUSTOMER, code=code)
        with pytest.raises(PermanentProviderError) as caught:
            tenant.connector.send(sms())
        assert (caught.value.code, caught.value.status) == (str(code), 400)
        assert caught.value.permanent

    def test_invalid_to_is_refused_by_twilio_itself(self, tenant: Tenant) -> None:
        with pytest.raises(PermanentProviderError) as caught:
            tenant.connector.send(sms(to="+55 11 não"))
        assert caught.value.code == "21211"

    def test_sender_not_owned_is_refused(self, tenant: Tenant) -> None:
        with pytest.raises(PermanentProviderError) as caught:
            tenant.connector.send(sms(sender="+5511900000000"))
        assert caught.value.code == "21606"

    def test_per_number_failure_spares_other_numbers(self, tenant: Tenant, sandbox: Sandbox) -> None:
        sandbox.state.inject_failure("http_503", number=f"whatsapp:{CUSTOMER}")
        with pytest.raises(TransientProviderError):
            tenant.connector.send(sms(to=CUSTOMER))
        assert tenant.connector.send(sms(to=OTHER_CUSTOMER)).status == "queued"
        sandbox.state.clear_failures()
        assert tenant.connector.send(sms(to=CUSTOMER)).status == "queued"

    def test_failure_clears_after_its_count(self, tenant: Tenant, sandbox: Sandbox) -> None:
        sandbox.state.inject_failure("api_error", code=21610, number=CUSTOMER, times=2)
        for _ in range(2):
            with pytest.raises(PermanentProviderError):
                tenant.connector.send(sms())
        assert sandbox.state.failures() == []
        assert tenant.connector.send(sms()).status == "queued"
