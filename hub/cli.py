"""``hub …``: serve, migrate, backup, sandbox, worker, beat, tenants, keys, openapi, check, stats, health."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.audit.cli import audit_app
from hub.backups.cli import backup_app
from hub.cli_support import _print, fail, load_settings, runtime_or_exit
from hub.messaging.cli import test_app
from hub.settings import Settings

app = typer.Typer(help="Integrations Hub", no_args_is_help=True, pretty_exceptions_enable=False)
tenants_app = typer.Typer(help="Manage tenants", no_args_is_help=True)
keys_app = typer.Typer(help="Master keys and the vault", no_args_is_help=True)
admin_app = typer.Typer(help="Platform administration", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
app.add_typer(test_app, name="test")
app.add_typer(backup_app, name="backup")


SHUTDOWN_GRACE_SECONDS = 10


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (HUB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (HUB_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the API."""
    import uvicorn

    settings = load_settings()
    runtime_or_exit(settings).close()  # fail fast on key problems, before binding
    # Fewer, cheaper collections: the import-time heap is frozen out of the collector
    # and young-generation passes run less often (tail latency under webhook load).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    bind_host, bind_port = host or settings.host, port or settings.port
    import os

    from hub.metrics import prepare_multiprocess_dir

    # the app (built by uvicorn, in this process or its workers) reads its settings from the
    # environment: --host/--port must reach it (its default public URL, `hub health`'s file)
    os.environ["HUB_HOST"], os.environ["HUB_PORT"] = bind_host, str(bind_port)
    prepare_multiprocess_dir()
    shown = "127.0.0.1" if bind_host in ("0.0.0.0", "::") else bind_host
    typer.echo(f"Integrations Hub serving on http://{shown}:{bind_port} — API docs at http://{shown}:{bind_port}/docs"
               + (" (embedded: SQLite, in-process worker, sandbox providers)" if settings.use_embedded_worker
                  and settings.use_sandbox else ""), err=True)
    uvicorn.run(
        "hub.app:create_app",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        log_config=None,
        access_log=False,
        # X-Forwarded-For is believed only from HUB_TRUSTED_PROXIES, by the app itself
        # (hub.app); uvicorn's own default would trust any process on 127.0.0.1
        proxy_headers=False,
        # event streams (/v1/events/stream) never end on their own: without a limit a
        # stop would wait for them forever; cancelled, their clients reconnect with Last-Event-ID
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision to upgrade to")] = "head",
    to: Annotated[str | None, typer.Option("--to", help="upgrade or downgrade to this revision (or base)")] = None,
    check: Annotated[bool, typer.Option("--check", help="list pending revisions; exit 1 when any")] = False,
) -> None:
    """Upgrade the database schema (or move it to --to REV, or --check what is pending)."""
    from hub import migrate as migrations

    # only the database is needed: the chart's hook runs before the public URL or Redis matter
    url = load_settings(for_service=False).effective_database_url
    try:
        if check:
            status = migrations.schema_status(url)
            scripts = migrations.script_directory()
            typer.echo(f"database at {status.current or 'base (empty)'}; this code's head is {status.head}")
            for rev in status.pending:
                typer.echo(f"pending  {rev}  {scripts.get_revision(rev).doc.splitlines()[0]}")
            if status.pending:
                raise typer.Exit(1)
            return
        if to is not None:
            typer.echo(f"database at {migrations.migrate_to(url, to)}")
            return
        if revision not in ("head", "heads") and not migrations.is_known(revision):
            raise migrations.UnknownRevision(revision)
        migrations.schema_status(url)  # refuses a database a newer release migrated
        migrations.upgrade(url, revision)
    except migrations.UnknownRevision as exc:
        fail(f"revision {exc} is not one of this release's migrations (a newer release migrated the "
             "database, or a typo): run the newer release's `hub migrate --to <revision>` to roll it back")
    typer.echo(f"database at {revision}")




