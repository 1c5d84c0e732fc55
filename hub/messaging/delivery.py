"""Delivering one outbound message: claim it, call the provider once, record the outcome.

Never twice, as far as the provider lets us know:

- A worker claims the message with ONE conditional UPDATE before calling anything:
  it must be due (queued, or retrying with ``next_attempt_at`` passed) or held by a
  worker whose lease ran out. A duplicate task, a second worker or a late redelivery
  finds nothing to claim and returns.
- The claim commits the attempt row (``sending``) and re-arms the message's outbox
  entry for the end of the lease. A worker killed mid-call is therefore noticed: once
  the lease is over the relay publishes the message again (as does the broker, which
  redelivers an unacknowledged ``acks_late`` task), and the next worker may claim it.
- Twilio has no idempotency key. So when an earlier attempt's outcome is unknown (the
  worker died mid-call, or the call got no answer: a timed-out request may still have
  created the message), the next attempt first asks Twilio for messages created since
  that attempt began, to the same recipient, with the same body, whose sid none of
  the tenant's messages holds. If there is one, the message is marked sent with that
  sid (attempt outcome ``recovered``) instead of being sent again. After no answer the
  next attempt waits at least one more timeout, so a request still in flight has
  landed (or died) by the time we look.
- Retries live in the database, not in a broker ETA: a transient failure sets
  ``next_attempt_at`` (exponential backoff with full jitter, never sooner than a 429's
  Retry-After) and re-arms the outbox entry for then; the relay publishes it when due.
  A permanent failure is final at once; so is the attempt that exhausts
  ``max_attempts`` (the message goes ``dead``: the dead-letter queue).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog

from connectors.base import (
    MessagingConnector,
    OutboundMessage,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from hub.contacts.repository import ContactRepository
from hub.db import new_id, transaction, utcnow
from hub.errors import HubError, Unavailable
from hub.events.service import publish_message_status
from hub.messaging import channels
from hub.messaging import repository as repo
from hub.messaging.models import Message, MessageAttempt, MessageStatus
from hub.messaging.repository import MessageRepository
from hub.providers import pooled_connector_for
from hub.queue import DELIVER_MESSAGE, publish
from hub.whatsapp.service import WHATSAPP_CLOUD, ResolvedTemplate, check_delivery
from tenants.models import Integration, IntegrationStatus
from tenants.vault import VaultError

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.messaging.delivery")

# A claim lasts at least this long, and at least three provider timeouts (one attempt
# may look for an earlier send, then send).
LEASE_FLOOR_SECONDS = 60.0
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
# error_code of a call that got no answer (timeout, connection error): its outcome is unknown
NO_ANSWER = "no_answer"
# outcomes after which the next channel of the message's plan takes over
FALLS_BACK = (MessageStatus.FAILED, MessageStatus.DEAD, MessageStatus.SUPPRESSED)
# a hop is published at once; the relay steps in after this if that publish was lost
AFTER_HOP_GRACE = timedelta(seconds=2)
# how far back Twilio's second-resolution date_created may appear to be
_CLOCK_SLACK = timedelta(seconds=2)


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


def retry_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: full jitter over ``base * 2**(attempt-1)`` capped
    at ``cap``, and never less than the provider's ``retry_after``."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
    if retry_after:
        delay = max(delay, retry_after)
    return delay


def lease_for(runtime: Runtime) -> timedelta:
    return timedelta(seconds=max(LEASE_FLOOR_SECONDS, 3 * runtime.settings.delivery_timeout_seconds))


def deliver_message(*, runtime: Runtime, message_id: uuid.UUID) -> str | None:
    """Claim the message and make one delivery attempt; returns its new status, or None
    when there was nothing to claim (sent already, held by another worker, not due)."""
    began = time.perf_counter()
    claim = claim_message(runtime=runtime, message_id=message_id)
    if claim is None:
        log.debug("nothing to claim", message_id=str(message_id))
        return None
    provider_message_id, recovered, failure = None, False, claim.failure
    if claim.connector is not None:
        try:
            provider_message_id, recovered = _attempt(runtime, claim.connector, claim)
        except ProviderError as exc:
            failure = exc
    return _record(runtime, claim, provider_message_id=provider_message_id, recovered=recovered, failure=failure,
                   duration_ms=round((time.perf_counter() - began) * 1000, 1))


def claim_message(*, runtime: Runtime, message_id: uuid.UUID) -> Claim | None:
    """Take the message for one attempt with ONE conditional UPDATE, open the attempt's
    row and re-arm the outbox entry for the end of the lease, in one transaction.
    None when there is nothing to claim."""
    now = utcnow()
    lease = lease_for(runtime)
    with transaction(runtime.session_factory) as session:
        if not repo.claim_for_delivery(session, message_id=message_id, now=now, lease_until=now + lease):
            return None
        message = repo.load_message(session, message_id)
        assert message is not None  # just claimed
        claim = _open_attempt(session, message, now)
        repo.arm_outbox(session, message_id=message_id, available_at=now + lease)
        if not message.consent_exempt and ContactRepository(session, message.tenant_id).opted_out(
                message.channel, message.to_address):
            # opted out since it was queued (a scheduled send, a retry): never sent
            claim.failure = PermanentProviderError(f"the recipient opted out of {message.channel}",
                                                   code=channels.OPTED_OUT)
            return claim
        if message.channel == "email":
            claim.reply_to, claim.headers = channels.email_headers(session, runtime, message.tenant_id,
                                                                   message.from_address)
        try:
            claim.connector = _connector(runtime, session, message)
            if claim.connector.kind == WHATSAPP_CLOUD:
                # the 24-hour window may have closed while the message waited
                claim.template = check_delivery(session, message=message, now=now)
        except ProviderError as exc:
            claim.connector, claim.failure = None, exc
    return claim


def _open_attempt(session: Any, message: Message, now: datetime) -> Claim:
    """Write this attempt's row; settle rows of workers that died; note an unknown outcome."""
    history = repo.attempts_of(session, message.id)
    for earlier in history:
        if earlier.outcome == Outcome.SENDING:
            earlier.outcome = Outcome.LOST
            earlier.finished_at = now
            earlier.error_message = "the worker stopped before recording the outcome"
    # this round's earlier attempts (the retry endpoint starts a new round at 0)
    round_ = history[-(message.attempt_count - 1):] if message.attempt_count > 1 else []
    unsure = [a.started_at for a in round_ if a.outcome == Outcome.LOST or a.error_code == NO_ANSWER]
    attempt = MessageAttempt(id=new_id(), message_id=message.id, number=(history[-1].number if history else 0) + 1,
                             channel=message.channel, started_at=now, outcome=Outcome.SENDING)
    session.add(attempt)
    session.flush()
    return Claim(
        message_id=message.id, tenant_id=message.tenant_id, channel=message.channel, to=message.to_address,
        sender=message.from_address, body=message.body,
        media_urls=tuple(m["url"] for m in message.media or [] if isinstance(m, dict) and m.get("url")),
        attempt_id=attempt.id, attempt_number=attempt.number, attempt_count=message.attempt_count,
        max_attempts=message.max_attempts, unsure_since=min(unsure) if unsure else None,
        subject=message.subject, html=message.html, provider_template=message.provider_template,
    )


