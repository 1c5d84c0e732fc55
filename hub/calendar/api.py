"""The Google connection, calendar mappings, appointments and the sync log. The tenant
is the token's; Google's redirect back (``/oauth/google/callback``) is public."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi import status as http
from fastapi.responses import HTMLResponse, RedirectResponse

from connectors.base import PermanentProviderError, TransientProviderError
from hub.audit import service as audit
from hub.auth.deps import PublicRoute, client_ip, request_id, tenant_with
from hub.calendar import clients, flows, service
from hub.calendar.models import Appointment, CalendarResource, ResourceStatus
from hub.calendar.schemas import (
    RESOURCE_ID_PATTERN,
    AppointmentCreate,
    AppointmentRead,
    AppointmentUpdate,
    CalendarMappingRead,
    CalendarMappingWrite,
    ChannelRead,
    ConnectStart,
    ConnectStarted,
    ContactRead,
    GoogleCalendarRead,
    GoogleConnectionRead,
    GoogleOAuthClientRead,
    GoogleOAuthClientWrite,
    GoogleSyncRead,
    ReminderRead,
    SyncLogRead,
)
from hub.calendar.tokens import GOOGLE_KIND, calendar_connector, get_connection
from hub.deps import DbSession, HubRuntime
from hub.errors import AUTHENTICATED_ERRORS, NotFound, ProviderRejected, Unavailable, error_responses
from hub.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRead
from hub.tenant_time import UtcQueryTime
from tenants.vault import mask_secret

router = APIRouter(prefix="/v1", responses=AUTHENTICATED_ERRORS)
public_router = APIRouter(tags=["google"])

IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=255,
    description="repeat a booking safely: the same key and body return the first answer "
                "(with Idempotent-Replay: true); a key still in progress is a 409; another body, a 422",
)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
ResourcePath = Annotated[str, Path(pattern=RESOURCE_ID_PATTERN, description="the tenant's own id of the resource")]
GOOGLE_ERRORS = error_responses(409, 502)


def _audit(session, request: Request, principal, action: str, target: str, details: dict) -> None:
    audit.record(session=session, tenant_id=principal.tenant_id, actor=principal.actor, action=action,
                 target=target, ip=client_ip(request), request_id=request_id(request), details=details)


# --- the Google connection ----------------------------------------------------------------


@router.post("/integrations/google/connect", response_model=ConnectStarted, tags=["google"],
             responses=error_responses(503))
def connect_google(request: Request, session: DbSession, runtime: HubRuntime,
                   principal: tenant_with("integrations:write"),
                   connect_in: Annotated[ConnectStart | None, Body()] = None) -> ConnectStarted:
    """Start connecting the tenant's Google Calendar: open ``authorization_url`` (a link
    on the hub) within 10 minutes in the browser of the person who will approve. It works
    once, in the first browser that opens it, which it sends on to Google's consent page;
    Google sends that browser back to ``/oauth/google/callback``, which stores the
    connection and shows a result page (a consent given in another browser connects
    nothing). ``account_email`` names the Google account: Google is asked to sign it in,
    and another account is refused. One Google account connects one tenant. Connecting
    again (e.g. after ``needs_reauth``) replaces the tokens."""
    account = connect_in.account_email if connect_in else None
    url, expires_at = flows.start_connect(runtime=runtime, session=session, tenant_id=principal.tenant_id,
                                          account_email=account)
    _audit(session, request, principal, "integration.google_connect_started", GOOGLE_KIND,
           {"account_email": account} if account else {})
    return ConnectStarted(authorization_url=url, expires_at=expires_at)


@router.get("/integrations/google", response_model=GoogleConnectionRead, tags=["google"])
def google_connection(session: DbSession, principal: tenant_with("integrations:read")) -> GoogleConnectionRead:
    """The Google connection: ``active``, or ``needs_reauth`` (with ``last_error``) when
    Google refused the grant and the tenant must connect again."""
    integration = get_connection(session=session, tenant_id=principal.tenant_id)
    connected_at = integration.config.get("connected_at")
    mapped = [r for r in service.list_resources(session=session, tenant_id=principal.tenant_id)
              if r.status == ResourceStatus.ACTIVE]
    return GoogleConnectionRead(
        status=integration.status, account_email=integration.config.get("account_email"),
        oauth_client_id=integration.config.get("oauth_client_id"),
        scopes=list(integration.config.get("scopes") or []),
        connected_at=datetime.fromisoformat(connected_at) if connected_at else None,
        last_error=integration.last_error, last_error_at=integration.last_error_at, calendars_mapped=len(mapped),
    )


@router.delete("/integrations/google", status_code=http.HTTP_204_NO_CONTENT, tags=["google"])
def disconnect_google(request: Request, session: DbSession, runtime: HubRuntime,
                      principal: tenant_with("integrations:write")) -> Response:
    """Disconnect Google: stop every watch channel, revoke the grant at Google, delete
    the tokens. Mappings stay (without sync); appointments stay."""
    flows.disconnect(runtime=runtime, session=session, tenant_id=principal.tenant_id, actor=principal.actor,
                     ip=client_ip(request), request_id=request_id(request))
    return Response(status_code=http.HTTP_204_NO_CONTENT)


@router.get("/google/calendars", response_model=list[GoogleCalendarRead], tags=["google"],
            responses=GOOGLE_ERRORS)
def google_calendars(session: DbSession, runtime: HubRuntime,
                     principal: tenant_with("calendar:read")) -> list[GoogleCalendarRead]:
    """The calendars of the connected Google account (ids to map resources to)."""
    integration = service.active_integration(session=session, tenant_id=principal.tenant_id)
    connector = calendar_connector(runtime, session=session, integration=integration)
    try:
        calendars = connector.list_calendars()
    except TransientProviderError as exc:
        raise Unavailable(f"Google is unavailable: {exc.message}", code="google_unavailable") from exc
    except PermanentProviderError as exc:
        raise ProviderRejected(f"Google refused to list calendars: {exc.message}") from exc
    return [GoogleCalendarRead(id=c.id, summary=c.summary, time_zone=c.time_zone, primary=c.primary,
                               access_role=c.access_role) for c in calendars]


_HTML = {"text/html": {"schema": {"type": "string"}}}


@router.put("/integrations/google/oauth-client", response_model=GoogleOAuthClientRead, tags=["google"],
            responses=error_responses(409, 503))
def put_google_oauth_client(client_in: GoogleOAuthClientWrite, request: Request, session: DbSession,
                            runtime: HubRuntime, principal: tenant_with("integrations:write")) -> GoogleOAuthClientRead:
    """Use the clinic's own Google OAuth client instead of the platform's: connect,
    refresh and revoke go through it. Google is asked first whether it knows the client
    (422 ``google_client_rejected`` otherwise). Register the answer's ``redirect_uri`` on
    the client. A new client id is refused (409) while Google is connected through
    another client: disconnect first; the same id with a new secret rotates it."""
    row = clients.put_tenant_client(runtime=runtime, session=session, tenant_id=principal.tenant_id,
                                    client_id=client_in.client_id,
                                    client_secret=client_in.client_secret.get_secret_value())
    _audit(session, request, principal, "integration.google_client_set", GOOGLE_KIND, {"client_id": row.client_id})
    return _oauth_client(runtime, row, client_in.client_secret.get_secret_value())


@router.get("/integrations/google/oauth-client", response_model=GoogleOAuthClientRead, tags=["google"])
def get_google_oauth_client(session: DbSession, runtime: HubRuntime,
                            principal: tenant_with("integrations:read")) -> GoogleOAuthClientRead:
    """The clinic's own Google OAuth client (404 ``google_client_not_set``: the platform's is used)."""
    row = clients.tenant_client_row(session=session, tenant_id=principal.tenant_id)
    if row is None:
        raise NotFound("no Google OAuth client of your own is set", code="google_client_not_set")
    return _oauth_client(runtime, row, clients.tenant_client_secret(runtime, session, row))


@router.delete("/integrations/google/oauth-client", status_code=http.HTTP_204_NO_CONTENT, tags=["google"],
               responses=error_responses(409))
def delete_google_oauth_client(request: Request, session: DbSession,
                               principal: tenant_with("integrations:write")) -> Response:
    """Go back to the platform's OAuth client (409 while Google is connected through this one)."""
    clients.delete_tenant_client(session=session, tenant_id=principal.tenant_id)
    _audit(session, request, principal, "integration.google_client_removed", GOOGLE_KIND, {})
    return Response(status_code=http.HTTP_204_NO_CONTENT)


