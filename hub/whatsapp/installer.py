"""The WhatsApp Cloud installer: the phone number ID is routed to the integration and
its verify token answers Meta's handshake (see hub.integrations.installers)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from hub.whatsapp.service import WHATSAPP_CLOUD, install_whatsapp_cloud, uninstall_whatsapp_cloud
from tenants import service as tenants

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from hub.integrations.installers import Actor
    from hub.runtime import Runtime
    from tenants.models import Integration
    from tenants.schemas import IntegrationWrite


class WhatsAppCloudInstaller:
    kind = WHATSAPP_CLOUD

    def install(self, *, session: Session, runtime: Runtime, tenant_id: uuid.UUID,
                integration_in: IntegrationWrite) -> Integration:
        return install_whatsapp_cloud(session=session, runtime=runtime, tenant_id=tenant_id,
                                      credentials=integration_in.credentials, config=integration_in.config)

    def uninstall(self, *, session: Session, runtime: Runtime, integration: Integration, actor: Actor) -> None:
        uninstall_whatsapp_cloud(session=session, runtime=runtime, integration=integration)
        tenants.delete_integration(session=session, tenant_id=integration.tenant_id, kind=WHATSAPP_CLOUD)
