"""The Graph API version of every WhatsApp Cloud API call is one platform setting
(HUB_WHATSAPP_GRAPH_VERSION), and `hub check` fails 90 days before Meta retires it:
the hub used to copy v21.0 (retired 2027-01-21) into each tenant's stored config."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import pytest
from sqlalchemy import select

from connectors.whatsapp_cloud.versions import CURRENT_VERSION, expires_on
from hub.checks import configuration_report
from hub.providers import connector_for
from hub.settings import Settings
from tenants.models import Integration
from tests.whatsapp.whatsapp_support import whatsapp_tenant


def graph_row(version: str, today: date):
    settings = Settings(env="development", whatsapp_graph_version=version)
    [row] = [r for r in configuration_report(settings, today=today)["integrations"]
             if r.name == "HUB_WHATSAPP_GRAPH_VERSION"]
    return row


@pytest.mark.parametrize(("version", "today", "ok", "says"), [
    ("v21.0", date(2026, 12, 6), False, "retired by Meta on 2027-01-21 (46 days)"),
    ("v21.0", date(2026, 10, 1), True, "supported until 2027-01-21"),
    ("v20.0", date(2026, 12, 6), False, "was retired by Meta on 2026-09-24"),
    ("v26.0", date(2026, 12, 6), True, "no retirement announced"),
    ("v14.0", date(2026, 12, 6), False, "was retired"),  # older than the table: long gone
])
def test_hub_check_warns_ninety_days_ahead(version, today, ok, says):
    row = graph_row(version, today)
    assert row.ok is ok and says in row.detail


def test_hub_check_fails_on_a_retired_version(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_VAR_DIR=str(tmp_path), HUB_WHATSAPP_GRAPH_VERSION="v20.0")
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "check"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "MISSING HUB_WHATSAPP_GRAPH_VERSION" in proc.stdout
    assert f"set {CURRENT_VERSION}" in proc.stdout


def test_the_platform_version_wins_over_a_tenants_stored_copy(runtime):
    tenant = whatsapp_tenant(runtime, "clinica")
    with runtime.session_factory() as session, session.begin():
        integration = session.scalar(select(Integration).where(Integration.id == tenant.integration_id))
        assert "api_version" not in integration.config  # new installs store none
        integration.config = {**integration.config, "api_version": "v21.0"}  # as older releases stored it
    runtime.settings.whatsapp_graph_version = "v25.0"
    with runtime.session_factory() as session:
        integration = session.get(Integration, tenant.integration_id)
        connector = connector_for(runtime, session, integration)
    assert connector._path("123", "messages") == "/v25.0/123/messages"


def test_the_table_follows_metas_schedule():
    assert expires_on(CURRENT_VERSION) is None
    assert expires_on("v25.0") == date(2028, 7, 29) and expires_on("v99.0") is None