def _oauth_client(runtime, row, secret: str) -> GoogleOAuthClientRead:
    return GoogleOAuthClientRead(client_id=row.client_id, client_secret=mask_secret(secret),
                                 redirect_uri=clients.redirect_uri(runtime), created_at=row.created_at,
                                 updated_at=row.updated_at or row.created_at)


@public_router.get(
    flows.START_PATH, response_class=HTMLResponse, dependencies=[PublicRoute],
    responses={
        303: {"description": "bound to this browser (a cookie): on to Google's consent page"},
        400: {"description": "opened already (in this or another browser) or expired: an HTML page",
              "content": _HTML},
        **error_responses(422, 429),
    },
)
def google_start(request: Request, session: DbSession, runtime: HubRuntime,
                 flow: Annotated[str, Query(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]) -> Response:
    """The start link of a connect flow: the first browser to open it is bound to the
    flow and sent to Google; the link works no more."""
    binding = flows.open_connect_flow(runtime=runtime, session=session, flow=flow, ip=client_ip(request),
                                      request_id=request_id(request))
    if binding is None:
        outcome = flows.ConnectOutcome(False, 400, "This link was already opened (it works once, in the browser "
                                                   "that opens it first) or has expired. Start again from your "
                                                   "account.")
        return HTMLResponse(flows.result_page(outcome), status_code=400, headers=flows.PAGE_HEADERS)
    response = RedirectResponse(binding.authorization_url, status_code=http.HTTP_303_SEE_OTHER,
                                headers=flows.PAGE_HEADERS)
    response.set_cookie(binding.cookie_name, binding.cookie_value, max_age=binding.max_age, path=flows.COOKIE_PATH,
                        secure=binding.secure, httponly=True, samesite="lax")
    return response


@public_router.get(
    "/oauth/google/callback", response_class=HTMLResponse, dependencies=[PublicRoute],
    responses={
        200: {"description": "connected: a plain HTML page", "content": _HTML},
        400: {"description": "refused (an HTML page): a replayed, expired, tampered or foreign state, a browser "
                             "that did not open the flow, another account than the one named, or Google refused "
                             "the code", "content": _HTML},
        409: {"description": "the Google account is connected to another tenant (an HTML page)", "content": _HTML},
        502: {"description": "Google did not answer (an HTML page); start again", "content": _HTML},
        **error_responses(422, 429),
    },
)
def google_callback(request: Request, session: DbSession, runtime: HubRuntime,
                    state: Annotated[str | None, Query(max_length=4096)] = None,
                    code: Annotated[str | None, Query(max_length=2048)] = None,
                    error: Annotated[str | None, Query(max_length=256)] = None) -> HTMLResponse:
    """Where Google sends the browser after consent: checks the single-use ``state`` and
    that this browser opened the flow, exchanges ``code`` (PKCE), checks the account,
    stores the tokens sealed, and shows a plain result page."""
    outcome = flows.complete_connect(runtime=runtime, session=session, state=state, code=code, error=error,
                                     cookies=request.cookies, ip=client_ip(request), request_id=request_id(request))
    response = HTMLResponse(flows.result_page(outcome), status_code=outcome.status_code, headers=flows.PAGE_HEADERS)
    if outcome.cookie_name:
        response.delete_cookie(outcome.cookie_name, path=flows.COOKIE_PATH, secure=runtime.settings.public_url_is_https,
                               httponly=True, samesite="lax")
    return response


# --- calendar mappings ------------------------------------------------------------------------


def _mapping(resource: CalendarResource) -> CalendarMappingRead:
    return CalendarMappingRead(
        resource_id=resource.resource_id, name=resource.name, kind=resource.kind, status=resource.status,
        calendar_id=resource.calendar_id, calendar_time_zone=resource.calendar_time_zone,
        channel=ChannelRead(status=resource.channel_status, expires_at=resource.channel_expires_at,
                            error=resource.channel_error),
        last_synced_at=resource.last_synced_at, last_sync_error=resource.last_sync_error,
        created_at=resource.created_at, updated_at=resource.updated_at,
    )


@router.get("/calendars", response_model=list[CalendarMappingRead], tags=["calendar"])
def list_calendars(session: DbSession, principal: tenant_with("calendar:read")) -> list[CalendarMappingRead]:
    """Every resource mapped to a Google calendar, with its channel and sync state."""
    return [_mapping(r) for r in service.list_resources(session=session, tenant_id=principal.tenant_id)]


@router.put("/calendars/{resource_id}", response_model=CalendarMappingRead, tags=["calendar"],
            responses=GOOGLE_ERRORS)
def map_calendar(resource_id: ResourcePath, mapping_in: CalendarMappingWrite, request: Request,
                 session: DbSession, runtime: HubRuntime,
                 principal: tenant_with("calendar:write")) -> CalendarMappingRead:
    """Map a professional, room or technician to one of the account's calendars. A
    worker then opens the calendar's watch channel and loads its events (``channel``
    goes ``starting`` → ``active``). 409 when moving a resource with upcoming
    appointments to another calendar."""
    resource = service.map_calendar(runtime=runtime, session=session, tenant_id=principal.tenant_id,
                                    resource_id=resource_id, mapping_in=mapping_in)
    _audit(session, request, principal, "calendar.mapped", resource_id,
           {"calendar_id": resource.calendar_id, "kind": resource.kind})
    return _mapping(resource)


@router.get("/calendars/{resource_id}", response_model=CalendarMappingRead, tags=["calendar"])
def get_calendar(resource_id: ResourcePath, session: DbSession,
                 principal: tenant_with("calendar:read")) -> CalendarMappingRead:
    """One resource's mapping, channel and sync state."""
    return _mapping(service.get_resource(session=session, tenant_id=principal.tenant_id, resource_id=resource_id))


@router.delete("/calendars/{resource_id}", status_code=http.HTTP_204_NO_CONTENT, tags=["calendar"],
               responses=error_responses(409))
def unmap_calendar(resource_id: ResourcePath, request: Request, session: DbSession, runtime: HubRuntime,
                   principal: tenant_with("calendar:write")) -> Response:
    """Stop syncing a resource's calendar (its watch channel is stopped). 409 while it has
    upcoming appointments."""
    service.unmap_calendar(runtime=runtime, session=session, tenant_id=principal.tenant_id, resource_id=resource_id)
    _audit(session, request, principal, "calendar.unmapped", resource_id, {})
    return Response(status_code=http.HTTP_204_NO_CONTENT)


@router.get("/calendars/{resource_id}/sync-log", response_model=PageRead[SyncLogRead], tags=["calendar"])
def read_sync_log(resource_id: ResourcePath, session: DbSession, principal: tenant_with("calendar:read"),
                  action: Annotated[str | None, Query(max_length=64)] = None, limit: Limit = DEFAULT_LIMIT,
                  cursor: Cursor = None) -> PageRead[SyncLogRead]:
    """What the two-way sync did for this resource, newest first: Google changes applied
    to appointments, conflict resolutions (the newer change wins), full resyncs."""
    page = service.sync_log(session=session, tenant_id=principal.tenant_id, resource_id=resource_id, action=action,
                            limit=limit, cursor=cursor)
    return PageRead[SyncLogRead](data=[SyncLogRead.model_validate(e) for e in page.items],
                                 next_cursor=page.next_cursor)


# --- appointments ------------------------------------------------------------------------------


def _appointment(appointment: Appointment, resource: CalendarResource) -> AppointmentRead:
    return AppointmentRead(
        id=appointment.id, resource_id=resource.resource_id, status=appointment.status,
        start=appointment.start_at, end=appointment.end_at, time_zone=appointment.time_zone,
        title=appointment.title, notes=appointment.notes, location=appointment.location,
        contact=ContactRead(name=appointment.contact_name, phone=appointment.contact_phone,
                            email=appointment.contact_email),
        reminder=ReminderRead(remind_at=appointment.remind_at, reminded_at=appointment.reminded_at,
                              channel=appointment.reminder_channel, message_id=appointment.reminder_message_id,
                              error=appointment.reminder_error),
        google=GoogleSyncRead(event_id=appointment.google_event_id, state=appointment.sync_state,
                              synced_at=appointment.google_synced_at, last_error=appointment.last_sync_error),
        changed_by=appointment.changed_by, cancelled_at=appointment.cancelled_at,
        created_at=appointment.created_at, updated_at=appointment.updated_at,
    )


def _one(session, tenant_id: uuid.UUID, appointment: Appointment) -> AppointmentRead:
    resources = service.resources_of(session=session, tenant_id=tenant_id, appointments=[appointment])
    return _appointment(appointment, resources[appointment.resource_pk])


@router.post("/appointments", status_code=http.HTTP_201_CREATED, response_model=AppointmentRead,
             tags=["calendar"], responses=GOOGLE_ERRORS)
def create_appointment(appointment_in: AppointmentCreate, response: Response, session: DbSession,
                       runtime: HubRuntime, principal: tenant_with("calendar:write"),
                       idempotency_key: IdempotencyKey = None) -> AppointmentRead:
    """Book a resource. The slot is checked against the tenant's appointments, the busy
    time of events made in Google, and Google's free/busy for the resource's calendar;
    a conflict is a 409 ``slot_unavailable`` whose ``details.busy`` lists the busy
    intervals. Naive times are read in ``time_zone`` (default: the tenant's).

    The answer comes once the booking is stored; the Google event (id derived from the
    appointment's, so a retry never duplicates it) is written right after by a worker:
    ``google.state`` goes ``pending`` → ``synced``. A reminder (template
    ``appointment-reminder``) goes to the contact ``remind_before_minutes`` before the
    start (default 24 h), once."""
    appointment, replayed = service.create_appointment(runtime=runtime, session=session,
                                                       tenant_id=principal.tenant_id, appointment_in=appointment_in,
                                                       idempotency_key=idempotency_key)
    if replayed:
        response.headers["Idempotent-Replay"] = "true"
    return _one(session, principal.tenant_id, appointment)


@router.get("/appointments", response_model=PageRead[AppointmentRead], tags=["calendar"])
def list_appointments(
    session: DbSession,
    principal: tenant_with("calendar:read"),
    resource_id: Annotated[str | None, Query(max_length=128)] = None,
    status: Literal["confirmed", "cancelled"] | None = None,
    start_from: Annotated[UtcQueryTime | None, Query(description="appointments starting at or after (with an offset)")
                          ] = None,
    start_to: Annotated[UtcQueryTime | None, Query(description="appointments starting before (with an offset)")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> PageRead[AppointmentRead]:
    """The tenant's appointments, oldest booking first."""
    page = service.list_appointments(session=session, tenant_id=principal.tenant_id, resource_id=resource_id,
                                     status=status, start_from=start_from, start_to=start_to, limit=limit,
                                     cursor=cursor)
    resources = service.resources_of(session=session, tenant_id=principal.tenant_id, appointments=page.items)
    return PageRead[AppointmentRead](data=[_appointment(a, resources[a.resource_pk]) for a in page.items],
                                     next_cursor=page.next_cursor)


@router.get("/appointments/{appointment_id}", response_model=AppointmentRead, tags=["calendar"])
def get_appointment(appointment_id: uuid.UUID, session: DbSession,
                    principal: tenant_with("calendar:read")) -> AppointmentRead:
    """One appointment, with its Google sync state and reminder."""
    appointment = service.get_appointment(session=session, tenant_id=principal.tenant_id,
                                          appointment_id=appointment_id)
    return _one(session, principal.tenant_id, appointment)


@router.patch("/appointments/{appointment_id}", response_model=AppointmentRead, tags=["calendar"],
              responses=GOOGLE_ERRORS)
def update_appointment(appointment_id: uuid.UUID, appointment_in: AppointmentUpdate, session: DbSession,
                       runtime: HubRuntime, principal: tenant_with("calendar:write")) -> AppointmentRead:
    """Change an appointment; a new time is checked for conflicts as a booking is. The
    change reaches Google right after (``google.state`` ``pending`` → ``synced``)."""
    appointment = service.update_appointment(runtime=runtime, session=session, tenant_id=principal.tenant_id,
                                             appointment_id=appointment_id, appointment_in=appointment_in)
    return _one(session, principal.tenant_id, appointment)


@router.delete("/appointments/{appointment_id}", status_code=http.HTTP_204_NO_CONTENT, tags=["calendar"])
def cancel_appointment(appointment_id: uuid.UUID, session: DbSession, runtime: HubRuntime,
                       principal: tenant_with("calendar:write")) -> Response:
    """Cancel an appointment: its Google event is deleted and no reminder is sent."""
    service.cancel_appointment(runtime=runtime, session=session, tenant_id=principal.tenant_id,
                               appointment_id=appointment_id)
    return Response(status_code=http.HTTP_204_NO_CONTENT)

