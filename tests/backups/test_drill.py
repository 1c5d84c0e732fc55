"""The restore drill: tenants with sealed secrets and data, back up, destroy the database,
restore with `hub backup restore`, and prove every tenant's data is back and its sealed
secrets open again through the vault. Then what must be refused is refused."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hub.app import create_app
from hub.backups import repository, service
from hub.backups.archive import BackupCorrupt, Manifest
from hub.backups.engines import RestoreFailed, TargetNotEmpty
from hub.cli import app as cli
from hub.db import transaction
from hub.migrate import head_revision, upgrade
from hub.runtime import build_runtime
from hub.settings import Settings, new_master_key_entry, parse_master_keys
from tenants import service as tenants
from tenants.models import Integration, Tenant
from tests.scratch_db import drop_postgres_database, empty_database
from tests.support import bearer, create_client, create_tenant, get_token

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
MASTER_KEYS = new_master_key_entry()
KEYS = parse_master_keys(MASTER_KEYS)


@pytest.fixture(params=BACKENDS)
def hub(request, tmp_path, monkeypatch):
    """A migrated database of its own (it gets destroyed) and the CLI's environment for it."""
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")  # skips (or fails in CI) without a server
    with empty_database(request.param, tmp_path) as url:
        upgrade(url)
        env = {"HUB_DATABASE_URL": url, "HUB_MASTER_KEYS": MASTER_KEYS, "HUB_VAR_DIR": str(tmp_path / "var"),
               "HUB_BACKUP_DIR": str(tmp_path / "backups")}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield url, tmp_path / "backups"


def make_runtime(url: str, tmp_path: Path):
    return build_runtime(Settings(env="development", database_url=url, master_keys=MASTER_KEYS,
                                  var_dir=tmp_path / "var", public_url="http://testserver", sandbox=False,
                                  embedded_worker=False, relay_in_process=False))


def hub_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def populate(runtime) -> dict:
    """Three tenants, each with sealed SMTP credentials, an API client and contacts made through
    the API; returns what each should look like after a restore."""
    expected = {}
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        for n in range(3):
            slug = f"clinica-{n}-{secrets.token_hex(2)}"
            tenant_id = create_tenant(runtime, slug)
            creds = create_client(runtime, tenant_id)
            password = f"smtp-pass-{secrets.token_urlsafe(12)}"
            with transaction(runtime.session_factory) as session:
                tenants.put_integration(session=session, vault=runtime.vault, tenant_id=tenant_id, kind="smtp",
                                        credentials={"username": f"{slug}@example.com", "password": password},
                                        config={"host": "smtp.example.com"})
            headers = bearer(get_token(client, creds))
            contacts = []
            for i in range(n + 2):
                made = client.post("/v1/contacts", headers=headers,
                                   json={"name": f"Paciente {i}", "phone": f"+55119{n}{i:07d}"})
                assert made.status_code == 201, made.text
                contacts.append(made.json())
            expected[tenant_id] = {"slug": slug, "creds": creds, "password": password, "contacts": contacts}
    return expected


def assert_restored(runtime, expected: dict) -> None:
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == len(expected)
        for tenant_id, want in expected.items():
            assert session.get(Tenant, tenant_id).slug == want["slug"]
            integration = session.scalar(select(Integration).where(Integration.tenant_id == tenant_id))
            opened = tenants.open_credentials(session=session, vault=runtime.vault, integration=integration)
            assert opened == {"username": f"{want['slug']}@example.com", "password": want["password"]}
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        for want in expected.values():
            # the client's secret hash and the platform's sealed JWT signing key came back too
            headers = bearer(get_token(client, want["creds"]))
            listed = client.get("/v1/contacts?limit=100", headers=headers)
            assert listed.status_code == 200, listed.text
            assert sorted(c["id"] for c in listed.json()["data"]) == sorted(c["id"] for c in want["contacts"])
            one = want["contacts"][0]
            assert client.get(f"/v1/contacts/{one['id']}", headers=headers).json()["phone"] == one["phone"]


def destroy(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.database + suffix).unlink(missing_ok=True)
    else:
        drop_postgres_database(parsed.database)


def test_the_drill(hub, tmp_path):
    url, directory = hub
    runtime = make_runtime(url, tmp_path)
    expected = populate(runtime)
    runtime.close()

    created = hub_cli("backup", "create")
    assert created.exit_code == 0, created.output
    manifest = service.list_backups(directory=directory)[0]
    assert manifest.schema_revision == head_revision()
    assert manifest.row_counts["tenants"] == 3 and manifest.row_counts["contacts"] == 2 + 3 + 4
    assert all(p.stat().st_mode & 0o077 == 0 for p in directory.iterdir()), "backups must be private to the owner"
    for want in expected.values():  # sealed at rest: no secret in clear in the dump
        assert want["password"].encode() not in (directory / manifest.dump_file).read_bytes()

    verified = hub_cli("backup", "verify", "latest")
    assert verified.exit_code == 0, verified.output

    destroy(url)
    restored = hub_cli("backup", "restore", manifest.name)
    assert restored.exit_code == 0, restored.output

    runtime = make_runtime(url, tmp_path)  # a fresh vault: nothing cached from before
    try:
        assert_restored(runtime, expected)
        with runtime.session_factory() as session:
            assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    finally:
        runtime.close()


