"""Contacts (with the LGPD export and erasure), auto-reply rules and business hours.
The tenant is the token's."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import status as http

from hub.audit import service as audit
from hub.auth.deps import client_ip, request_id, tenant_with
from hub.contacts import lgpd, service
from hub.contacts.models import BusinessHours, Contact
from hub.contacts.schemas import (
    AutoReplyCreate,
    AutoReplyList,
    AutoReplyRead,
    AutoReplyUpdate,
    BusinessHoursRead,
    BusinessHoursWrite,
    ConsentRead,
    ContactCreate,
    ContactDetail,
    ContactExport,
    ContactPage,
    ContactSummary,
    ContactUpdate,
)
from hub.db import utcnow
from hub.deps import DbSession
from hub.errors import AUTHENTICATED_ERRORS, error_responses
from hub.messaging.schemas import ConversationRead, MessageRead
from hub.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", responses=AUTHENTICATED_ERRORS)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


def _audit(session, request: Request, principal, action: str, target: str) -> None:
    # no personal data in the details: the audit log outlives an erasure
    audit.record(session=session, tenant_id=principal.tenant_id, actor=principal.actor, action=action,
                 target=target, ip=client_ip(request), request_id=request_id(request), details={})


def _detail(session, tenant_id: uuid.UUID, contact: Contact) -> ContactDetail:
    consents = service.contact_consents(session=session, tenant_id=tenant_id, contact_id=contact.id)
    return ContactDetail(**ContactSummary.model_validate(contact).model_dump(),
                         consents=[ConsentRead.model_validate(c) for c in consents])


# --- contacts -------------------------------------------------------------------------------


@router.get("/contacts", response_model=ContactPage, tags=["contacts"])
def list_contacts(
    session: DbSession,
    principal: tenant_with("contacts:read"),
    phone: Annotated[str | None, Query(max_length=64, description="a phone number, in any spelling")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ContactPage:
    """The tenant's contacts, newest first (erased ones are not listed)."""
    page = service.list_contacts(session=session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor,
                                 phone=phone, email=email)
    return ContactPage(data=[ContactSummary.model_validate(c) for c in page.items], next_cursor=page.next_cursor)


@router.post("/contacts", status_code=http.HTTP_201_CREATED, response_model=ContactDetail,
             responses=error_responses(409), tags=["contacts"])
def create_contact(contact_in: ContactCreate, session: DbSession,
                   principal: tenant_with("contacts:write")) -> ContactDetail:
    """Create a contact with a phone (normalized to E.164 in the tenant's country) and/or an
    e-mail, and consent per channel. 409 ``contact_exists`` with the existing contact's id
    (``error.details.id``) when the phone or e-mail belongs to another contact."""
    contact = service.create_contact(session=session, tenant_id=principal.tenant_id, contact_in=contact_in)
    return _detail(session, principal.tenant_id, contact)


@router.get("/contacts/{contact_id}", response_model=ContactDetail, tags=["contacts"])
def get_contact(contact_id: uuid.UUID, session: DbSession, principal: tenant_with("contacts:read")) -> ContactDetail:
    """One contact with its consent per channel (status, source, when it changed)."""
    contact = service.get_contact(session=session, tenant_id=principal.tenant_id, contact_id=contact_id)
    return _detail(session, principal.tenant_id, contact)


@router.patch("/contacts/{contact_id}", response_model=ContactDetail, responses=error_responses(409),
              tags=["contacts"])
def update_contact(contact_id: uuid.UUID, contact_in: ContactUpdate, session: DbSession,
                   principal: tenant_with("contacts:write")) -> ContactDetail:
    """Change the fields sent; consent changes are recorded with source ``api``."""
    contact = service.update_contact(session=session, tenant_id=principal.tenant_id, contact_id=contact_id,
                                     contact_in=contact_in)
    return _detail(session, principal.tenant_id, contact)


@router.get("/contacts/{contact_id}/export", response_model=ContactExport, tags=["contacts"])
def export_contact(contact_id: uuid.UUID, request: Request, session: DbSession,
                   principal: tenant_with("contacts:read")) -> ContactExport:
    """Everything the hub holds about the person (LGPD): the contact, consents, their
    conversations and messages (by phone on SMS/WhatsApp, by e-mail on e-mail) and the
    appointments booked for them."""
    data = lgpd.export_contact(session=session, tenant_id=principal.tenant_id, contact_id=contact_id)
    _audit(session, request, principal, "contact.exported", str(contact_id))
    return ContactExport(
        exported_at=utcnow(), contact=_detail(session, principal.tenant_id, data.contact),
        conversations=[ConversationRead.model_validate(c) for c in data.conversations],
        messages=[MessageRead.model_validate(m) for m in data.messages],
        appointments=[service.appointment_view(a) for a in data.appointments],
    )