# --- the other processes: sandbox, worker, beat ------------------------------------------


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8010,
) -> None:
    """Run the sandbox providers on their own (point hubs at them with HUB_SANDBOX_URL)."""
    import uvicorn

    from connectors.sandbox.app import create_sandbox_app

    settings = load_settings(for_service=False)
    typer.echo(f"sandbox providers on http://{host}:{port} (HUB_SANDBOX_URL); "
               f"webhooks to {settings.effective_public_url}", err=True)
    uvicorn.run(create_sandbox_app(hub_url=settings.effective_public_url), host=host, port=port,
                log_config=None, access_log=False)


@app.command("sandbox-url")
def sandbox_url() -> None:
    """Print the URL of the sandbox providers this hub uses (HUB_SANDBOX_URL, or the one a
    running `hub serve` started in-process), e.g. to simulate a customer's reply with
    POST {url}/_sandbox/twilio/inbound."""
    import logging

    import httpx

    from hub.app import SANDBOX_URL_FILE

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one URL on stdout, nothing else

    settings = load_settings(for_service=False)
    if not settings.use_sandbox:
        fail("the hub is not in sandbox mode (HUB_SANDBOX is off): it talks to the real providers")
    url = settings.sandbox_url.rstrip("/")
    if not url:
        path = settings.var_dir / SANDBOX_URL_FILE
        if not path.exists():
            fail(f"no sandbox is running: start the hub (`make run`) first ({path} is written when it starts)")
        url = path.read_text().strip()
    try:
        httpx.get(f"{url}/_sandbox/twilio/accounts", timeout=5).raise_for_status()
    except httpx.HTTPError:
        fail(f"the sandbox at {url} does not answer: is the hub still running?")
    typer.echo(url)


def _broker_runtime(command: str):
    settings = load_settings()
    if not settings.redis_url:
        fail(f"hub {command} needs HUB_REDIS_URL: without Redis the queue lives inside `hub serve`, "
             "which runs its own worker and relay")
    runtime = runtime_or_exit(settings)
    from hub.metrics import prepare_multiprocess_dir, serve_process_metrics

    prepare_multiprocess_dir()
    if settings.metrics_port:
        serve_process_metrics(settings.metrics_port)
    return runtime


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="worker processes (or threads)")] = 2,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo")] = "prefork",
) -> None:
    """Run a Celery worker (deliveries, inbound events, relay passes) on HUB_REDIS_URL."""
    import os

    from celery.signals import worker_process_init

    runtime = _broker_runtime("worker")

    def fresh_connections(**_kwargs) -> None:
        # a forked child must not reuse the parent's pooled connections (close=False
        # leaves the parent's sockets alone)
        runtime.engine.dispose(close=False)

    worker_process_init.connect(fresh_connections, weak=False)
    runtime.celery.worker_main(["worker", f"--concurrency={concurrency}", f"--pool={pool}",
                                f"--loglevel={runtime.settings.log_level}", f"--hostname=hub-{os.getpid()}@%h"])


@app.command()
def relay() -> None:
    """Run the relay: hand stored webhook events to workers in batches and publish due
    outbox entries (first attempts the broker missed, retries, scheduled sends). Run
    one or more beside the API when HUB_REDIS_URL is set; they share work safely."""
    import signal
    import threading

    from hub.relay import RelayThread

    runtime = _broker_runtime("relay")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    thread = RelayThread(runtime).start()
    typer.echo(f"relay running every {runtime.settings.relay_interval_seconds}s", err=True)
    stopped.wait()
    thread.stop()


@app.command()
def beat() -> None:
    """Run the scheduler of periodic jobs (one per deployment): a backstop relay pass every
    2 x HUB_RELAY_INTERVAL_SECONDS, appointment reminders every minute, Google watch channel
    renewal hourly, a nightly incremental sync of every calendar (03:17), the event log's
    retention sweep hourly, WhatsApp template sync every 6 hours, and a signed checkpoint
    of every audit chain each minute. (`make run` runs them inside `hub serve`.)"""
    runtime = _broker_runtime("beat")
    var_dir = runtime.settings.var_dir
    var_dir.mkdir(parents=True, exist_ok=True)
    runtime.celery.start(["beat", f"--loglevel={runtime.settings.log_level}",
                          f"--schedule={var_dir / 'celerybeat-schedule'}"])


