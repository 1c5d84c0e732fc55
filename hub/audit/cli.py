"""``hub audit …``: prove the chains, and sign checkpoints of their heads to keep elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

audit_app = typer.Typer(help="The audit log", no_args_is_help=True)

TenantOption = Annotated[str | None, typer.Option(help="tenant id or slug; default every chain")]


def _chains(session, tenant: str | None) -> list[str] | None:
    """The chain of ``tenant``, or None for every chain."""
    from hub.audit import service as audit
    from hub.cli import fail
    from hub.errors import HubError
    from tenants import service as tenants

    if tenant is None:
        return None
    try:
        return [audit.chain_of(tenants.find_tenant(session=session, ref=tenant).id)]
    except HubError as exc:
        fail(exc.message)


@audit_app.command("verify")
def audit_verify(
    tenant: TenantOption = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        help="a file of signed checkpoints (`hub audit checkpoint` output, HUB_AUDIT_CHECKPOINT_FILE): "
             "each chain must still reach them with the same hash; repeatable")] = None,
) -> None:
    """Walk the audit chains (keyed hashes, links, signed checkpoints); name the first
    broken row or checkpoint."""
    from hub.audit import service as audit
    from hub.audit.checkpoints import CheckpointFileError, read_checkpoint_file
    from hub.cli import fail, load_settings, runtime_or_exit

    known = []
    for path in checkpoint or []:
        try:
            known += read_checkpoint_file(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, CheckpointFileError) as exc:
            fail(f"{path}: {exc}")
    runtime = runtime_or_exit(load_settings())
    with runtime.session_factory() as session:
        chains = _chains(session, tenant)
        if chains is None:  # a chain deleted whole is still named by its checkpoints
            chains = sorted(set(audit.all_chains(session=session)) | {cp.chain for cp in known})
        broken = 0
        for chain in chains:
            verdict = audit.verify_chain(session=session, chain=chain, checkpoints=known)
            if verdict.ok:
                reach = f", reaches checkpoint seq={verdict.checkpoint_seq}" if verdict.checkpoint_seq else ""
                typer.echo(f"ok      {chain}  {verdict.checked} rows{reach}")
            else:
                broken += 1
                typer.echo(f"BROKEN  {chain}  first broken row seq={verdict.broken_seq}: {verdict.reason}")
    if broken:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(tenant: TenantOption = None) -> None:
    """Sign a checkpoint of each chain whose head moved, and print the newest signed
    checkpoint of every chain as JSON lines: keep them outside the database (append
    them to a file elsewhere) and give them to `hub audit verify --checkpoint`."""
    from hub.audit.checkpoints import export, latest_checkpoints, take_checkpoints
    from hub.cli import load_settings, runtime_or_exit
    from hub.db import transaction

    runtime = runtime_or_exit(load_settings())
    with transaction(runtime.session_factory) as session:
        chains = _chains(session, tenant)
        made = take_checkpoints(session=session, chains=chains)
    export(made, runtime.settings.audit_checkpoint_file)
    with runtime.session_factory() as session:
        for cp in latest_checkpoints(session=session, chains=chains):
            typer.echo(cp.to_json())
