"""Issue 18, item 3 at the API: with private targets refused (production's default), saving an
SMTP integration whose host is not public is a 422 naming ``credentials.host``, a failed
connection reads the same whatever the port, and an integration that already points inward
cannot be used to send."""

from __future__ import annotations

import socket
import uuid

import pytest

from connectors.sandbox.server import free_port
from tenants import service as tenants
from tenants.models import IntegrationStatus
from tests.support import smtp_credentials, tenant_headers


@pytest.fixture
def production_targets(runtime):
    """The production rule on the test hub (the rest of production needs real services)."""
    runtime.settings.allow_private_targets = False
    return runtime


@pytest.mark.parametrize("host", ["127.0.0.1", "10.20.30.40", "169.254.169.254", "::1", "localhost",
                                  "::ffff:127.0.0.1"])
def test_a_non_public_host_is_a_422_naming_the_field(client, production_targets, smtp_relay, host):
    tenant_id, headers = tenant_headers(client, production_targets)
    r = client.put("/v1/integrations/smtp", headers=headers,
                   json={"credentials": smtp_credentials(smtp_relay, host=host)})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "address_not_allowed"
    assert error["message"].startswith("credentials.host: ")
    assert error["details"][0]["loc"] == ["credentials", "host"]
    assert client.get("/v1/integrations", headers=headers).json() == []


def test_closed_and_blackholed_ports_answer_alike(client, runtime):
    """Development (local targets allowed): whatever is or is not listening, one answer."""
    _, headers = tenant_headers(client, runtime)
    runtime.settings.delivery_timeout_seconds = 0.5
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        blackholed = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", blackholed), timeout=5):  # the backlog is full now
            answers = []
            for port in (free_port(), blackholed):
                r = client.put("/v1/integrations/smtp", headers=headers, json={"credentials": smtp_credentials(port)})
                assert r.status_code == 422, r.text
                answers.append((r.json()["error"]["code"], r.json()["error"]["message"].replace(str(port), "PORT")))
    assert answers[0] == answers[1] == (
        "provider_check_failed",
        "E-mail (SMTP) refused these credentials: connection_error: could not connect to the SMTP server "
        "127.0.0.1:PORT")


def test_development_reaches_the_local_relay(client, runtime, smtp_relay):
    _, headers = tenant_headers(client, runtime)
    r = client.put("/v1/integrations/smtp", headers=headers, json={"credentials": smtp_credentials(smtp_relay)})
    assert r.status_code == 200, r.text


def test_an_integration_saved_before_is_refused_at_send_time(client, production_targets, smtp_relay):
    """Saved while private targets were allowed (or before this check): the send is refused
    for good at connect time, and the relay receives nothing."""
    runtime = production_targets
    tenant_id, headers = tenant_headers(client, runtime)
    with runtime.session_factory() as session, session.begin():
        tenants.put_integration(session=session, vault=runtime.vault, tenant_id=tenant_id, kind="smtp",
                                credentials=smtp_credentials(smtp_relay), config={},
                                status=IntegrationStatus.ACTIVE)
    from hub.messaging.delivery import deliver_message

    r = client.post("/v1/messages", headers=headers, json={"channel": "email", "to": "maria@cliente.example.com",
                                                           "body": "Olá", "subject": "Consulta"})
    assert r.status_code == 202, r.text
    assert deliver_message(runtime=runtime, message_id=uuid.UUID(r.json()["id"])) == "failed"
    message = client.get(f"/v1/messages/{r.json()['id']}", headers=headers).json()
    assert message["status"] == "failed" and message["error_code"] == "address_not_allowed", message