# --- tenants ------------------------------------------------------------------------


@tenants_app.command("create")
def tenants_create(
    slug: Annotated[str, typer.Option(help="unique short name")],
    name: Annotated[str, typer.Option(help="display name")],
    plan: str = "standard",
    locale: str = "pt-BR",
    timezone: str = "America/Sao_Paulo",
) -> None:
    """Create a tenant."""
    from pydantic import ValidationError

    from hub.db import transaction
    from hub.errors import HubError
    from tenants import service
    from tenants.schemas import TenantCreate, TenantRead

    try:
        tenant_in = TenantCreate(slug=slug, name=name, plan=plan, locale=locale, timezone=timezone)
    except ValidationError as exc:
        fail(*[f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()])
    runtime = runtime_or_exit(load_settings())
    try:
        with transaction(runtime.session_factory) as session:
            tenant = service.create_tenant(session=session, vault=runtime.vault, tenant_in=tenant_in)
            _print(TenantRead.model_validate(tenant).model_dump(mode="json"))
    except HubError as exc:
        fail(exc.message)


@tenants_app.command("list")
def tenants_list(limit: int = 200) -> None:
    """List live tenants."""
    from hub.db import transaction
    from tenants import service

    runtime = runtime_or_exit(load_settings())
    with transaction(runtime.session_factory) as session:
        page = service.list_tenants(session=session, limit=limit)
        for t in page.items:
            typer.echo(f"{t.id}  {t.slug:<30} {t.status:<10} {t.plan:<11} {t.name}")


def _tenant_command(ref: str, action: str) -> None:
    from hub.db import transaction
    from hub.errors import HubError
    from tenants import service
    from tenants.schemas import TenantRead

    runtime = runtime_or_exit(load_settings())
    try:
        with transaction(runtime.session_factory) as session:
            tenant = service.find_tenant(session=session, ref=ref)
            if action == "suspend":
                tenant = service.suspend_tenant(session=session, tenant_id=tenant.id)
            _print(TenantRead.model_validate(tenant).model_dump(mode="json"))
    except HubError as exc:
        fail(exc.message)


@tenants_app.command("show")
def tenants_show(tenant: Annotated[str, typer.Argument(help="tenant id or slug")]) -> None:
    """Show one tenant."""
    _tenant_command(tenant, "show")


@tenants_app.command("suspend")
def tenants_suspend(tenant: Annotated[str, typer.Argument(help="tenant id or slug")]) -> None:
    """Suspend a tenant."""
    _tenant_command(tenant, "suspend")


@tenants_app.command("erase")
def tenants_erase(
    tenant: Annotated[str, typer.Argument(help="tenant id or slug")],
    yes: Annotated[bool, typer.Option("--yes", help="confirm: this cannot be undone")] = False,
) -> None:
    """Erase a tenant for good: uninstall its integrations at the providers, delete its data,
    crypto-shred its secrets. Exit 1, naming what is left, when a provider fails: run it again."""
    from hub.errors import HubError
    from hub.integrations.installers import Actor
    from hub.platform import erasure

    if not yes:
        fail("erasing cannot be undone; repeat with --yes")
    runtime = runtime_or_exit(load_settings())
    try:
        report = erasure.erase_tenant(runtime=runtime, tenant_ref=tenant, actor=Actor("cli"))
    except HubError as exc:
        fail(exc.message)
    finally:
        runtime.close()
    _print({"id": str(report.tenant_id), "status": "erased" if report.complete else "erasing",
            "uninstalled": report.uninstalled, "left": report.left, "rows_deleted": report.rows_deleted})
    if not report.complete:
        typer.echo("error: the erasure is not finished: run the same command again once the provider answers",
                   err=True)
        raise typer.Exit(1)


# --- keys ---------------------------------------------------------------------------


@keys_app.command("new")
def keys_new() -> None:
    """Print a fresh master key entry for HUB_MASTER_KEYS (put it first to make it active)."""
    from hub.settings import new_master_key_entry

    typer.echo(new_master_key_entry())