def test_backup_runs_feed_the_backup_age_metric(hub, tmp_path):
    url, directory = hub
    before = datetime.now(UTC)
    service.create_backup(url=url, master_keys=KEYS, directory=directory)
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(OSError):
        service.create_backup(url=url, master_keys=KEYS, directory=tmp_path / "not-a-dir")
    runtime = make_runtime(url, tmp_path)
    try:
        with runtime.session_factory() as session:
            last = repository.last_success_at(session)
            statuses = sorted(session.execute(text("SELECT status FROM backup_runs")).scalars())
    finally:
        runtime.close()
    assert last is not None and before <= last <= datetime.now(UTC)
    assert statuses == ["failed", "succeeded"]


class TestRefusals:
    @pytest.fixture
    def backed_up(self, hub, tmp_path):
        url, directory = hub
        runtime = make_runtime(url, tmp_path)
        create_tenant(runtime, "kept")
        runtime.close()
        return url, directory, service.create_backup(url=url, master_keys=KEYS, directory=directory)

    @staticmethod
    def tenant_slugs(url: str, tmp_path: Path) -> list[str]:
        runtime = make_runtime(url, tmp_path)
        try:
            with runtime.session_factory() as session:
                return sorted(session.scalars(select(Tenant.slug)))
        finally:
            runtime.close()

    def test_a_non_empty_database_needs_force_and_then_is_replaced(self, backed_up, tmp_path):
        url, directory, manifest = backed_up
        runtime = make_runtime(url, tmp_path)
        create_tenant(runtime, "made-after")
        runtime.close()
        refused = hub_cli("backup", "restore", manifest.name)
        assert refused.exit_code == 2 and "--force" in refused.output
        assert self.tenant_slugs(url, tmp_path) == ["kept", "made-after"]
        with pytest.raises(TargetNotEmpty):
            service.restore_backup(url=url, master_keys=KEYS, directory=directory, name=manifest.name)
        assert hub_cli("backup", "restore", manifest.name, "--force").exit_code == 0
        assert self.tenant_slugs(url, tmp_path) == ["kept"]

    def test_a_tampered_dump_is_refused_and_the_database_untouched(self, backed_up, tmp_path):
        url, directory, manifest = backed_up
        dump = directory / manifest.dump_file
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        verified = hub_cli("backup", "verify", manifest.name)
        assert verified.exit_code == 2 and "checksum" in verified.output
        with pytest.raises(BackupCorrupt):
            service.restore_backup(url=url, master_keys=KEYS, directory=directory, name=manifest.name, replace=True)
        assert self.tenant_slugs(url, tmp_path) == ["kept"]

    def test_an_edited_manifest_is_refused(self, backed_up):
        url, directory, manifest = backed_up
        path = directory / f"{manifest.name}.manifest.json"
        body = json.loads(path.read_text())
        body["row_counts"]["tenants"] = 7
        path.write_text(json.dumps(body))
        verified = hub_cli("backup", "verify", manifest.name)
        assert verified.exit_code == 2 and "altered" in verified.output

    def test_another_master_key_cannot_open_it(self, backed_up, monkeypatch):
        url, directory, manifest = backed_up
        monkeypatch.setenv("HUB_MASTER_KEYS", new_master_key_entry())
        verified = hub_cli("backup", "verify", manifest.name)
        assert verified.exit_code == 2 and manifest.key_id in verified.output

    def test_a_dump_from_a_newer_schema_is_refused(self, backed_up, tmp_path):
        url, directory, manifest = backed_up
        newer = Manifest.from_json((directory / f"{manifest.name}.manifest.json").read_text())
        newer.schema_revision = "9001"  # what a later release's backup says
        (directory / f"{manifest.name}.manifest.json").write_text(newer.sign(KEYS[0]).to_json())
        refused = hub_cli("backup", "restore", manifest.name, "--force")
        assert refused.exit_code == 2 and "9001" in refused.output
        assert self.tenant_slugs(url, tmp_path) == ["kept"]

    def test_a_restore_whose_counts_disagree_changes_nothing(self, backed_up, tmp_path):
        """The counts are checked inside the restore's transaction (PostgreSQL) or before the
        first page is written (SQLite): a mismatch leaves the database as it was."""
        url, directory, manifest = backed_up
        runtime = make_runtime(url, tmp_path)
        create_tenant(runtime, "made-after")
        runtime.close()
        lying = Manifest.from_json((directory / f"{manifest.name}.manifest.json").read_text())
        lying.row_counts["tenants"] += 1
        (directory / f"{manifest.name}.manifest.json").write_text(lying.sign(KEYS[0]).to_json())
        with pytest.raises(RestoreFailed, match="tenants"):
            service.restore_backup(url=url, master_keys=KEYS, directory=directory, name=manifest.name, replace=True)
        assert self.tenant_slugs(url, tmp_path) == ["kept", "made-after"]


def test_list_and_retention(hub, tmp_path):
    url, directory = hub
    made = [service.create_backup(url=url, master_keys=KEYS, directory=directory) for _ in range(3)]
    listed = hub_cli("backup", "list", "--json")
    assert [m["name"] for m in json.loads(listed.output)] == [m.name for m in reversed(made)]

    now = datetime.fromisoformat(made[-1].created_at)
    assert service.prune_backups(directory=directory, max_age_days=1, now=now) == []
    assert service.prune_backups(directory=directory, max_age_days=1, now=now + timedelta(days=2)) == \
        [made[1].name, made[0].name]  # the newest stays, however old
    assert [m.name for m in service.list_backups(directory=directory)] == [made[2].name]

    more = [service.create_backup(url=url, master_keys=KEYS, directory=directory) for _ in range(2)]
    pruned = hub_cli("backup", "prune", "--keep", "2")
    assert pruned.exit_code == 0 and made[2].name in pruned.output
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        f"{m.name}{suffix}" for m in more for suffix in (".dump.enc", ".manifest.json"))
