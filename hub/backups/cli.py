"""``hub backup …``: create, verify, restore, list and prune sealed backups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hub.cli_support import fail, load_settings
from hub.settings import SettingsError

backup_app = typer.Typer(help="Backups: create, verify, restore, list, prune", no_args_is_help=True)
BackupDirOption = Annotated[Path | None, typer.Option("--dir", help="backup directory (HUB_BACKUP_DIR)")]
KeepOption = Annotated[int | None, typer.Option("--keep", min=1, help="keep this many newest backups")]
MaxAgeOption = Annotated[float | None, typer.Option("--max-age-days", min=0, help="remove backups older than this")]


def _backup_context(directory: Path | None):
    settings = load_settings(for_service=False)  # the database and the master keys, nothing else
    try:
        settings.master_key_ring  # noqa: B018 - read now: a missing key is one clear line, not a traceback
    except (SettingsError, ValueError) as exc:
        fail(str(exc))
    return settings, directory or settings.effective_backup_dir


def _backup_call(func, **kwargs):
    from hub.errors import HubError

    try:
        return func(**kwargs)
    except HubError as exc:
        fail(exc.message)
    except (OSError, RuntimeError, ValueError) as exc:
        fail(f"{type(exc).__name__}: {exc}")


def _prune(directory: Path, keep: int | None, max_age_days: float | None) -> None:
    from hub.backups.service import prune_backups

    for name in prune_backups(directory=directory, keep=keep, max_age_days=max_age_days):
        typer.echo(f"removed {name}")


@backup_app.command("create")
def backup_create(directory: BackupDirOption = None, keep: KeepOption = None, max_age_days: MaxAgeOption = None,
                  verify: Annotated[bool, typer.Option("--verify", help="then restore it into a scratch "
                                                       "database and compare row counts")] = False) -> None:
    """Dump the database (pg_dump custom format, or SQLite's online backup), sealed with the master key."""
    from hub.backups.service import create_backup, verify_backup

    settings, directory = _backup_context(directory)
    url, keys = settings.effective_database_url, settings.master_key_ring
    manifest = _backup_call(create_backup, url=url, master_keys=keys, directory=directory)
    typer.echo(f"created {manifest.name}: revision {manifest.schema_revision}, {manifest.total_rows} rows in "
               f"{len(manifest.row_counts)} tables, {manifest.size_bytes} bytes, sha256 {manifest.sha256}")
    if verify:
        _backup_call(verify_backup, url=url, master_keys=keys, directory=directory, name=manifest.name)
        typer.echo(f"verified {manifest.name}")
    if keep is not None or max_age_days is not None:
        _prune(directory, keep, max_age_days)


@backup_app.command("verify")
def backup_verify(name: Annotated[str, typer.Argument(help="backup name, or latest")] = "latest",
                  directory: BackupDirOption = None,
                  scratch_url: Annotated[str | None, typer.Option(help="empty database to restore into; default a "
                                                                  "new one beside HUB_DATABASE_URL")] = None) -> None:
    """Check a backup: checksum and signature, every chunk opens, it restores, row counts match."""
    from hub.backups.service import verify_backup

    settings, directory = _backup_context(directory)
    report = _backup_call(verify_backup, url=settings.effective_database_url, master_keys=settings.master_key_ring,
                          directory=directory, name=name, scratch_url=scratch_url)
    typer.echo(f"ok {report.manifest.name}: restored {sum(report.restored_counts.values())} rows in "
               f"{len(report.restored_counts)} tables, as the manifest says")


@backup_app.command("restore")
def backup_restore(name: Annotated[str, typer.Argument(help="backup name, or latest")],
                   directory: BackupDirOption = None,
                   force: Annotated[bool, typer.Option("--force", help="replace the tables of a database that "
                                                       "has some")] = False) -> None:
    """Restore a backup into HUB_DATABASE_URL (one transaction), then migrate it to this release."""
    from hub.backups.service import restore_backup

    settings, directory = _backup_context(directory)
    manifest = _backup_call(restore_backup, url=settings.effective_database_url,
                            master_keys=settings.master_key_ring, directory=directory, name=name, replace=force)
    typer.echo(f"restored {manifest.name} ({manifest.total_rows} rows, revision {manifest.schema_revision}) "
               "and migrated to head")


@backup_app.command("list")
def backup_list(directory: BackupDirOption = None,
                as_json: Annotated[bool, typer.Option("--json", help="the manifests as JSON")] = False) -> None:
    """List the backups, newest first."""
    from dataclasses import asdict

    from hub.backups.service import list_backups

    _, directory = _backup_context(directory)
    backups = list_backups(directory=directory)
    if as_json:
        typer.echo(json.dumps([asdict(m) for m in backups], indent=2))
        return
    for m in backups:
        typer.echo(f"{m.name}  {m.created_at}  {m.engine:<10}  rev {m.schema_revision or '-':<6}  "
                   f"{m.total_rows:>10} rows  {m.size_bytes:>12} bytes")


@backup_app.command("prune")
def backup_prune(directory: BackupDirOption = None, keep: KeepOption = None, max_age_days: MaxAgeOption = None
                 ) -> None:
    """Remove old backups: beyond --keep newest, or older than --max-age-days (the newest always stays)."""
    if keep is None and max_age_days is None:
        fail("give --keep and/or --max-age-days")
    _, directory = _backup_context(directory)
    _prune(directory, keep, max_age_days)
