"""``hub stats`` and ``hub health``: the platform's queues and health, read straight from
the database and Redis (no token needed: whoever runs the CLI has the hub's settings).
They work beside an embedded ``make run`` too: SQLite is shared, and the API's own
services are found through its port."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from hub.operations.schemas import PlatformHealthRead, QueuesStatsRead

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _runtime():
    from hub.cli import load_settings, runtime_or_exit

    return runtime_or_exit(load_settings(for_service=False))


def stats(as_json: JsonFlag = False) -> None:
    """Per queue: waiting, in flight, scheduled, dead, the oldest due item's age and the
    items finished in the last 5 minutes (GET /v1/platform/queues/stats)."""
    from hub.db import utcnow
    from hub.operations.service import queue_stats

    runtime = _runtime()
    try:
        report = QueuesStatsRead(at=utcnow(), queues=queue_stats(runtime))
    finally:
        runtime.close()
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    header = ("QUEUE", "SOURCE", "WAITING", "IN FLIGHT", "SCHEDULED", "DEAD", "OLDEST", "DONE/5m")
    rows = [header] + [(q.name, q.source, str(q.waiting), _cell(q.in_flight), _cell(q.scheduled), _cell(q.dead),
                        _duration(q.oldest_age_seconds), _cell(q.throughput_5m)) for q in report.queues]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _embedded_api(settings) -> list[dict[str, Any]]:
    """Without Redis the worker, relay and beat live inside `hub serve`, which notes them
    in HUB_VAR_DIR/services.json while it runs: read it, and ask its port whether it answers."""
    import httpx

    from hub.app import SERVICES_FILE

    path = settings.var_dir / SERVICES_FILE
    try:
        running = json.loads(path.read_text())
        httpx.get(f"{running['url']}/health/live", timeout=2).raise_for_status()
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return []
    at = datetime.now(UTC)
    return [{"kind": kind, "instance": f"{running['url']} (pid {running.get('pid')})", "last_seen_at": at,
             "embedded": True} for kind in running.get("services", [])]


def health(as_json: JsonFlag = False) -> None:
    """The database, Redis and every process seen in the last 2 minutes
    (GET /v1/platform/health); exit 1 when a dependency is unreachable."""
    from hub.operations.service import platform_health

    runtime = _runtime()
    try:
        raw = platform_health(runtime)
        if not runtime.settings.redis_url:
            raw["processes"] = _embedded_api(runtime.settings)
        report = PlatformHealthRead.model_validate(raw)
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        typer.echo(f"status: {report.status}")
        typer.echo("dependencies:")
        for dependency in report.dependencies:
            typer.echo(f"  {dependency.name:<10} {dependency.status}")
        typer.echo("processes seen in the last 2 minutes:" if report.processes else
                   "processes: none seen in the last 2 minutes (is `hub serve` running?)")
        for process in report.processes:
            age = _duration((report.at - process.last_seen_at).total_seconds())
            where = "embedded in " if process.embedded else ""
            typer.echo(f"  {process.kind:<7} {where}{process.instance}  seen {age} ago")
    if report.status != "ok":
        raise typer.Exit(1)
