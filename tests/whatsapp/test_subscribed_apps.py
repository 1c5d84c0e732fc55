"""Meta sends a WhatsApp Business account's webhooks only to apps subscribed to it
(POST /{waba_id}/subscribed_apps). The install subscribes; the sandbox sends nothing for
an account nobody subscribed to; the integration's check says so."""

from __future__ import annotations

import httpx
import pytest

from connectors.sandbox.meta import InboundMessage, NotSubscribed
from hub.providers import connector_for
from tenants import service as tenants
from tests.whatsapp.test_whatsapp_live import WABA_ID, clinic, hub  # noqa: F401 - fixtures


def test_the_install_subscribes_and_a_lost_subscription_shows_in_the_check(hub, clinic):  # noqa: F811
    tenant_id, headers, phone_number_id = clinic
    meta = hub.sandbox.meta
    assert meta.subscribed(WABA_ID)  # the hub's install subscribed through the Graph API
    with hub.runtime.session_factory() as session:
        integration = tenants.get_integration(session=session, tenant_id=tenant_id, kind="whatsapp_cloud")
        connector = connector_for(hub.runtime, session, integration)
    assert connector.check().ok and "webhooks subscribed" in connector.check().detail

    # someone removes the app from the account in Meta's dashboard
    answer = httpx.delete(f"{hub.sandbox_url}/{hub.runtime.settings.whatsapp_graph_version}/{WABA_ID}/subscribed_apps",
                          headers={"Authorization": "Bearer anything"})
    assert answer.json() == {"success": True}
    health = connector.check()
    assert not health.ok and f"no app is subscribed to WABA {WABA_ID}" in health.detail
    with pytest.raises(NotSubscribed):
        meta.simulate_inbound([InboundMessage(phone_number_id=phone_number_id, **{"from": "5511987654321"})])

    # installing again subscribes again
    with hub.runtime.session_factory() as session:
        creds = tenants.open_credentials(session=session, vault=hub.runtime.vault, integration=integration)
    assert hub.http.put("/v1/integrations/whatsapp_cloud", headers=headers,
                        json={"credentials": creds}).status_code == 200
    assert meta.subscribed(WABA_ID) and connector.check().ok
