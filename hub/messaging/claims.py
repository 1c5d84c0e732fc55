"""Claiming outbound messages for delivery, and holding the claims while the calls run.

A worker claims a batch of messages with ONE conditional UPDATE before calling anything:
each must be due (queued, or retrying with ``next_attempt_at`` passed) or held by a
worker whose lease ran out. A duplicate task, a second worker or a late redelivery finds
nothing to claim. The claim commits the attempt rows (``sending``) and re-arms each
message's outbox entry for the end of the lease.

The lease is short (``lease_for``: one message's worth, at least ``LEASE_FLOOR_SECONDS``),
so a killed worker's messages are published again by the relay within about half a
minute; a live worker keeps its batch by renewing the claims (``keep_claims_alive``, a
heartbeat every third of the lease) while its provider calls run, however long the
batch takes. Only claims still held as claimed are renewed: a claim taken over after a
missed heartbeat stays with its new owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, select

from connectors.base import MessagingConnector, PermanentProviderError, ProviderError, TransientProviderError
from hub.contacts.repository import ContactRepository
from hub.db import new_id, transaction, utcnow
from hub.errors import HubError, Unavailable
from hub.heartbeat import KeepAlive
from hub.messaging import channels
from hub.messaging import repository as repo
from hub.providers import pooled_connector_for
from hub.whatsapp.service import WHATSAPP_CLOUD, ResolvedTemplate, check_delivery
from tenants.models import Integration, IntegrationStatus
from tenants.vault import VaultError

if TYPE_CHECKING:
    from hub.runtime import Runtime

# A claim lasts at least this long, and at least three provider timeouts (one attempt
# may look for an earlier send, then send) plus a wait for its turn on a paced lane; a
# live worker renews it every third of that while its batch is in flight.
LEASE_FLOOR_SECONDS = 30.0
# longest a worker waits for a turn on a paced sender lane before deferring the message
PACE_MAX_WAIT = 5.0
# error_code of a call that got no answer (timeout, connection error): its outcome is unknown
NO_ANSWER = "no_answer"


class Outcome(StrEnum):
    """What one attempt came to (``MessageAttempt.outcome``)."""

    SENDING = "sending"  # the provider call is under way
    SENT = "sent"
    RECOVERED = "recovered"  # an earlier attempt with no known outcome had been accepted
    RETRY = "retry"
    FAILED = "failed"
    DEAD = "dead"
    LOST = "lost"  # the worker stopped before recording an outcome
    SUPPRESSED = "suppressed"  # the recipient opted out of the channel: no provider call


@dataclass
class Claim:
    """What a worker holds between its claim and its record."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    channel: str
    to: str
    sender: str | None
    body: str
    media_urls: tuple[str, ...]
    attempt_id: uuid.UUID
    attempt_number: int
    attempt_count: int
    max_attempts: int
    # start of the earliest attempt of this round whose outcome is unknown
    unsure_since: datetime | None
    # the provider, or why it cannot be called
    connector: MessagingConnector | None = None
    failure: ProviderError | None = None
    # e-mail parts and headers; the approved WhatsApp template it maps to
    subject: str | None = None
    html: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    provider_template: dict[str, Any] | None = None
    # the approved WhatsApp template to send instead of the body (WhatsApp Cloud outside
    # the 24-hour window), as checked at claim time
    template: ResolvedTemplate | None = None
    # a broadcast's message waits for its turn on the sender lane: (lane, messages per second)
    pace: tuple[str, float] | None = None


def lease_for(runtime: Runtime) -> timedelta:
    """How long a claim lasts unless its worker renews it: one message's calls (a look
    for an earlier send, the send, a wait for a paced turn)."""
    timeout = runtime.settings.delivery_timeout_seconds
    return timedelta(seconds=max(LEASE_FLOOR_SECONDS, 3 * timeout + PACE_MAX_WAIT))


@contextmanager
def keep_claims_alive(runtime: Runtime, claims: Sequence[Claim], *, every: float | None = None) -> Iterator[None]:
    """Renew the batch's claims (and their outbox entries) every third of the lease while
    the block runs: a long, healthy batch is not handed to another worker, and a killed
    worker's claims lapse one lease after its last heartbeat."""
    if not claims:
        yield
        return
    held = [(c.message_id, c.attempt_count) for c in claims]

    def renew() -> None:
        with transaction(runtime.session_factory) as session:
            repo.extend_claims(session, claims=held, until=utcnow() + lease_for(runtime))

    with KeepAlive(renew, every=every or lease_for(runtime).total_seconds() / 3, name="hub-claims"):
        yield


def claim_message(*, runtime: Runtime, message_id: uuid.UUID) -> Claim | None:
    """``claim_messages`` for one message; None when there is nothing to claim."""
    claims = claim_messages(runtime=runtime, message_ids=[message_id])
    return claims[0] if claims else None


