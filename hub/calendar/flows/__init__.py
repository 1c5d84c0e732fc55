"""Google Calendar orchestration, one module per seam:

- ``connect``   the OAuth connect flow (signed single-use state, PKCE) and disconnect;
- ``channels``  watch channels (open, renew, stop) and the push notifications they bring;
- ``sync``      pulling Google's changes into busy time and appointments;
- ``push``      writing appointments to Google;
- ``mirror``    the fields both sides keep equal and the conflict policy;
- ``resources`` the per-calendar lease and view the jobs share.

Appointment reminders are a notification, not a sync: ``hub.calendar.reminders``.
The names below are the package's face (tasks, API routes, the webhook dispatcher).
"""

from hub.calendar.flows.channels import (
    on_calendar_changed,
    reconcile,
    renew_channels,
    resume_tenant,
    stop_channel,
    webhook_address,
)
from hub.calendar.flows.connect import (
    COOKIE_PATH,
    PAGE_HEADERS,
    START_PATH,
    STATE_AUDIENCE,
    ConnectOutcome,
    browser_cookie,
    complete_connect,
    disconnect,
    open_connect_flow,
    result_page,
    sign_state,
    start_connect,
)
from hub.calendar.flows.mirror import apply_google_event
from hub.calendar.flows.push import push_appointment
from hub.calendar.flows.sync import sync_resource

__all__ = [
    "COOKIE_PATH",
    "PAGE_HEADERS",
    "START_PATH",
    "STATE_AUDIENCE",
    "ConnectOutcome",
    "apply_google_event",
    "browser_cookie",
    "complete_connect",
    "disconnect",
    "on_calendar_changed",
    "open_connect_flow",
    "push_appointment",
    "reconcile",
    "renew_channels",
    "result_page",
    "resume_tenant",
    "sign_state",
    "start_connect",
    "stop_channel",
    "sync_resource",
    "webhook_address",
]
