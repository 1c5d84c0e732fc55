"""``hub test sms|whatsapp``: the running hub delivers the test message with its own
providers; the command itself delivers nothing, least of all another tenant's message."""

from __future__ import annotations

import os
import subprocess
import sys

from hub.queue import EmbeddedWorker
from hub.relay import RelayThread
from tests.conftest import TEST_MASTER_KEYS
from tests.messaging.outbound_support import (
    CUSTOMER,
    eventually,
    make_fast,
    sent_to,
    twilio_tenant,
    wait_for_status,
)

OTHER_CUSTOMER = "+5521987654321"


def run_test_sms(hub, tmp_path, slug: str, to: str = CUSTOMER, wait: float = 30.0) -> subprocess.CompletedProcess:
    """`hub test sms` in its own process, with what a user's shell holds beside `make run`:
    the same database, keys and public URL, and sandbox mode — but not the URL of the
    sandbox running inside `hub serve`."""
    settings = hub.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=settings.effective_database_url, HUB_MASTER_KEYS=TEST_MASTER_KEYS,
               HUB_PUBLIC_URL=settings.effective_public_url, HUB_VAR_DIR=str(tmp_path / "cli"),
               HUB_LOG_LEVEL="WARNING")
    return subprocess.run([sys.executable, "-m", "hub.cli", "test", "sms", to, "--tenant", slug, "--wait", str(wait)],
                          env=env, capture_output=True, text=True, timeout=wait + 120)


def test_the_running_hub_delivers_it_through_its_own_sandbox(live_hub, tmp_path):
    make_fast(live_hub)
    twilio_tenant(live_hub, "acme")
    result = run_test_sms(live_hub, tmp_path, "acme")
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"status": "delivered"' in result.stdout or '"status": "sent"' in result.stdout
    # the hub's own sandbox got it (before, the command started a sandbox of its own,
    # which did not know the tenant's number: error 21606)
    assert [m["body"] for m in sent_to(live_hub, CUSTOMER)] == ["Teste do Integrations Hub: se você recebeu, "
                                                               "o envio funciona."]


def test_it_never_delivers_anything_itself_not_even_another_tenants_message(cold_hub, tmp_path):
    make_fast(cold_hub)
    twilio_tenant(cold_hub, "acme")
    other = twilio_tenant(cold_hub, "outra")
    queued = cold_hub.http.post("/v1/messages", headers=other.headers,
                                json={"channel": "sms", "to": OTHER_CUSTOMER, "body": "da outra clínica"})
    assert queued.status_code == 202, queued.text

    result = run_test_sms(cold_hub, tmp_path, "acme", wait=2.0)  # no worker and no relay run: nobody delivers
    assert result.returncode == 1
    assert '"status": "queued"' in result.stdout and "no running hub picked the message up" in result.stderr
    assert sent_to(cold_hub, CUSTOMER) == [] and sent_to(cold_hub, OTHER_CUSTOMER) == []
    assert wait_for_status(cold_hub, other, queued.json()["id"], "queued")["attempts"] == []

    # once the hub's back end runs, both go out, through the hub's sandbox, once each
    worker, relay = EmbeddedWorker(cold_hub.runtime).start(), RelayThread(cold_hub.runtime).start()
    try:
        wait_for_status(cold_hub, other, queued.json()["id"], "delivered")
        eventually(lambda: len(sent_to(cold_hub, CUSTOMER)) == 1, what="the test message to go out")
    finally:
        relay.stop()
        worker.stop()


def test_a_test_email_goes_through_the_running_hubs_smtp_path(live_hub, tmp_path):
    """`hub test email`: in sandbox mode without HUB_SMTP_URL the platform relay is the
    sandbox's SMTP sink, so e-mail works in `make run` with no account."""
    make_fast(live_hub)
    twilio_tenant(live_hub, "acme")
    settings = live_hub.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=settings.effective_database_url, HUB_MASTER_KEYS=TEST_MASTER_KEYS,
               HUB_PUBLIC_URL=settings.effective_public_url, HUB_VAR_DIR=str(tmp_path / "cli"),
               HUB_LOG_LEVEL="WARNING")
    result = subprocess.run([sys.executable, "-m", "hub.cli", "test", "email", "maria@example.com", "--tenant", "acme",
                             "--subject", "Teste de e-mail"], env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"status": "sent"' in result.stdout and '"channel": "email"' in result.stdout
    [mail] = live_hub.sandbox.smtp.listed("maria@example.com")
    assert mail["subject"] == "Teste de e-mail" and "o envio funciona" in mail["text"]

    bad = subprocess.run([sys.executable, "-m", "hub.cli", "test", "email", "not-an-address", "--tenant", "acme"],
                         env=env, capture_output=True, text=True, timeout=150)
    assert bad.returncode != 0 and "to" in bad.stderr + bad.stdout
