"""The vault: round trips, tamper detection, binding to its place, rotation, shredding."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select, text

from hub.db import make_engine, make_session_factory, transaction
from hub.settings import new_master_key_entry, parse_master_keys
from tenants import service
from tenants.models import DataKey
from tenants.schemas import TenantCreate
from tenants.vault import (
    SEALED_PREFIX,
    DataKeyDestroyed,
    SecretCannotBeOpened,
    UnknownMasterKey,
    Vault,
    mask_secret,
)

KNOWN_TOKEN = "a3f9c2e1d4b5a6978812ffee00ddccbb"


def create_tenant(session, vault, slug="acme"):
    tenant = service.create_tenant(session=session, vault=vault, tenant_in=TenantCreate(slug=slug, name=slug))
    session.commit()
    return tenant


def flip_bit(sealed: str, index: int) -> str:
    blob = bytearray(base64.urlsafe_b64decode(sealed[len(SEALED_PREFIX):]))
    blob[index % len(blob)] ^= 0x01
    return SEALED_PREFIX + base64.urlsafe_b64encode(bytes(blob)).decode()


class TestRoundTrip:
    @hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(plaintext=st.binary(max_size=2048), context=st.text(min_size=1, max_size=40))
    def test_any_bytes_round_trip(self, session, runtime, plaintext, context):
        runtime.vault.create_data_key(session, None)
        sealed = runtime.vault.seal(session, tenant_id=None, context=context, plaintext=plaintext)
        assert sealed.startswith(SEALED_PREFIX)
        assert runtime.vault.open_secret(session, tenant_id=None, context=context, sealed=sealed) == plaintext

    def test_same_plaintext_seals_differently(self, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        a = runtime.vault.seal(session, tenant_id=tenant.id, context="x", plaintext="same")
        b = runtime.vault.seal(session, tenant_id=tenant.id, context="x", plaintext="same")
        assert a != b


class TestTamperAndMisplacement:
    @pytest.fixture
    def sealed(self, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        integration_id = uuid.uuid4()
        value = runtime.vault.seal_field(session, tenant_id=tenant.id, integration_id=integration_id,
                                         field_name="auth_token", value=KNOWN_TOKEN)
        return tenant, integration_id, value

    @hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(index=st.integers(min_value=0, max_value=10_000))
    def test_a_flipped_bit_is_detected(self, session, runtime, sealed, index):
        tenant, integration_id, value = sealed
        with pytest.raises(SecretCannotBeOpened, match="altered"):
            runtime.vault.open_field(session, tenant_id=tenant.id, integration_id=integration_id,
                                     field_name="auth_token", sealed=flip_bit(value, index))

    def test_wrong_tenant(self, session, runtime, sealed):
        _, integration_id, value = sealed
        other = create_tenant(session, runtime.vault, slug="other")
        with pytest.raises(SecretCannotBeOpened):
            runtime.vault.open_field(session, tenant_id=other.id, integration_id=integration_id,
                                     field_name="auth_token", sealed=value)

    def test_wrong_field(self, session, runtime, sealed):
        tenant, integration_id, value = sealed
        with pytest.raises(SecretCannotBeOpened):
            runtime.vault.open_field(session, tenant_id=tenant.id, integration_id=integration_id,
                                     field_name="api_key", sealed=value)

    def test_copied_to_another_integration_row(self, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        twilio = service.put_integration(session=session, vault=runtime.vault, tenant_id=tenant.id,
                                         kind="twilio", credentials={"auth_token": KNOWN_TOKEN}, config={})
        smtp = service.put_integration(session=session, vault=runtime.vault, tenant_id=tenant.id,
                                       kind="smtp", credentials={"auth_token": "other"}, config={})
        session.commit()
        smtp.credentials = {"auth_token": twilio.credentials["auth_token"]}
        session.commit()
        with pytest.raises(SecretCannotBeOpened):
            service.open_credentials(session=session, vault=runtime.vault, integration=smtp)

    def test_garbage_is_refused_clearly(self, session, runtime, sealed):
        tenant, integration_id, _ = sealed
        for garbage in ("plain", SEALED_PREFIX + "!!!", SEALED_PREFIX + "AAAA"):
            with pytest.raises(SecretCannotBeOpened):
                runtime.vault.open_field(session, tenant_id=tenant.id, integration_id=integration_id,
                                         field_name="auth_token", sealed=garbage)


class TestRotation:
    def test_rotation_rewraps_and_every_secret_stays_readable(self, settings, session, runtime):
        tenants = [create_tenant(session, runtime.vault, slug=f"t{i}") for i in range(5)]
        integrations = [
            service.put_integration(session=session, vault=runtime.vault, tenant_id=t.id, kind="twilio",
                                    credentials={"auth_token": f"token-{i}"}, config={})
            for i, t in enumerate(tenants)
        ]
        session.commit()
        old = settings.master_keys.get_secret_value()
        new_entry = new_master_key_entry()
        rotated = Vault(parse_master_keys(f"{new_entry},{old}"))

        report = rotated.rotate(runtime.session_factory, batch_size=2)
        assert (report.rewrapped, report.failed) == (5, [])
        assert rotated.rotate(runtime.session_factory).rewrapped == 0  # resumable: nothing left to do

        only_new = Vault(parse_master_keys(new_entry))
        session.expire_all()
        for i, integration in enumerate(integrations):
            assert service.open_credentials(session=session, vault=only_new, integration=integration) == {
                "auth_token": f"token-{i}"
            }
        assert {row.master_key_id for row in session.scalars(select(DataKey))} == {only_new.active_key_id}

    def test_a_key_missing_from_the_ring_is_reported_not_skipped_silently(self, session, runtime):
        create_tenant(session, runtime.vault)
        stranger = Vault(parse_master_keys(new_master_key_entry()))
        report = stranger.rotate(runtime.session_factory)
        assert report.rewrapped == 0 and len(report.failed) == 1
        assert "not in HUB_MASTER_KEYS" in report.failed[0]
        with pytest.raises(UnknownMasterKey):
            stranger.open_secret(session, tenant_id=None, context="x", sealed=runtime.vault.seal(
                session, tenant_id=None, context="x", plaintext="y"))


class TestErase:
    def test_after_erase_nothing_opens(self, settings, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        integration = service.put_integration(session=session, vault=runtime.vault, tenant_id=tenant.id,
                                              kind="twilio", credentials={"auth_token": KNOWN_TOKEN}, config={})
        sealed_copy = dict(integration.credentials)
        session.commit()
        service.erase_tenant(session=session, vault=runtime.vault, tenant_id=tenant.id)
        session.commit()
        # a fresh vault has no cached key either
        fresh = Vault(settings.master_key_ring)
        with pytest.raises(DataKeyDestroyed):
            fresh.open_field(session, tenant_id=tenant.id, integration_id=integration.id,
                             field_name="auth_token", sealed=sealed_copy["auth_token"])
        with pytest.raises(DataKeyDestroyed):
            runtime.vault.open_field(session, tenant_id=tenant.id, integration_id=integration.id,
                                     field_name="auth_token", sealed=sealed_copy["auth_token"])


class TestNoPlaintextAtRest:
    def test_raw_storage_holds_no_plaintext(self, settings, session, runtime):
        tenant = create_tenant(session, runtime.vault)
        service.put_integration(session=session, vault=runtime.vault, tenant_id=tenant.id, kind="twilio",
                                credentials={"auth_token": KNOWN_TOKEN}, config={"numbers": ["+5511999990000"]})
        session.commit()
        url = settings.effective_database_url
        if url.startswith("sqlite"):
            runtime.engine.dispose()  # checkpoint: make the WAL's content reach the files we scan
            path = url.removeprefix("sqlite:///")
            raw = b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if Path(p).exists())
            assert b"5511999990000" in raw  # the scan does see the table's content
        else:
            engine = make_engine(url)
            with engine.connect() as conn:
                raw = "".join(
                    str(row) for row in conn.execute(text("SELECT * FROM integrations"))
                ).encode() + b"".join(
                    bytes(row[0] or b"") for row in conn.execute(text("SELECT wrapped_key FROM data_keys"))
                )
            engine.dispose()
            assert b"5511999990000" in raw
        assert KNOWN_TOKEN.encode() not in raw
        assert base64.b64encode(KNOWN_TOKEN.encode()) not in raw


def test_a_mask_shows_at_most_the_last_four_and_nothing_of_a_short_secret():
    assert mask_secret("0123456789abcdef0123456789ab1234") == "…1234"
    assert mask_secret("123456789012") == "…9012"
    assert mask_secret("12345678901") == "…"  # 11 long: its last 4 would be too much of it
    assert mask_secret("short") == "…"
    assert mask_secret("") == ""


def test_transaction_helper_rolls_back(runtime):
    factory = make_session_factory(runtime.engine)
    with pytest.raises(RuntimeError), transaction(factory) as s:
        runtime.vault.create_data_key(s, None)
        raise RuntimeError("boom")
    with factory() as s:
        assert s.get(DataKey, "platform") is None
