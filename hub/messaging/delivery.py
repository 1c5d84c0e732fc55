"""Delivering outbound messages: claim them, call the provider once for each, record the outcomes.

A task carries a batch of message ids (``DELIVERY_BATCH``): the claims are one
transaction and the outcomes another, so the database's share per message stays
small; the provider calls are one per message, one after another, while a heartbeat
renews the batch's claims (see ``hub.messaging.claims``).

Never twice, as far as the provider lets us know:

- A worker claims the messages with ONE conditional UPDATE before calling anything
  (``claims.claim_messages``): a duplicate task, a second worker or a late redelivery
  finds nothing to claim and returns.
- The claim commits the attempt row (``sending``) and re-arms the message's outbox
  entry for the end of the lease, which the worker's heartbeat keeps pushing back. A
  worker killed mid-call is therefore noticed: one lease (about half a minute) after
  its last heartbeat the relay publishes the message again (as does the broker, which
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Row

from connectors.base import MessagingConnector, OutboundMessage, ProviderError, TransientProviderError
from hub.db import transaction, utcnow
from hub.events.service import publish_message_statuses
from hub.messaging import channels, claims
from hub.messaging import repository as repo
from hub.messaging.claims import (
    NO_ANSWER,
    Claim,
    Outcome,
    claim_message,
    claim_messages,
    keep_claims_alive,
)
from hub.messaging.models import Message, MessageStatus
from hub.messaging.repository import MessageRepository
from hub.metrics import DELIVERIES, observe_provider_call
from hub.queue import DELIVER_MESSAGE, publish

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger("hub.messaging.delivery")

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
# outcomes after which the next channel of the message's plan takes over
FALLS_BACK = (MessageStatus.FAILED, MessageStatus.DEAD, MessageStatus.SUPPRESSED)
# longest a worker waits for a turn on a paced sender lane before deferring the message
PACE_MAX_WAIT = claims.PACE_MAX_WAIT
# a hop is published at once; the relay steps in after this if that publish was lost
AFTER_HOP_GRACE = timedelta(seconds=2)
# how far back Twilio's second-resolution date_created may appear to be
_CLOCK_SLACK = timedelta(seconds=2)


def retry_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: full jitter over ``base * 2**(attempt-1)`` capped
    at ``cap``, and never less than the provider's ``retry_after``."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
    if retry_after:
        delay = max(delay, retry_after)
    return delay


@dataclass
class Called:
    """One claimed message after its provider call."""

    claim: Claim
    started_at: datetime | None = None  # when the provider call began (None: no call)
    provider_message_id: str | None = None
    recovered: bool = False
    failure: ProviderError | None = None
    duration_ms: float = 0.0
    # the lane had no turn soon enough: no call, the message waits until then
    deferred_until: datetime | None = None


def deliver_message(*, runtime: Runtime, message_id: uuid.UUID) -> str | None:
    """Claim the message and make one delivery attempt; returns its new status, or None
    when there was nothing to claim (sent already, held by another worker, not due)."""
    return deliver_messages(runtime=runtime, message_ids=[message_id]).get(message_id)


def deliver_messages(*, runtime: Runtime, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """One delivery attempt for each message this worker can claim: the claims in one
    transaction, one provider call per message, then every outcome in one transaction.
    Returns each claimed message's new status (None: not claimed, or the claim was lost).

    Batching keeps the database's share per message small; the provider calls are the
    same one-per-message calls as ever."""
    claimed = claim_messages(runtime=runtime, message_ids=message_ids)
    if len(claimed) < len(set(message_ids)):
        log.debug("nothing to claim", unclaimed=len(set(message_ids)) - len(claimed))
    with keep_claims_alive(runtime, claimed):
        called = [_call(runtime, claim) for claim in claimed]
    return _record(runtime, called)


def _call(runtime: Runtime, claim: Claim) -> Called:
    done = Called(claim, failure=claim.failure)
    if claim.connector is not None and claim.pace is not None:
        wait = _take_turn(runtime, *claim.pace)
        if wait is not None:
            done.deferred_until = utcnow() + timedelta(seconds=wait)
            return done
    began = time.perf_counter()
    done.started_at = utcnow()
    if claim.connector is not None:
        try:
            done.provider_message_id, done.recovered = _attempt(runtime, claim.connector, claim)
        except ProviderError as exc:
            done.failure = exc
        observe_provider_call(claim.connector.kind, "send", time.perf_counter() - began,
                              failed=done.failure is not None)
    done.duration_ms = round((time.perf_counter() - began) * 1000, 1)
    return done


def _take_turn(runtime: Runtime, lane: str, per_second: float) -> float | None:
    """Wait for the lane's next turn; the seconds left when it is further off than
    ``PACE_MAX_WAIT`` (the message is then deferred, not held past its lease)."""
    try:
        return runtime.rate_limits.take_turn(lane, per_second, max_wait=PACE_MAX_WAIT)
    except Exception as exc:  # limits wraps storage errors in many types
        log.warning("send pacing unavailable; sending unpaced", lane=lane, error=type(exc).__name__)
        return None


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
        template_parameter_names=template.parameter_names if template else (),
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


def _outcome(settings: Any, called: Called, now: datetime) -> tuple[str, Outcome, dict[str, Any], float | None]:
    """``(status, outcome, message values, retry in seconds)`` of one provider call."""
    claimed, failure = called.claim, called.failure
    common: dict[str, Any] = {"updated_at": now}
    if failure is None:
        return MessageStatus.SENT, (Outcome.RECOVERED if called.recovered else Outcome.SENT), {
            **common, "status": MessageStatus.SENT, "provider_message_id": called.provider_message_id,
            "sent_at": now, "next_attempt_at": None, "error_code": None, "error_message": None}, None
    code, text = _error_code(failure), failure.message[:2000]
    retry_in = None
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
    return status, outcome, {**common, "status": status, "error_code": code, "error_message": text,
                             "next_attempt_at": now + timedelta(seconds=retry_in) if retry_in is not None else None
                             }, retry_in


def _deferral(called: Called, now: datetime) -> dict[str, Any]:
    """The message as it was before the claim, due again when the lane has a turn."""
    count = called.claim.attempt_count - 1
    return {"status": MessageStatus.RETRYING if count else MessageStatus.QUEUED, "attempt_count": count,
            "next_attempt_at": called.deferred_until, "updated_at": now}


def _record(runtime: Runtime, called: list[Called]) -> dict[uuid.UUID, str | None]:
    """Write the attempts' outcomes and move each message whose claim still stands, in
    one transaction; returns the new statuses (None where the claim was lost)."""
    if not called:
        return {}
    now = utcnow()
    deferred = {c.claim.message_id: c for c in called if c.deferred_until is not None}
    decided = {c.claim.message_id: (c, *_outcome(runtime.settings, c, now)) for c in called
               if c.deferred_until is None}
    for c, _, outcome, _, _ in decided.values():
        DELIVERIES.labels(c.claim.channel, outcome).inc()
    statuses: dict[uuid.UUID, str | None] = {}
    hops: list[tuple[Claim, str]] = []
    with transaction(runtime.session_factory) as session:
        repo.finish_attempts(session, [
            {"id": c.claim.attempt_id, "outcome": outcome, "finished_at": now,
             "error_code": values.get("error_code"), "error_message": values.get("error_message"),
             **({"started_at": c.started_at} if c.started_at else {})}
            for c, _, outcome, values, _ in decided.values()])
        # a deferred message made no call: it never had this attempt
        repo.drop_attempts(session, [c.claim.attempt_id for c in deferred.values()])
        deferrals = {mid: _deferral(c, now) for mid, c in deferred.items()}
        ours = repo.finish_claimed(session, outcomes=[
            (mid, c.claim.attempt_count, values) for mid, (c, _, _, values, _) in decided.items()] + [
            (mid, deferred[mid].claim.attempt_count, values) for mid, values in deferrals.items()])
        # what each status event says: the row as the claim left it, with the outcome written
        now_stands: dict[uuid.UUID, Any] = {}
        for mid, values in deferrals.items():
            statuses[mid] = str(values["status"]) if mid in ours else None
            if mid in ours:
                now_stands[mid] = _as_written(ours[mid], status=values["status"])
                repo.arm_outbox(session, message_id=mid, available_at=values["next_attempt_at"])
        if deferred:
            log.info("paced sends deferred", messages=len(deferred))
        settled, retrying = [], {}
        for mid, (c, status, _, values, _) in decided.items():
            if mid not in ours:
                statuses[mid] = None
                continue
            now_stands[mid] = _as_written(ours[mid], status=values["status"], error_code=values.get("error_code"))
            if values.get("error_code"):
                # the contacts feature keeps consent: a carrier opt-out (21610) becomes one
                from hub.contacts.consent import on_delivery_refused

                on_delivery_refused(session=session, tenant_id=c.claim.tenant_id, channel=c.claim.channel,
                                    to=c.claim.to, error_code=values.get("error_code"))
            if status in FALLS_BACK and (moved := _fall_back(runtime, session, c.claim, status, values)):
                hops.append((c.claim, status))
                now_stands[mid] = moved
                statuses[mid] = str(MessageStatus.QUEUED)
                repo.arm_outbox(session, message_id=mid, available_at=now + AFTER_HOP_GRACE)
            elif status == MessageStatus.RETRYING:
                statuses[mid] = str(status)
                retrying[mid] = values["next_attempt_at"]
            else:
                statuses[mid] = str(status)
                settled.append(mid)
        for mid, at in retrying.items():
            repo.arm_outbox(session, message_id=mid, available_at=at)
        repo.settle_outbox(session, message_ids=settled)
        publish_message_statuses(session=session, messages=list(now_stands.values()))
    for claimed, left_as in hops:
        # the next channel's attempt; should this publish be lost, the relay sends it after the grace
        publish(runtime.celery, DELIVER_MESSAGE, str(claimed.message_id))
        log.info("fell back to the next channel", message_id=str(claimed.message_id), left=claimed.channel,
                 outcome=str(left_as))
    for mid, (c, status, outcome, values, retry_in) in decided.items():
        claimed = c.claim
        log.info(
            "delivery attempt",
            message_id=str(mid), tenant_id=str(claimed.tenant_id), channel=claimed.channel,
            to=_masked(claimed.to), attempt=claimed.attempt_number, outcome=str(outcome),
            status=str(statuses[mid] or status), provider_message_id=c.provider_message_id,
            error_code=values.get("error_code"), error=values.get("error_message"),
            retry_in_s=round(retry_in, 3) if retry_in is not None else None, duration_ms=c.duration_ms,
        )
        if statuses[mid] is None:
            log.warning("claim lost before the outcome was recorded; the successor decides",
                        message_id=str(mid), attempt=claimed.attempt_number)
    return statuses


def _as_written(row: Row[Any], **values: Any) -> SimpleNamespace:
    """The message ``row`` with ``values`` written over it (what its status event says)."""
    return SimpleNamespace(**{**row._asdict(), **values})


def _fall_back(runtime: Runtime, session: Any, claimed: Claim, status: str, values: dict[str, Any]) -> Message | None:
    """Hand the message to the next channel of its plan, if any (see hub.messaging.channels):
    the message as it now stands, or None when no channel is left."""
    message = repo.load_message(session, claimed.message_id)
    if message is None or not message.channel_plan:
        return None
    left = channels.hop(claimed.channel, claimed.to, str(status), values.get("error_code"),
                        values.get("error_message"))
    return message if channels.fall_back(session, runtime, message, left) else None


def _masked(address: str) -> str:
    """A phone number shown as ``+55…4321`` in logs."""
    return f"{address[:3]}…{address[-4:]}" if len(address) > 8 else "…"


__all__ = ["Claim", "Outcome", "claim_message", "claim_messages", "deliver_message", "deliver_messages",
           "retry_delay"]