@keys_app.command("rotate")
def keys_rotate(batch_size: int = 100) -> None:
    """Re-wrap every data key under the first of HUB_MASTER_KEYS (resumable)."""
    runtime = runtime_or_exit(load_settings())
    report = runtime.vault.rotate(runtime.session_factory, batch_size=batch_size)
    typer.echo(
        f"rewrapped={report.rewrapped} already_current={report.already_current} "
        f"destroyed={report.destroyed} failed={len(report.failed)}"
    )
    for line in report.failed:
        typer.echo(f"failed: {line}", err=True)
    if report.failed:
        raise typer.Exit(1)


@keys_app.command("rotate-jwt")
def keys_rotate_jwt() -> None:
    """Add a new JWT signing key; older keys verify until their tokens expire."""
    from hub.audit import service as audit
    from hub.db import transaction

    runtime = runtime_or_exit(load_settings())
    with transaction(runtime.session_factory) as session:
        kid = runtime.keyring.rotate(session)
        audit.record(session=session, tenant_id=None, actor="cli", action="jwt_key.rotated", target=kid)
    typer.echo(f"active signing key: {kid}")


# --- platform administration ------------------------------------------------------------


@admin_app.command("create-client")
def admin_create_client(
    platform: Annotated[bool, typer.Option("--platform", help="a platform-admin client (manages tenants)")] = False,
    tenant: Annotated[str | None, typer.Option(help="tenant id or slug, for a tenant client")] = None,
    name: str = "",
    as_json: Annotated[bool, typer.Option("--json", help='print exactly {"client_id", "client_secret"}')] = False,
) -> None:
    """Create an API client and print its id and secret (shown this once)."""
    from hub.audit import service as audit
    from hub.auth import service as auth
    from hub.db import transaction
    from hub.errors import HubError
    from tenants import service as tenants

    if platform == bool(tenant):
        fail("give either --platform or --tenant")
    runtime = runtime_or_exit(load_settings())
    try:
        with transaction(runtime.session_factory) as session:
            tenant_id = tenants.find_tenant(session=session, ref=tenant).id if tenant else None
            client, secret = auth.create_client(session=session, tenant_id=tenant_id, name=name or None)
            audit.record(session=session, tenant_id=tenant_id, actor="cli", action="client.created",
                         target=client.client_id, details={"scopes": client.scopes})
    except HubError as exc:
        fail(exc.message)
    if as_json:
        typer.echo(json.dumps({"client_id": client.client_id, "client_secret": secret}))
    else:
        typer.echo(f"client_id:     {client.client_id}\nclient_secret: {secret}\nscopes:        "
                   f"{' '.join(client.scopes)}\n(the secret is shown only now)")


# --- docs and checks ------------------------------------------------------------------


def openapi_document() -> dict:
    """The app's OpenAPI document, built without touching a database."""
    from hub.app import create_app
    from hub.settings import new_master_key_entry

    settings = Settings(env="development", database_url="sqlite://", master_keys=new_master_key_entry())
    return create_app(settings).openapi()


@app.command()
def openapi(
    output: Annotated[Path, typer.Option(help="where to write it")] = Path("openapi/openapi.json"),
) -> None:
    """Write the OpenAPI document (checked in; a test compares it with the app)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
    typer.echo(f"wrote {output}")


@app.command()
def check() -> None:
    """Print, per setting and per known integration, what is configured and what is missing."""
    from hub.checks import configuration_report

    settings = load_settings(for_service=False)
    ok = True
    for section, rows in configuration_report(settings).items():
        typer.echo(f"[{section}]")
        for row in rows:
            ok = ok and row.ok
            typer.echo(f"  {'ok     ' if row.ok else 'MISSING'} {row.name:<28} {row.detail}")
    if not ok:
        raise typer.Exit(1)


def _operations_commands() -> None:
    from hub.operations.cli import health, stats

    app.command()(stats)
    app.command()(health)


_operations_commands()


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="hub")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
