"""The Twilio installer: a bring-your-own account is checked and its numbers routed;
removing an integration the hub provisioned releases its numbers and closes its
subaccount first (see hub.integrations.installers)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from hub.onboarding import flows
from hub.onboarding.service import TWILIO, install_twilio
from tenants import service as tenants

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from hub.integrations.installers import Actor
    from hub.runtime import Runtime
    from tenants.models import Integration
    from tenants.schemas import IntegrationWrite


class TwilioInstaller:
    kind = TWILIO

    def install(self, *, session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                integration_in: IntegrationWrite) -> Integration:
        return install_twilio(session=session, runtime=runtime, tenant_id=tenant_id, integration_in=integration_in)

    def uninstall(self, *, session: Session, runtime: Runtime, integration: Integration, actor: Actor) -> None:
        flows.teardown_twilio(runtime=runtime, session=session, integration=integration, actor=actor.name,
                              ip=actor.ip, request_id=actor.request_id)
        tenants.delete_integration(session=session, tenant_id=integration.tenant_id, kind=TWILIO)