def claim_messages(*, runtime: Runtime, message_ids: Sequence[uuid.UUID]) -> list[Claim]:
    """Take the messages for one attempt each with ONE conditional UPDATE, open the
    attempts' rows and re-arm their outbox entries for the end of the lease, in one
    transaction. Only what could be claimed is returned."""
    now = utcnow()
    lease_until = now + lease_for(runtime)
    with transaction(runtime.session_factory) as session:
        claimed = repo.claim_for_delivery(session, message_ids=message_ids, now=now, lease_until=lease_until)
        if not claimed:
            return []
        history = repo.attempts_of_many(session, [m.id for m in claimed])
        order = {mid: i for i, mid in reversed(list(enumerate(message_ids)))}
        ordered = sorted(claimed, key=lambda m: order[m.id])
        claims = [_open_attempt(message, history.get(message.id, []), now) for message in ordered]
        # attempts of workers that died before recording an outcome
        repo.settle_attempts(session, [a.id for m in ordered for a in history.get(m.id, ())
                                       if a.outcome == Outcome.SENDING],
                             outcome=Outcome.LOST, finished_at=now,
                             error_message="the worker stopped before recording the outcome")
        repo.open_attempts(session, [{"id": c.attempt_id, "message_id": c.message_id, "number": c.attempt_number,
                                      "channel": c.channel, "started_at": now, "outcome": Outcome.SENDING}
                                     for c in claims])
        repo.arm_outboxes(session, message_ids=[m.id for m in ordered], available_at=lease_until)
        opted_out = _opted_out(session, ordered)
        rates = _broadcast_rates(session, ordered)
        integrations = {i.id: i for i in session.scalars(select(Integration).where(
            Integration.id.in_({m.integration_id for m in ordered if m.integration_id is not None})))}
        for message, claim in zip(ordered, claims, strict=True):
            if message.id in opted_out:
                # opted out since it was queued (a scheduled send, a retry): never sent
                claim.failure = PermanentProviderError(f"the recipient opted out of {message.channel}",
                                                       code=channels.OPTED_OUT)
                continue
            if message.broadcast_id in rates:
                claim.pace = (f"{message.tenant_id}:{message.channel}", rates[message.broadcast_id])
            if message.channel == "email":
                claim.reply_to, claim.headers = channels.email_headers(session, runtime, message.tenant_id,
                                                                       message.to_address)
            try:
                claim.connector = _connector(runtime, session, message, integrations)
                if claim.connector.kind == WHATSAPP_CLOUD:
                    # the 24-hour window may have closed while the message waited
                    claim.template = check_delivery(session, message=message, now=now)
            except ProviderError as exc:
                claim.connector, claim.failure = None, exc
    return claims


def _broadcast_rates(session: Any, messages: list[Row[Any]]) -> dict[uuid.UUID, float]:
    """The rate of each broadcast the messages belong to (the lane's pace)."""
    from hub.broadcasts.models import Broadcast  # broadcasts build on messaging, not the reverse

    ids = {m.broadcast_id for m in messages if m.broadcast_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(Broadcast.id, Broadcast.rate).where(Broadcast.id.in_(ids)))
    return {broadcast_id: rate for broadcast_id, rate in rows}


def _opted_out(session: Any, messages: list[Row[Any]]) -> set[uuid.UUID]:
    """Which of the messages go to someone who opted out of the message's channel."""
    asked: dict[tuple[uuid.UUID, str], list[Row[Any]]] = {}
    for message in messages:
        if not message.consent_exempt:
            asked.setdefault((message.tenant_id, message.channel), []).append(message)
    out: set[uuid.UUID] = set()
    for (tenant_id, channel), group in asked.items():
        refused = ContactRepository(session, tenant_id).opted_out_among(channel, [m.to_address for m in group])
        out.update(m.id for m in group if m.to_address in refused)
    return out


def _open_attempt(message: Row[Any], history: list[Row[Any]], now: datetime) -> Claim:
    """This attempt of the claimed message, noting an earlier one whose outcome is unknown."""
    # this round's earlier attempts (the retry endpoint starts a new round at 0)
    round_ = history[-(message.attempt_count - 1):] if message.attempt_count > 1 else []
    unsure = [a.started_at for a in round_
              if a.outcome in (Outcome.SENDING, Outcome.LOST) or a.error_code == NO_ANSWER]
    return Claim(
        message_id=message.id, tenant_id=message.tenant_id, channel=message.channel, to=message.to_address,
        sender=message.from_address, body=message.body,
        media_urls=tuple(m["url"] for m in message.media or [] if isinstance(m, dict) and m.get("url")),
        attempt_id=new_id(), attempt_number=(history[-1].number if history else 0) + 1,
        attempt_count=message.attempt_count, max_attempts=message.max_attempts,
        unsure_since=min(unsure) if unsure else None,
        subject=message.subject, html=message.html, provider_template=message.provider_template,
    )


def _connector(runtime: Runtime, session: Any, message: Row[Any],
               integrations: dict[uuid.UUID, Integration]) -> MessagingConnector:
    if message.integration_id is None and message.channel == "email":
        # queued on the platform's default relay (the tenant has no smtp integration)
        try:
            return channels.platform_smtp(runtime, timeout=runtime.settings.delivery_timeout_seconds)
        except Unavailable as exc:  # e.g. the sandbox's sink not answering yet: try again later
            raise TransientProviderError(exc.message, code=exc.code) from exc
        except HubError as exc:
            raise PermanentProviderError(exc.message, code="integration_missing") from exc
    integration = integrations.get(message.integration_id) if message.integration_id else None
    if integration is None or integration.tenant_id != message.tenant_id:
        raise PermanentProviderError("the integration this message was queued on was removed",
                                     code="integration_missing")
    if integration.status != IntegrationStatus.ACTIVE:
        raise PermanentProviderError(f"the {integration.kind} integration is {integration.status}",
                                     code="integration_inactive")
    try:
        connector = pooled_connector_for(runtime, session, integration,
                                         timeout=runtime.settings.delivery_timeout_seconds)
    except Unavailable as exc:
        raise TransientProviderError(exc.message, code=exc.code) from exc
    except (HubError, VaultError, KeyError, ValueError) as exc:  # unknown kind, bad stored config
        raise PermanentProviderError(f"the {integration.kind} integration cannot be used: {exc}",
                                     code="integration_unusable") from exc
    if not isinstance(connector, MessagingConnector):
        raise PermanentProviderError(f"{integration.kind} does not deliver messages", code="integration_unusable")
    return connector