def _connector(runtime: Runtime, session: Any, message: Message) -> MessagingConnector:
    if message.integration_id is None and message.channel == "email":
        # queued on the platform's default relay (the tenant has no smtp integration)
        try:
            return channels.platform_smtp(runtime, timeout=runtime.settings.delivery_timeout_seconds)
        except HubError as exc:
            raise PermanentProviderError(exc.message, code="integration_missing") from exc
    integration = session.get(Integration, message.integration_id) if message.integration_id else None
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


def _attempt(runtime: Runtime, connector: MessagingConnector, claimed: Claim) -> tuple[str, bool]:
    """``(provider message id, recovered)``; raises ProviderError."""
    if claimed.unsure_since is not None:
        earlier = _earlier_send(runtime, connector, claimed)
        if earlier:
            return earlier, True
    if claimed.attempt_count > claimed.max_attempts:
        # only a reclaim after the last attempt's worker died gets here
        raise TransientProviderError("attempts exhausted: the last attempt's worker stopped mid-delivery",
                                     code="worker_lost")
    template = claimed.template
    result = connector.send(OutboundMessage(
        channel=claimed.channel, to=claimed.to, body=claimed.body, sender=claimed.sender,
        media_urls=claimed.media_urls,
        status_callback=runtime.settings.effective_public_url + STATUS_CALLBACK_PATH,
        template_name=template.name if template else None, template_language=template.language if template else None,
        template_parameters=template.parameters if template else (),
        subject=claimed.subject, html=claimed.html, reply_to=claimed.reply_to, headers=claimed.headers,
        # one Message-ID per message and channel round: a resend of the same e-mail folds into one
        idempotency_key=f"{claimed.message_id}:{claimed.channel}",
    ))
    return result.provider_message_id, False


def _earlier_send(runtime: Runtime, connector: MessagingConnector, claimed: Claim) -> str | None:
    """The id of a message the provider created for an attempt whose outcome we never learned."""
    assert claimed.unsure_since is not None
    since = claimed.unsure_since.replace(microsecond=0) - _CLOCK_SLACK
    try:
        found = connector.find_sent(channel=claimed.channel, to=claimed.to, sender=claimed.sender, since=since)
    except ProviderError as exc:
        # unsure whether it went out, and unable to ask: try again later, never blind
        raise TransientProviderError(f"could not look for an earlier send: {exc.message}",
                                     code="lookup_failed") from exc
    if found is None:
        return None  # a provider we cannot ask: send (at worst twice) rather than never
    candidates = sorted((m.created_at, m.provider_message_id) for m in found if m.body.endswith(claimed.body))
    if not candidates:
        return None
    with runtime.session_factory() as session:
        taken = MessageRepository(session, claimed.tenant_id).provider_ids_taken([sid for _, sid in candidates])
    return next((sid for _, sid in candidates if sid not in taken), None)


