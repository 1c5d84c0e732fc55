"""``hub test sms|whatsapp|email``: a test message through a tenant's integration,
delivered by the running hub."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli_support import _print, fail, load_settings, runtime_or_exit

test_app = typer.Typer(help="Send a test message through a tenant's integration", no_args_is_help=True)

_TEST_BODY = "Teste do Integrations Hub: se você recebeu, o envio funciona."
ToArgument = Annotated[str, typer.Argument(help="the recipient's phone number, e.g. +5511987654321")]
TenantOption = Annotated[str, typer.Option(help="tenant id or slug")]
BodyOption = Annotated[str, typer.Option(help="the text to send")]
WaitOption = Annotated[float, typer.Option(help="seconds to wait for a final status")]


def _test_message(channel: str, tenant: str, to: str, body: str, wait: float, subject: str | None = None) -> None:
    """Queue one message through the tenant's integration and wait for its outcome.

    The command delivers nothing itself: the running hub does, with its own providers
    (the sandbox of `make run`, or production's), as it delivers every other message —
    its relay picks the message up from the database (embedded), or its workers from
    Redis. So a test message never goes through another sandbox than the hub's, and
    the command never touches any other message. Exit 0 when the provider took it."""
    import time

    from pydantic import ValidationError

    from hub.db import transaction
    from hub.errors import HubError
    from hub.messaging import service as messaging
    from hub.messaging.models import Message, MessageStatus
    from hub.messaging.schemas import MessageCreate
    from tenants import service as tenants

    try:
        message_in = MessageCreate(channel=channel, to=to, body=body, subject=subject)
    except ValidationError as exc:
        fail(*[f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors()])
    runtime = runtime_or_exit(load_settings())
    # embedded, this process's broker is in memory and no worker reads it
    runtime.hands_off_to_relay = runtime.settings.use_embedded_worker
    try:
        try:
            with transaction(runtime.session_factory) as session:
                tenant_id = tenants.find_tenant(session=session, ref=tenant).id
                message_id = messaging.send_message(session=session, runtime=runtime, tenant_id=tenant_id,
                                                    message_in=message_in).message.id
        except HubError as exc:
            fail(exc.message)
        final = {MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.UNDELIVERED, MessageStatus.FAILED,
                 MessageStatus.DEAD, MessageStatus.SUPPRESSED}
        deadline = time.monotonic() + wait
        sent_deadline = None
        while True:
            with runtime.session_factory() as session:
                message = session.get(Message, message_id)
                attempts = messaging.message_attempts(session=session, tenant_id=tenant_id, message_id=message_id)
            now = time.monotonic()
            if message.status == MessageStatus.SENT and sent_deadline is None:
                sent_deadline = now + 3  # a little longer for the delivery callback
            if message.status in final or now > deadline or (sent_deadline and now > sent_deadline):
                break
            time.sleep(0.1)
    finally:
        runtime.close()
    _print({"id": str(message.id), "status": message.status, "channel": message.channel, "to": message.to_address,
            "from": message.from_address, "provider_message_id": message.provider_message_id,
            "error_code": message.error_code, "error_message": message.error_message,
            "attempts": [{"number": a.number, "outcome": a.outcome, "error_code": a.error_code} for a in attempts]})
    if message.status in (MessageStatus.QUEUED, MessageStatus.SCHEDULED) and not attempts:
        typer.echo("error: no running hub picked the message up: start `make run` (or, with HUB_REDIS_URL, "
                   "`hub relay` and `hub worker`); it stays queued and goes out once one runs", err=True)
    if message.status not in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ):
        raise typer.Exit(1)


@test_app.command("sms")
def test_sms(to: ToArgument, tenant: TenantOption, body: BodyOption = _TEST_BODY, wait: WaitOption = 15.0) -> None:
    """Send a test SMS through the tenant's Twilio integration and print its final status."""
    _test_message("sms", tenant, to, body, wait)


@test_app.command("whatsapp")
def test_whatsapp(to: ToArgument, tenant: TenantOption, body: BodyOption = _TEST_BODY,
                  wait: WaitOption = 15.0) -> None:
    """Send a test WhatsApp message through the tenant's integration and print its final status."""
    _test_message("whatsapp", tenant, to, body, wait)


@test_app.command("email")
def test_email(
    to: Annotated[str, typer.Argument(help="the recipient's e-mail address")],
    tenant: TenantOption,
    subject: Annotated[str, typer.Option(help="the subject line")] = "Teste do Integrations Hub",
    body: BodyOption = _TEST_BODY,
    wait: WaitOption = 15.0,
) -> None:
    """Send a test e-mail through the tenant's e-mail path (its smtp integration, else the
    platform relay; the sandbox's SMTP sink in `make run`) and print its final status."""
    _test_message("email", tenant, to, body, wait, subject=subject)
