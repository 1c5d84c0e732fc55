"""The Google Calendar installer: a grant comes only through the OAuth connect flow
(POST /v1/integrations/google/connect); removing it stops the watch channels and
revokes the grant at Google (see hub.integrations.installers)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from hub.calendar import flows
from hub.calendar.tokens import GOOGLE_KIND
from hub.errors import Conflict

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from hub.integrations.installers import Actor
    from hub.runtime import Runtime
    from tenants.models import Integration
    from tenants.schemas import IntegrationWrite


class GoogleCalendarInstaller:
    kind = GOOGLE_KIND

    def install(self, *, session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                integration_in: IntegrationWrite) -> Integration:
        raise Conflict("Google Calendar is connected by its owner's consent, not with credentials: "
                       "POST /v1/integrations/google/connect and open the URL it returns",
                       code="use_connect_flow")

    def uninstall(self, *, session: Session, runtime: Runtime, integration: Integration, actor: Actor) -> None:
        flows.disconnect(runtime=runtime, session=session, tenant_id=integration.tenant_id, actor=actor.name,
                         ip=actor.ip, request_id=actor.request_id)