def _error_code(exc: ProviderError) -> str:
    if exc.code:
        return str(exc.code)[:32]
    return f"http_{exc.status}" if exc.status else NO_ANSWER


def _record(runtime: Runtime, claimed: Claim, *, provider_message_id: str | None, recovered: bool,
            failure: ProviderError | None, duration_ms: float) -> str | None:
    """Write the attempt's outcome and move the message, if our claim still stands."""
    settings = runtime.settings
    now = utcnow()
    common: dict[str, Any] = {"claimed_until": None, "updated_at": now}
    retry_in = None
    if failure is None:
        status, outcome = MessageStatus.SENT, (Outcome.RECOVERED if recovered else Outcome.SENT)
        values = {**common, "status": status, "provider_message_id": provider_message_id, "sent_at": now,
                  "next_attempt_at": None, "error_code": None, "error_message": None}
    else:
        code, text = _error_code(failure), failure.message[:2000]
        if code == channels.OPTED_OUT:
            status, outcome = MessageStatus.SUPPRESSED, Outcome.SUPPRESSED
        elif failure.permanent:
            status, outcome = MessageStatus.FAILED, Outcome.FAILED
        elif claimed.attempt_count >= claimed.max_attempts:
            status, outcome = MessageStatus.DEAD, Outcome.DEAD
        else:
            status, outcome = MessageStatus.RETRYING, Outcome.RETRY
            retry_in = retry_delay(claimed.attempt_count, base=settings.delivery_retry_base_seconds,
                                   cap=settings.delivery_retry_cap_seconds, retry_after=failure.retry_after)
            if code == NO_ANSWER:
                # the unanswered request may still land: give it as long again as we
                # waited, so the next attempt's look for it can see it
                retry_in = max(retry_in, settings.delivery_timeout_seconds)
        values = {**common, "status": status, "error_code": code, "error_message": text,
                  "next_attempt_at": now + timedelta(seconds=retry_in) if retry_in is not None else None}
    with transaction(runtime.session_factory) as session:
        attempt = session.get(MessageAttempt, claimed.attempt_id)
        if attempt is not None:
            attempt.outcome = outcome
            attempt.finished_at = now
            attempt.error_code = values.get("error_code")
            attempt.error_message = values.get("error_message")
        ours = repo.finish_claimed(session, message_id=claimed.message_id, attempt_count=claimed.attempt_count,
                                   values=values)
        fell_back = False
        if ours and status in FALLS_BACK:
            fell_back = _fall_back(runtime, session, claimed, status, values)
        if fell_back:
            previous, status = status, MessageStatus.QUEUED
            repo.arm_outbox(session, message_id=claimed.message_id, available_at=now + AFTER_HOP_GRACE)
        elif ours and status == MessageStatus.RETRYING:
            repo.arm_outbox(session, message_id=claimed.message_id, available_at=values["next_attempt_at"])
        elif ours:
            repo.settle_outbox(session, message_id=claimed.message_id)
        if ours:
            publish_message_status(session=session, message=session.get(Message, claimed.message_id))  # hub.events
    if fell_back:
        # the next channel's attempt; should this publish be lost, the relay sends it after the grace
        publish(runtime.celery, DELIVER_MESSAGE, str(claimed.message_id))
        log.info("fell back to the next channel", message_id=str(claimed.message_id), left=claimed.channel,
                 outcome=str(previous))
    log.info(
        "delivery attempt",
        message_id=str(claimed.message_id), tenant_id=str(claimed.tenant_id), channel=claimed.channel,
        to=_masked(claimed.to), attempt=claimed.attempt_number, outcome=str(outcome), status=str(status),
        provider_message_id=provider_message_id, error_code=values.get("error_code"),
        error=values.get("error_message"), retry_in_s=round(retry_in, 3) if retry_in is not None else None,
        duration_ms=duration_ms,
    )
    if not ours:
        log.warning("claim lost before the outcome was recorded; the successor decides",
                    message_id=str(claimed.message_id), attempt=claimed.attempt_number)
        return None
    return str(status)


def _fall_back(runtime: Runtime, session: Any, claimed: Claim, status: str, values: dict[str, Any]) -> bool:
    """Hand the message to the next channel of its plan, if any (see hub.messaging.channels)."""
    message = repo.load_message(session, claimed.message_id)
    if message is None or not message.channel_plan:
        return False
    left = channels.hop(claimed.channel, claimed.to, str(status), values.get("error_code"),
                        values.get("error_message"))
    return channels.fall_back(session, runtime, message, left)


def _masked(address: str) -> str:
    """A phone number shown as ``+55…4321`` in logs."""
    return f"{address[:3]}…{address[-4:]}" if len(address) > 8 else "…"