@router.delete("/contacts/{contact_id}", status_code=http.HTTP_204_NO_CONTENT, tags=["contacts"])
def erase_contact(contact_id: uuid.UUID, request: Request, session: DbSession,
                  principal: tenant_with("contacts:write")) -> Response:
    """Erase the person's data (LGPD), in one transaction: name, phone, e-mail and locale
    from the contact, their consents, the address in their conversations (replaced by a
    pseudonym), the bodies and media of their messages, and their appointments' contact
    fields. The rows stay, so counts by channel, status and day still add up; the contact
    is not found afterwards."""
    lgpd.erase_contact(session=session, tenant_id=principal.tenant_id, contact_id=contact_id)
    _audit(session, request, principal, "contact.erased", str(contact_id))
    return Response(status_code=http.HTTP_204_NO_CONTENT)


# --- auto-replies -----------------------------------------------------------------------------


@router.get("/auto-replies", response_model=AutoReplyList, tags=["auto-replies"])
def list_auto_replies(session: DbSession, principal: tenant_with("messages:read")) -> AutoReplyList:
    """The tenant's keyword rules, in the order they are tried (the first match answers)."""
    return AutoReplyList(data=[AutoReplyRead.model_validate(r) for r in
                               service.list_auto_replies(session=session, tenant_id=principal.tenant_id)])


@router.post("/auto-replies", status_code=http.HTTP_201_CREATED, response_model=AutoReplyRead,
             tags=["auto-replies"])
def create_auto_reply(rule_in: AutoReplyCreate, session: DbSession,
                      principal: tenant_with("messages:write")) -> AutoReplyRead:
    """Add a keyword rule: an inbound message containing one of ``keywords`` is answered
    with ``reply``, at most once per conversation per rule in 24 hours. Opt-out/opt-in
    keywords (STOP, SAIR, …) are reserved and take precedence."""
    return AutoReplyRead.model_validate(service.create_auto_reply(session=session, tenant_id=principal.tenant_id,
                                                                  rule_in=rule_in))


@router.get("/auto-replies/{rule_id}", response_model=AutoReplyRead, tags=["auto-replies"])
def get_auto_reply(rule_id: uuid.UUID, session: DbSession, principal: tenant_with("messages:read")) -> AutoReplyRead:
    """One keyword rule."""
    return AutoReplyRead.model_validate(service.get_auto_reply(session=session, tenant_id=principal.tenant_id,
                                                               rule_id=rule_id))


@router.patch("/auto-replies/{rule_id}", response_model=AutoReplyRead, tags=["auto-replies"])
def update_auto_reply(rule_id: uuid.UUID, rule_in: AutoReplyUpdate, session: DbSession,
                      principal: tenant_with("messages:write")) -> AutoReplyRead:
    """Change the fields sent."""
    return AutoReplyRead.model_validate(service.update_auto_reply(session=session, tenant_id=principal.tenant_id,
                                                                  rule_id=rule_id, rule_in=rule_in))


@router.delete("/auto-replies/{rule_id}", status_code=http.HTTP_204_NO_CONTENT, tags=["auto-replies"])
def delete_auto_reply(rule_id: uuid.UUID, session: DbSession, principal: tenant_with("messages:write")) -> Response:
    """Remove a keyword rule."""
    service.delete_auto_reply(session=session, tenant_id=principal.tenant_id, rule_id=rule_id)
    return Response(status_code=http.HTTP_204_NO_CONTENT)


def _hours(session, tenant_id: uuid.UUID, hours: BusinessHours) -> BusinessHoursRead:
    return BusinessHoursRead(
        schedule=hours.schedule or {}, holidays=hours.holidays or [], after_hours_reply=hours.after_hours_reply,
        enabled=hours.enabled, updated_at=hours.updated_at,
        time_zone=service.tenant_time_zone(session=session, tenant_id=tenant_id),
        open_now=service.open_now(session=session, tenant_id=tenant_id, hours=hours),
    )


@router.get("/business-hours", response_model=BusinessHoursRead, tags=["auto-replies"])
def get_business_hours(session: DbSession, principal: tenant_with("messages:read")) -> BusinessHoursRead:
    """The weekly schedule (in the tenant's time zone), holidays and the after-hours reply."""
    return _hours(session, principal.tenant_id,
                  service.get_business_hours(session=session, tenant_id=principal.tenant_id))


@router.put("/business-hours", response_model=BusinessHoursRead, tags=["auto-replies"])
def put_business_hours(hours_in: BusinessHoursWrite, session: DbSession,
                       principal: tenant_with("messages:write")) -> BusinessHoursRead:
    """Replace the business hours. Outside them (and all day on a holiday) an inbound
    message gets ``after_hours_reply`` once per conversation per closed period, unless a
    keyword rule answered it."""
    return _hours(session, principal.tenant_id,
                  service.put_business_hours(session=session, tenant_id=principal.tenant_id, hours_in=hours_in))
